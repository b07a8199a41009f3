//! The primary's roles. The [`admin`] thread (fed by the sessions' writes)
//! drives a [`term`]: it takes over (probing the peers with [`takeover`]),
//! appends and commits batches once every in-sync member holds them, and
//! changes the in-sync set. The term runs one [`replicator`] per peer (v1
//! peers through [`replicator_v1`]); a caught-up backup's link is a
//! [`live`] link shared with the committing thread, and what each backup
//! holds is its [`progress`]. [`observe`] streams committed entries to a
//! balancer's read cache.

pub(crate) mod admin;
pub(crate) mod live;
pub(crate) mod observe;
pub(crate) mod progress;
pub(crate) mod replicator;
pub(crate) mod replicator_v1;
pub(crate) mod takeover;
pub(crate) mod term;

use std::fmt;

use crate::server::peer::PeerError;
use crate::server::Shared;
use crate::wire::native::RejectCode;
use crate::wire::Epoch;

/// True while this server is primary in `epoch` and running.
pub(crate) fn still_primary(shared: &Shared, epoch: Epoch) -> bool {
    !shared.stopping() && shared.repl.lock().epoch == epoch
}

/// A rejection; one naming a higher epoch makes this server step down.
pub(crate) fn rejected(
    shared: &Shared,
    their_epoch: Epoch,
    code: RejectCode,
    reason: String,
) -> PeerError {
    if code == RejectCode::StaleEpoch {
        shared.step_down(their_epoch, crate::state::NO_PRIMARY);
    }
    PeerError::Rejected(code, reason)
}

/// Why a write was not committed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The server is stopping.
    Stopping,
    /// The log has no index left for more entries.
    LogFull,
    /// Server `.0` is primary: forward the write there.
    NotPrimary(i32),
    /// Server `.0` holds a longer log and should take over: forward there.
    Defer(i32),
    /// No primary right now (a takeover is under way elsewhere): retry.
    NoPrimary,
    /// This server cannot be sure it holds every acknowledged write (G5).
    Unsafe(String),
    /// The durable log failed.
    Storage(String),
    /// This elected primary's lease ended: no majority answers it.
    LeaseLost,
    /// The client went away before the write could be placed.
    Abandoned,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Stopping => write!(f, "the server is stopping"),
            WriteError::LogFull => write!(f, "the log is full"),
            WriteError::NotPrimary(p) => write!(f, "server {p} is primary"),
            WriteError::Defer(p) => write!(f, "server {p} holds a longer log"),
            WriteError::NoPrimary => write!(f, "no primary is available"),
            WriteError::Unsafe(why) => write!(f, "refusing writes: {why}"),
            WriteError::Storage(why) => write!(f, "the durable log failed: {why}"),
            WriteError::Abandoned => write!(
                f,
                "the client closed its connection before the write was placed; not carried out"
            ),
            WriteError::LeaseLost => write!(
                f,
                "not primary: this server's lease ended (it cannot reach a majority of the servers)"
            ),
        }
    }
}

//! Telling an original (C++) server among the peers from a factory server
//! whose connection merely dropped. An original closes any connection whose
//! tag it does not know, and so does, to the eye, a server that crashes or
//! a link that is cut. Both mistakes are costly with the election on: a
//! factory server taken for an original turns the election off for good
//! (the original's rules, split brain under partitions), so a peer counts
//! as an original only on positive evidence ([`confirmed`]).
//!
//! Called by the replicator when a peer closes the native handshake, and by
//! the background look for originals ([`original_peer`], `elected.rs`).

use std::thread;
use std::time::Duration;

use crate::client::status::{self, ServerStatus};
use crate::client::Client;
use crate::server::peer::{connect, handshake, PeerError};
use crate::server::{PeerConfig, Shared};
use crate::wire::native::{Body, NativeFrame, NATIVE_TAG};

/// Longest wait for each answer of a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The customer read to see a v1 session answer (any id would do: a read
/// changes nothing).
const ANY_CUSTOMER: i32 = 0;

/// A peer that is an original server, if one is found: each peer is sent a
/// read-index request (which a factory server answers with no change to
/// its state); one that closes it is checked with [`confirmed`].
pub(crate) fn original_peer(shared: &Shared) -> Option<i32> {
    let peers = shared.peer_list();
    thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|peer| scope.spawn(move || (peer.id, is_original(shared, peer))))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .find_map(|(id, v1)| v1.then_some(id))
    })
}

fn is_original(shared: &Shared, peer: &PeerConfig) -> bool {
    if shared.elected.heard_from(peer.id) {
        return false;
    }
    let Ok(mut link) = connect(shared, peer, &NATIVE_TAG) else {
        return false;
    };
    if link.stream.set_read_timeout(Some(wait(shared))).is_err() {
        return false;
    }
    let ask = NativeFrame::new(
        0,
        Body::ReadIndex {
            replica_id: shared.factory_id,
        },
    );
    matches!(handshake(&mut link, &ask), Err(PeerError::SpeaksV1)) && confirmed(shared, peer)
}

/// True if `peer`, which closed a native handshake, is an original server:
/// it never sent this server an election message, and while one v1 session
/// with it answers a read before and after (so the link works throughout:
/// a cut or a crash ends that session too), it closes a status request,
/// which every factory server answers whatever its role.
pub(crate) fn confirmed(shared: &Shared, peer: &PeerConfig) -> bool {
    if shared.elected.heard_from(peer.id) {
        return false;
    }
    let wait = wait(shared);
    let Ok(mut v1) = Client::connect(&peer.host, peer.port, Some(wait)) else {
        return false;
    };
    let mut answers = || v1.read(ANY_CUSTOMER).is_ok();
    answers() && status::fetch(&peer.addr(), wait) == ServerStatus::NoStatus && answers()
}

fn wait(shared: &Shared) -> Duration {
    shared.limits.peer_timeout.min(CHECK_TIMEOUT)
}

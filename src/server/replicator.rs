//! The primary's replicator for one peer: a thread that connects to the
//! backup, brings it to exactly the primary's log, streams every new entry
//! and the commit point, and reports acks to the admin through
//! [`super::progress`]. It reconnects with backoff when the link fails,
//! until this server stops being primary in its epoch.
//!
//! A peer that closes the connection on the native tag is an original
//! server: the replicator falls back to v1 `PFA` frames for it
//! ([`super::replicator_v1`]).

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::live::{self, Live, Slot};
use super::registry::Registered;
use super::{PeerConfig, Shared};
use crate::conn::{read_native, write_native, ConnError, NativeError};
use crate::replication::{plan_catch_up, CatchUpPlan};
use crate::wire::kv::KvItem;
use crate::wire::native::{
    Body, NativeFrame, RejectCode, MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS, NATIVE_TAG,
};
use crate::wire::Epoch;

/// Longest silence on a live link: a heartbeat goes out after this.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(50);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a replication session with a peer ended.
#[derive(Debug)]
pub(crate) enum PeerError {
    Resolve(String),
    Conn(ConnError),
    Frame(String),
    Rejected(RejectCode, String),
    WrongAck {
        expected: i32,
        got: i32,
    },
    /// The peer closed the connection on the native tag: an original server.
    SpeaksV1,
    /// The peer closed the native handshake, but the election is on and it
    /// is not shown to be an original (`originals.rs`): a factory server
    /// that crashed or a link that was cut.
    HandshakeDropped,
    Stopping,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Resolve(e) => write!(f, "cannot resolve address: {e}"),
            PeerError::Conn(e) => write!(f, "{e}"),
            PeerError::Frame(e) => write!(f, "{e}"),
            PeerError::Rejected(code, why) => write!(f, "rejected ({code:?}): {why}"),
            PeerError::WrongAck { expected, got } => {
                write!(f, "expected an ack for entry {expected}, got one for {got}")
            }
            PeerError::SpeaksV1 => write!(f, "closed the native handshake (an original server)"),
            PeerError::HandshakeDropped => write!(
                f,
                "closed the native handshake (not shown to be an original server)"
            ),
            PeerError::Stopping => write!(f, "server stopping"),
        }
    }
}

impl From<ConnError> for PeerError {
    fn from(e: ConnError) -> Self {
        PeerError::Conn(e)
    }
}

impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError::Conn(e.into())
    }
}

impl From<NativeError> for PeerError {
    fn from(e: NativeError) -> Self {
        match e {
            NativeError::Conn(c) => PeerError::Conn(c),
            NativeError::Frame(f) => PeerError::Frame(f.to_string()),
        }
    }
}

/// A connected stream to a peer, registered so that stopping closes it.
pub(crate) struct Link<'a> {
    pub stream: TcpStream,
    pub writer: BufWriter<TcpStream>,
    pub scratch: Vec<u8>,
    _registered: Registered<'a>,
}

/// Connects to `peer` and sends `tag`.
pub(crate) fn connect<'a>(
    shared: &'a Shared,
    peer: &PeerConfig,
    tag: &[u8; 8],
) -> Result<Link<'a>, PeerError> {
    let addrs: Vec<SocketAddr> = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| PeerError::Resolve(e.to_string()))?
        .collect();
    let mut last = PeerError::Resolve("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, shared.limits.connect_timeout) {
            Ok(stream) => return open(shared, stream, tag),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

fn open<'a>(
    shared: &'a Shared,
    mut stream: TcpStream,
    tag: &[u8; 8],
) -> Result<Link<'a>, PeerError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(shared.limits.peer_timeout))?;
    stream.set_write_timeout(Some(shared.limits.peer_timeout))?;
    let registered = shared
        .registry
        .register(&stream)
        .ok_or(PeerError::Stopping)?;
    stream.write_all(tag)?;
    Ok(Link {
        writer: BufWriter::new(stream.try_clone()?),
        stream,
        scratch: Vec::new(),
        _registered: registered,
    })
}

impl Link<'_> {
    pub(crate) fn send(&mut self, frame: &NativeFrame) -> Result<(), PeerError> {
        write_native(&mut self.writer, frame, &mut self.scratch)?;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), PeerError> {
        self.writer.flush()?;
        Ok(())
    }

    pub(crate) fn receive(&mut self) -> Result<NativeFrame, PeerError> {
        Ok(read_native(&mut self.stream, &mut self.scratch)?)
    }
}

/// True while this server is primary in `epoch` and running.
pub(crate) fn still_primary(shared: &Shared, epoch: Epoch) -> bool {
    !shared.stopping() && shared.repl.lock().epoch == epoch
}

/// The replicator thread's body for `peer` during primary term `epoch`.
pub(crate) fn run(shared: &Shared, peer: &PeerConfig, epoch: Epoch, slot: &Slot) {
    let mut backoff = MIN_BACKOFF;
    let mut down_since: Option<Instant> = None;
    while still_primary(shared, epoch) {
        let started = Instant::now();
        // Native first on every connection, so that a Rust peer that
        // dropped the handshake while crashing is not taken for an original.
        let result = match session(shared, peer, epoch, slot) {
            Err(PeerError::SpeaksV1)
                if shared.elected.on() && !super::originals::confirmed(shared, peer) =>
            {
                Err(PeerError::HandshakeDropped)
            }
            Err(PeerError::SpeaksV1) => {
                log::info!(
                    "peer {} at {} is an original server: replicating with v1 frames",
                    peer.id,
                    peer.addr()
                );
                super::elected::found_original(shared, peer.id);
                super::replicator_v1::session(shared, peer, epoch)
            }
            other => other,
        };
        match result {
            Ok(()) => return,
            Err(e) => report_down(shared, peer, &e, &mut down_since),
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        pause(shared, epoch, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn report_down(
    shared: &Shared,
    peer: &PeerConfig,
    e: &PeerError,
    down_since: &mut Option<Instant>,
) {
    let was_live = shared.repl.update(|p| {
        let Some(state) = p.peer_mut(peer.id) else {
            return false;
        };
        let was_live = state.live;
        state.live = false;
        state.failed = true;
        state.settled = true;
        was_live
    });
    if was_live {
        shared.metrics.error(super::metrics::Fault::PeerLost);
    }
    if was_live || down_since.is_none() {
        log::warn!(
            "lost peer {} at {}: {e}; retrying with backoff",
            peer.id,
            peer.addr()
        );
        *down_since = Some(Instant::now());
    } else {
        log::debug!("peer {} at {} still unreachable: {e}", peer.id, peer.addr());
    }
}

/// Sleeps up to `backoff`, waking early if the term ends.
fn pause(shared: &Shared, epoch: Epoch, backoff: Duration) {
    let deadline = Instant::now() + backoff;
    let mut progress = shared.repl.lock();
    while progress.epoch == epoch && !shared.stopping() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        progress = shared.repl.wait(progress, left);
    }
}

/// One native session: handshake, catch-up, then streaming until an error
/// or the end of the term.
fn session(shared: &Shared, peer: &PeerConfig, epoch: Epoch, slot: &Slot) -> Result<(), PeerError> {
    let mut link = connect(shared, peer, &NATIVE_TAG)?;
    let commit = shared.replica().committed_index();
    let hello = NativeFrame::new(
        epoch,
        Body::Hello {
            primary_id: shared.factory_id,
            commit_index: commit,
        },
    );
    let reply = handshake(&mut link, &hello)?;
    let next = match reply.body {
        Body::CatchUp {
            last_index,
            last_epoch,
            ..
        } => catch_up(shared, &mut link, peer, epoch, last_index, last_epoch)?,
        Body::Reject { code, reason } => return Err(rejected(shared, reply.epoch, code, reason)),
        other => {
            return Err(PeerError::Frame(format!(
                "expected catch-up, got {}",
                other.name()
            )))
        }
    };
    let live = Live::new(shared, &link, peer.id, epoch, next)?;
    live::serve(shared, slot, live, epoch)
}

/// Sends the first frame of a native connection and reads the answer. A
/// peer that drops the connection instead is an original server, which
/// closes any connection whose tag it does not know.
pub(crate) fn handshake(
    link: &mut Link<'_>,
    first: &NativeFrame,
) -> Result<NativeFrame, PeerError> {
    let sent = link.send(first).and_then(|()| link.flush());
    match sent.and_then(|()| link.receive()) {
        Ok(reply) => Ok(reply),
        Err(PeerError::Conn(ConnError::Closed | ConnError::Truncated { .. })) => {
            Err(PeerError::SpeaksV1)
        }
        Err(PeerError::Conn(ConnError::Io(e))) if dropped(&e) => Err(PeerError::SpeaksV1),
        Err(e) => Err(e),
    }
}

fn dropped(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
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

/// Brings the peer to our log; returns the next index to send.
fn catch_up(
    shared: &Shared,
    link: &mut Link<'_>,
    peer: &PeerConfig,
    epoch: Epoch,
    last_index: i32,
    last_epoch: Epoch,
) -> Result<i32, PeerError> {
    let started = Instant::now();
    let plan = plan_catch_up(shared.replica().log(), last_index, last_epoch);
    let next = match plan {
        CatchUpPlan::Suffix { prev_index, .. } => {
            let behind = shared.replica().last_index() - prev_index;
            if behind > 0 {
                log::info!(
                    "peer {}: catching up by log suffix of {behind} entries from index {}",
                    peer.id,
                    prev_index + 1
                );
            }
            prev_index + 1
        }
        CatchUpPlan::Snapshot => send_snapshot(shared, link, peer, epoch)?,
    };
    shared.repl.update(|p| {
        if let Some(state) = p.peer_mut(peer.id) {
            state.matched = next - 1;
            state.live = true;
            state.v1 = false;
            state.settled = true;
        }
    });
    // At info, so that an operator sees which peers the primary reached.
    log::info!(
        "replicating to peer {} at {} from index {next}",
        peer.id,
        peer.addr()
    );
    log::debug!(
        "peer {}: told where to resume replicating, {:?} after it connected",
        peer.id,
        started.elapsed()
    );
    Ok(next)
}

/// The records and string keys one snapshot frame carries.
type SnapshotChunk = (Vec<(i32, i32)>, Vec<KvItem>);

/// Sends the record map at our commit point in chunks and waits for the
/// ack; returns the index after the snapshot.
fn send_snapshot(
    shared: &Shared,
    link: &mut Link<'_>,
    peer: &PeerConfig,
    epoch: Epoch,
) -> Result<i32, PeerError> {
    let started = Instant::now();
    let (last_index, last_epoch, in_sync, records, kv) = {
        let replica = shared.replica();
        let c = replica.committed_index();
        // Records are applied under the replica lock, so they are exactly
        // the state at `c` while we hold it. The string store's copy
        // shares its values: it costs the keys, not the values.
        let epoch_at_c = replica.log().epoch_at(c).unwrap_or(0);
        (
            c,
            epoch_at_c,
            replica.in_sync_at(c).unwrap_or_default(),
            shared.records.records(),
            shared.records.kv_clone(),
        )
    };
    // Records first, then string keys, each chunk within the frame bound
    // and copied out of the store only as it is sent.
    let mut record_chunks = records.chunks(MAX_CHUNK_RECORDS);
    let mut keys = kv.iter().peekable();
    let mut next_chunk = || -> Option<SnapshotChunk> {
        if let Some(r) = record_chunks.next() {
            return Some((r.to_vec(), Vec::new()));
        }
        let mut items = Vec::new();
        let mut bytes = 0;
        while let Some((key, v)) = keys.peek() {
            let len = 2 + key.len() + 8 + 4 + v.value.len();
            if !items.is_empty() && bytes + len > MAX_CHUNK_BYTES {
                break;
            }
            bytes += len;
            items.push(KvItem {
                key: key.to_vec(),
                version: v.version,
                value: v.value.to_vec(),
            });
            keys.next();
        }
        (!items.is_empty()).then_some((Vec::new(), items))
    };
    let mut current = next_chunk().unwrap_or_default();
    loop {
        let next = next_chunk();
        let body = Body::Snapshot {
            last_index,
            last_epoch,
            in_sync,
            records: current.0,
            kv: current.1,
            done: next.is_none(),
        };
        link.send(&NativeFrame::new(epoch, body))?;
        match next {
            Some(chunk) => current = chunk,
            None => break,
        }
    }
    link.flush()?;
    expect_ack(shared, link, last_index)?;
    log::info!(
        "peer {}: caught up by snapshot of {} records and {} string keys through index {last_index} in {:?}",
        peer.id,
        records.len(),
        kv.len(),
        started.elapsed()
    );
    Ok(last_index + 1)
}

/// Reads one ack and checks it names `expected`.
fn expect_ack(shared: &Shared, link: &mut Link<'_>, expected: i32) -> Result<(), PeerError> {
    let frame = link.receive()?;
    match frame.body {
        Body::Ack { last_index, .. } if last_index == expected => Ok(()),
        Body::Ack { last_index, .. } => Err(PeerError::WrongAck {
            expected,
            got: last_index,
        }),
        Body::Reject { code, reason } => Err(rejected(shared, frame.epoch, code, reason)),
        other => Err(PeerError::Frame(format!(
            "expected an ack, got {}",
            other.name()
        ))),
    }
}

//! The primary's replicator for one peer: a thread that connects to the
//! backup, brings it to exactly the primary's log, streams every new entry
//! and the commit point, and reports acks to the admin through
//! [`super::progress`]. It reconnects with backoff when the link fails,
//! until this server stops being primary in its epoch.
//!
//! A peer that closes the connection on the native tag is an original
//! server: the replicator falls back to v1 `PFA` frames for it
//! ([`super::replicator_v1`]).

use std::time::{Duration, Instant};

use super::live::{self, Live, Slot};
use super::{rejected, still_primary};
use crate::replication::{plan_catch_up, CatchUpPlan};
use crate::server::election::{elected, originals};
use crate::server::metrics::Fault;
use crate::server::peer::{connect, handshake, Link, PeerError};
use crate::server::{PeerConfig, Shared};
use crate::wire::kv::KvItem;
use crate::wire::native::{Body, NativeFrame, MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS, NATIVE_TAG};
use crate::wire::Epoch;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
                if shared.elected.on() && !originals::confirmed(shared, peer) =>
            {
                Err(PeerError::HandshakeDropped)
            }
            Err(PeerError::SpeaksV1) => {
                log::info!(
                    "peer {} at {} is an original server: replicating with v1 frames",
                    peer.id,
                    peer.addr()
                );
                elected::found_original(shared, peer.id);
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
        shared.metrics.error(Fault::PeerLost);
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
            let len = 2 + key.len() + 8 + 4 + v.value().len();
            if !items.is_empty() && bytes + len > MAX_CHUNK_BYTES {
                break;
            }
            bytes += len;
            items.push(KvItem {
                key: key.to_vec(),
                version: v.version(),
                value: v.value().to_vec(),
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

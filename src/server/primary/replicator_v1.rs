//! Replication to an original (v1) server: `PFA` frames, one entry each,
//! as the original primary sends them. The original has no catch-up, so
//! the stream starts with every entry this primary still holds (a v1
//! backup stores each at its index); frames go one at a time; it is
//! never an in-sync member, but while live the admin waits for its acks
//! like the original primary does. When no entry is pending, the last one
//! is re-sent with the new commit point so that the backup applies it.

use std::time::Instant;

use super::still_primary;
use crate::conn::{read_frame, write_frame};
use crate::server::peer::{connect, PeerError, HEARTBEAT};
use crate::server::{PeerConfig, Shared};
use crate::wire::Epoch;
use crate::wire::{ReplicationAck, ReplicationRequest, PFA_TAG};
use std::io::Write;

/// Frames sent before waiting for their acks: one, as the original primary
/// does. An original backup leaves Nagle's algorithm on, so its second ack
/// of a pipelined pair waits for our delayed ACK of the first (about 40 ms).
const WINDOW: usize = 1;

pub(crate) fn session(shared: &Shared, peer: &PeerConfig, epoch: Epoch) -> Result<(), PeerError> {
    let mut link = connect(shared, peer, &PFA_TAG)?;
    let mut next = shared.replica().log().first_index();
    let mut notified_commit = i32::MIN;
    let mut live = false;
    // Live from now on: the admin waits for this peer's acks.
    mark(shared, peer, next - 1, &mut live);
    while still_primary(shared, epoch) {
        let frames = pending(shared, next, &mut notified_commit);
        if frames.is_empty() {
            mark(shared, peer, next - 1, &mut live);
            wait(shared, epoch, next);
            continue;
        }
        for frame in &frames {
            write_frame(&mut link.writer, frame)?;
        }
        link.writer.flush()?;
        for frame in &frames {
            let ack: ReplicationAck = read_frame(&mut link.stream)?;
            if ack.last_index != frame.last_index {
                return Err(PeerError::WrongAck {
                    expected: frame.last_index,
                    got: ack.last_index,
                });
            }
        }
        next = frames.last().map_or(next, |f| f.last_index + 1);
        mark(shared, peer, next - 1, &mut live);
    }
    Ok(())
}

/// The frames to send: new entries from `next`, or the last entry again
/// when only the commit point moved since it was last announced.
fn pending(shared: &Shared, next: i32, notified_commit: &mut i32) -> Vec<ReplicationRequest> {
    let replica = shared.replica();
    let last = replica
        .last_index()
        .min(next.saturating_add(WINDOW as i32 - 1));
    let mut frames: Vec<ReplicationRequest> = (next..=last)
        .filter_map(|i| replica.replication_request(i))
        .collect();
    let commit = replica.committed_index();
    if frames.is_empty() && commit != *notified_commit && next > 0 && commit == next - 1 {
        frames.extend(replica.replication_request(next - 1));
    }
    if !frames.is_empty() {
        *notified_commit = commit;
    }
    frames
}

fn mark(shared: &Shared, peer: &PeerConfig, matched: i32, live: &mut bool) {
    if !*live {
        log::info!(
            "peer {} (original server) is live from index {}",
            peer.id,
            matched + 1
        );
        *live = true;
    }
    shared.repl.update(|p| {
        if let Some(state) = p.peer_mut(peer.id) {
            state.v1 = true;
            state.live = true;
            state.settled = true;
            state.matched = state.matched.max(matched);
        }
    });
}

fn wait(shared: &Shared, epoch: Epoch, next: i32) {
    let deadline = Instant::now() + HEARTBEAT;
    let mut progress = shared.repl.lock();
    let commit = progress.commit;
    while progress.epoch == epoch
        && progress.last_index < next
        && progress.commit == commit
        && !shared.stopping()
    {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        progress = shared.repl.wait(progress, left);
    }
}

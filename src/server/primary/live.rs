//! A caught-up backup's link, shared between its replicator thread and the
//! thread that commits writes.
//!
//! Once a backup is caught up, its replicator publishes the link in a
//! [`Slot`]. The thread committing a batch (a combining session or the
//! admin) then sends the batch to every such backup itself and reads their
//! acks, the way the original admin did but to all backups at once, which
//! spares two thread hand-offs per write. The replicator keeps the link
//! otherwise: it sends what nobody else sent (a backup still behind, a
//! batch whose committer found the slot busy) and a heartbeat after 50 ms of
//! silence. Whoever hits an error empties the slot; the replicator then
//! reconnects.
//!
//! Lock order: a slot, then the replica or the progress lock.

use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{rejected, still_primary};
use crate::conn::{data_waiting, read_native, write_native, yield_until};
use crate::server::metrics::Fault;
use crate::server::peer::{Link, PeerError, HEARTBEAT};
use crate::server::Shared;
use crate::wire::native::{batch_len, Body, NativeFrame, MAX_BATCH_ENTRIES};
use crate::wire::Epoch;

/// Append batches in flight before waiting for the oldest ack.
const WINDOW: usize = 4;

/// One backup's live link, if it has one.
pub(crate) type Slot = Mutex<Option<Live>>;

pub(crate) fn lock(slot: &Slot) -> MutexGuard<'_, Option<Live>> {
    // A thread that panicked mid-send leaves a link that may be out of
    // step; the next error on it empties the slot.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live native link to a backup.
pub(crate) struct Live {
    peer: i32,
    epoch: Epoch,
    writer: BufWriter<TcpStream>,
    /// Buffered, so that an ack usually takes one `read`.
    reader: BufReader<TcpStream>,
    scratch: Vec<u8>,
    out: Vec<u8>,
    /// Next index to send.
    next: i32,
    /// Last index each unacknowledged frame covers.
    in_flight: VecDeque<i32>,
    last_send: Instant,
    sent_commit: i32,
    /// While catching up: first index sent, index to reach, since when.
    catching_up: Option<(i32, i32, Instant)>,
}

impl Live {
    /// The link of `peer` in `epoch`, next sending entry `next`.
    pub(crate) fn new(
        shared: &Shared,
        link: &Link<'_>,
        peer: i32,
        epoch: Epoch,
        next: i32,
    ) -> Result<Live, PeerError> {
        let target = shared.replica().last_index();
        Ok(Live {
            peer,
            epoch,
            writer: BufWriter::new(link.stream.try_clone()?),
            reader: BufReader::new(link.stream.try_clone()?),
            scratch: Vec::new(),
            out: Vec::new(),
            next,
            in_flight: VecDeque::new(),
            last_send: Instant::now(),
            sent_commit: i32::MIN,
            catching_up: (target >= next).then(|| (next, target, Instant::now())),
        })
    }

    /// True when a read would not block.
    fn readable(&self) -> bool {
        !self.reader.buffer().is_empty() || data_waiting(self.reader.get_ref())
    }

    /// True when everything through `index` has been sent.
    pub(crate) fn sent_through(&self, index: i32) -> bool {
        self.next > index
    }

    /// Sends the entries after what was sent (up to [`WINDOW`] frames in
    /// flight), or, with `heartbeat`, a heartbeat when one is due.
    pub(crate) fn send_pending(
        &mut self,
        shared: &Shared,
        heartbeat: bool,
    ) -> Result<(), PeerError> {
        let mut sent = false;
        while self.in_flight.len() < WINDOW {
            let frame = self.next_frame(shared, heartbeat && !sent)?;
            let Some((frame, covers)) = frame else {
                break;
            };
            write_native(&mut self.writer, &frame, &mut self.out)?;
            self.in_flight.push_back(covers);
            self.next = covers + 1;
            self.last_send = Instant::now();
            sent = true;
        }
        if sent {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// The next frame: an append of the entries from `next`, or a heartbeat
    /// (when allowed and due, with nothing in flight); `None` if neither.
    fn next_frame(
        &mut self,
        shared: &Shared,
        heartbeat: bool,
    ) -> Result<Option<(NativeFrame, i32)>, PeerError> {
        let replica = shared.replica();
        let last = replica.last_index();
        let commit = replica.committed_index();
        if last >= self.next {
            let prev_epoch = replica
                .log()
                .epoch_at(self.next - 1)
                .ok_or_else(|| PeerError::Frame("log compacted past the peer".into()))?;
            let most = last.min(self.next.saturating_add(MAX_BATCH_ENTRIES as i32 - 1));
            let candidates = replica.log().range(self.next, most);
            let entries = candidates[..batch_len(candidates)].to_vec();
            let to = self.next - 1 + entries.len() as i32;
            let body = Body::Append {
                prev_index: self.next - 1,
                prev_epoch,
                commit_index: commit,
                entries,
            };
            self.sent_commit = commit;
            return Ok(Some((NativeFrame::new(self.epoch, body), to)));
        }
        let due = self.last_send.elapsed() >= HEARTBEAT || commit != self.sent_commit;
        if heartbeat && due && self.in_flight.is_empty() {
            self.sent_commit = commit;
            let body = Body::Heartbeat {
                commit_index: commit,
            };
            return Ok(Some((NativeFrame::new(self.epoch, body), self.next - 1)));
        }
        Ok(None)
    }

    /// Reads the ack of every frame in flight and records the progress.
    pub(crate) fn drain_acks(&mut self, shared: &Shared) -> Result<(), PeerError> {
        while let Some(&expected) = self.in_flight.front() {
            let frame = read_native(&mut self.reader, &mut self.scratch)?;
            match frame.body {
                Body::Ack { last_index, .. } if last_index == expected => {}
                Body::Ack { last_index, .. } => {
                    return Err(PeerError::WrongAck {
                        expected,
                        got: last_index,
                    })
                }
                Body::Reject { code, reason } => {
                    return Err(rejected(shared, frame.epoch, code, reason))
                }
                other => {
                    return Err(PeerError::Frame(format!(
                        "expected an ack, got {}",
                        other.name()
                    )))
                }
            }
            self.in_flight.pop_front();
            let peer = self.peer;
            shared.repl.update(|p| {
                if let Some(state) = p.peer_mut(peer) {
                    state.matched = state.matched.max(expected);
                }
            });
            self.note_caught_up(expected);
        }
        Ok(())
    }

    fn note_caught_up(&mut self, acked: i32) {
        if let Some((from, target, since)) = self.catching_up {
            if acked >= target {
                log::info!(
                    "peer {}: caught up by log suffix of {} entries in {:?}",
                    self.peer,
                    target - from + 1,
                    since.elapsed()
                );
                self.catching_up = None;
            }
        }
    }
}

/// The replicator's part once its backup is caught up: publishes the link
/// and keeps it busy until an error or the end of the term.
pub(crate) fn serve(
    shared: &Shared,
    slot: &Slot,
    live: Live,
    epoch: Epoch,
) -> Result<(), PeerError> {
    *lock(slot) = Some(live);
    let mut pushes_seen = 0;
    loop {
        if !still_primary(shared, epoch) {
            *lock(slot) = None;
            return Ok(());
        }
        let next = {
            let mut guard = lock(slot);
            let Some(live) = guard.as_mut() else {
                return Err(PeerError::Frame(
                    "link failed while a batch was sent on it".into(),
                ));
            };
            // Acks the committer left to this thread are read first, so
            // that nothing is in flight when it sends: a commit point it
            // has not sent then always goes out, in an append or a
            // heartbeat (what `push_commit` relies on).
            let pumped = live
                .drain_acks(shared)
                .and_then(|()| live.send_pending(shared, true))
                .and_then(|()| live.drain_acks(shared));
            if let Err(e) = pumped {
                *guard = None;
                return Err(e);
            }
            live.next
        };
        shared
            .repl
            .wait_poke(epoch, next, &mut pushes_seen, HEARTBEAT);
    }
}

/// The committing thread's part: sends everything new to each backup whose
/// link is free and was caught up through `before`, then reads their acks.
/// Backups it cannot serve are left to their replicators (poked).
pub(crate) fn replicate(shared: &Shared, slots: &[(i32, std::sync::Arc<Slot>)], before: i32) {
    let mut held = Vec::with_capacity(slots.len());
    for (_, slot) in slots {
        let Ok(mut guard) = slot.try_lock() else {
            shared.repl.poke();
            continue;
        };
        match guard.as_mut() {
            Some(live) if live.sent_through(before) && live.in_flight.is_empty() => {
                match live.send_pending(shared, false) {
                    Ok(()) => held.push(guard),
                    Err(e) => fail(shared, &mut guard, &e),
                }
            }
            _ => shared.repl.poke(),
        }
    }
    await_acks_briefly(&mut held);
    for guard in &mut held {
        let Some(wait) = guard.as_ref().map(|live| live.await_ack(shared)) else {
            continue;
        };
        let result = match wait {
            AckWait::Ready => guard
                .as_mut()
                .map_or(Ok(()), |live| live.drain_acks(shared)),
            // Its replicator reads these acks (or fails the link); the
            // commit waits for the in-sync set, which drops a silent member.
            AckWait::Silent => {
                shared.repl.poke();
                Ok(())
            }
            AckWait::TimedOut => Err(PeerError::Conn(crate::conn::ConnError::Timeout)),
        };
        if let Err(e) = result {
            fail(shared, guard, &e);
        }
    }
}

/// How the committer's wait for a backup's first ack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckWait {
    /// An ack (or the close) can be read.
    Ready,
    /// The election finds the backup silent, this primary lost its lease
    /// (the commit fails anyway), or the term ended.
    Silent,
    /// Nothing within the link's read timeout (`--peer-timeout`).
    TimedOut,
}

/// How long the committer waits for an ack between two looks at whether
/// the election finds that backup silent.
const ACK_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

impl Live {
    /// The committer's wait for this link's first ack (if one is due), in slices of
    /// [`ACK_CHECK`]: a backup that is paused or cut off would otherwise
    /// hold the commit, and every client behind it, until the read timeout.
    fn await_ack(&self, shared: &Shared) -> AckWait {
        // Nothing in flight (another committer sent these entries): no
        // ack to wait for.
        if self.in_flight.is_empty() || self.readable() {
            return AckWait::Ready;
        }
        let stream = self.reader.get_ref();
        // The link's read timeout, as the replicator set it.
        let timeout = shared.limits.peer_timeout;
        let deadline = Instant::now() + timeout;
        if stream.set_read_timeout(Some(ACK_CHECK)).is_err() {
            return AckWait::Ready;
        }
        let mut byte = [0u8; 1];
        // The checks come only after a slice without the ack: an ack that
        // comes within one costs no lock.
        let outcome = loop {
            match stream.peek(&mut byte) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                // Data, the close, or an error the read will report.
                _ => break AckWait::Ready,
            }
            if Instant::now() >= deadline {
                break AckWait::TimedOut;
            }
            if shared.elected.silent(self.epoch).contains(self.peer)
                || shared.elected.lease_lost(self.epoch)
                || !still_primary(shared, self.epoch)
            {
                break AckWait::Silent;
            }
        };
        let _ = stream.set_read_timeout(Some(timeout));
        outcome
    }
}

/// How long the committer looks for acks without sleeping.
const ACK_SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// Waits for every link's acks without sleeping, for up to [`ACK_SPIN`]
/// (60, 100 and 150 µs measured alike).
fn await_acks_briefly(held: &mut [MutexGuard<'_, Option<Live>>]) {
    yield_until(ACK_SPIN, || {
        held.iter()
            .all(|guard| guard.as_ref().is_none_or(Live::readable))
    });
}

/// Empties a slot after an error; its replicator reconnects.
fn fail(shared: &Shared, guard: &mut MutexGuard<'_, Option<Live>>, e: &PeerError) {
    if let Some(live) = guard.take() {
        let _ = live.reader.get_ref().shutdown(std::net::Shutdown::Both);
        shared.metrics.error(Fault::PeerLost);
        log::warn!(
            "lost peer {}: {e}",
            shared.peer_name(live.peer).trim_start_matches("server ")
        );
        shared.repl.update(|p| {
            if let Some(state) = p.peer_mut(live.peer) {
                state.live = false;
                state.failed = true;
            }
        });
        shared.repl.poke();
    }
}

//! The answering side of a v2 session: the writer thread, which sends
//! every answer in request order, waiting for each write's commit and
//! carrying out each read in its turn; and the rules the reader
//! ([`super::burst`]) uses to send a burst's answers itself.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread;
use std::time::Duration;

use super::{primary_text, Answer, PendingWrite};
use crate::kv_budget::Budget;
use crate::kv_frames::send_buffered;
use crate::server::primary::admin;
use crate::server::primary::WriteError;
use crate::server::Shared;
use crate::state::kv::KvOutcome;
use crate::state::NO_PRIMARY;
use crate::wire::kv::{KvBody, KvResponse, KvStatus};

/// Most attempts to place a write while a primary is being found.
const WRITE_ATTEMPTS: u32 = 60;

/// Answers buffered before the writer sends them without waiting for the
/// queue to run dry.
const FLUSH_AT: usize = 64 * 1024;

/// Who may write to the client next. The reader counts each burst it
/// hands to the writer; the writer counts one off once every answer of it
/// is sent. At zero the writer has nothing to send and sends nothing until
/// the reader hands it a burst, so the reader may send answers itself
/// without their order being mixed with the writer's.
#[derive(Default)]
pub(super) struct Lane {
    handed: AtomicUsize,
}

impl Lane {
    /// True when the writer has sent every answer handed to it.
    pub(super) fn is_idle(&self) -> bool {
        self.handed.load(Ordering::Acquire) == 0
    }

    /// The reader hands the writer a burst.
    pub(super) fn hand_over(&self) {
        self.handed.fetch_add(1, Ordering::AcqRel);
    }

    fn sent(&self, bursts: usize) {
        if bursts > 0 {
            self.handed.fetch_sub(bursts, Ordering::AcqRel);
        }
    }
}

/// True when `answer` can be given at once: known already, a write
/// committed, a read on a primary that can serve.
pub(super) fn answerable_now(shared: &Shared, answer: &Answer) -> bool {
    match answer {
        Answer::Ready(_) => true,
        Answer::Pending(write) => write.done.committed().is_some(),
        Answer::Read(read) => read.target.ready_now(shared),
        Answer::Unsent(_) => true,
    }
}

/// Appends the answer's encoding to `out`, once its write commits or its
/// read is carried out (see [`finish_write`] for `waits`).
pub(super) fn encode_into(
    shared: &Shared,
    answer: Answer,
    waits: &dyn Fn() -> bool,
    out: &mut Vec<u8>,
) {
    let response = match answer {
        Answer::Ready(response) => response,
        Answer::Pending(write) => finish_write(shared, write, waits),
        Answer::Read(read) => read.target.finish(shared, read.began),
        Answer::Unsent(bytes) => return out.extend_from_slice(&bytes),
    };
    response.encode(out);
}

/// What the writer has encoded and not sent, and how many bursts are
/// wholly in it.
struct Outgoing<'a> {
    bytes: Vec<u8>,
    bursts: usize,
    lane: &'a Lane,
}

impl Outgoing<'_> {
    fn send(&mut self, sink: &mut &TcpStream, peer: SocketAddr) -> bool {
        if !send(sink, &mut self.bytes, peer) {
            return false;
        }
        self.lane.sent(std::mem::take(&mut self.bursts));
        true
    }
}

/// The writer thread: sends every answer in order, waiting for each
/// write's commit; ends when the reader is done and every answer is out,
/// or when the client stops taking them.
pub(super) fn write_answers(
    shared: &Shared,
    stream: TcpStream,
    rx: Receiver<Vec<(Answer, usize)>>,
    budget: &Budget,
    lane: &Lane,
    peer: SocketAddr,
    waits: &dyn Fn() -> bool,
) {
    let mut out = Outgoing {
        bytes: Vec::new(),
        bursts: 0,
        lane,
    };
    let mut sink = &stream;
    let mut at_hand: Option<std::vec::IntoIter<(Answer, usize)>> = None;
    loop {
        let Some((answer, bytes)) = at_hand.as_mut().and_then(Iterator::next) else {
            out.bursts += usize::from(at_hand.take().is_some());
            let burst = match rx.try_recv() {
                Ok(burst) => burst,
                Err(TryRecvError::Empty) => {
                    if !out.send(&mut sink, peer) {
                        break;
                    }
                    match rx.recv() {
                        Ok(burst) => burst,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            at_hand = Some(burst.into_iter());
            continue;
        };
        // Answers already known go out before a wait, but not before a
        // write already committed: a pipelined batch commits together,
        // and its answers leave in one send.
        if !answerable_now(shared, &answer) && !out.send(&mut sink, peer) {
            break;
        }
        encode_into(shared, answer, waits, &mut out.bytes);
        budget.give_back(bytes);
        if out.bytes.len() >= FLUSH_AT && !out.send(&mut sink, peer) {
            break;
        }
    }
    if out.send(&mut sink, peer) {
        return;
    }
    // The client left or stopped reading: wake the reader too. Writes
    // still queued commit all the same; nobody waits for their answers.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes out what is buffered; false when the client is gone.
fn send(sink: &mut &TcpStream, out: &mut Vec<u8>, peer: SocketAddr) -> bool {
    send_buffered(sink, out, &format_args!("v2 client {peer}"))
}

/// Waits for a write to commit (placing it again while a primary is being
/// found, as long as `waits()`: its client is still connected) and turns
/// the result into its answer.
fn finish_write(shared: &Shared, write: PendingWrite, waits: &dyn Fn() -> bool) -> KvResponse {
    let answer = |status, body| KvResponse {
        id: write.id,
        op: write.op,
        status,
        body,
    };
    for attempt in 0..WRITE_ATTEMPTS {
        match write.done.wait_index() {
            Ok(index) => {
                return match shared.records.kv_outcome(index) {
                    Some(outcome) => {
                        let (status, body) = outcome_answer(outcome);
                        answer(status, body)
                    }
                    None => {
                        log::warn!(
                            "the outcome of the string write at index {index} is no longer kept"
                        );
                        answer(KvStatus::Unavailable, KvBody::Empty)
                    }
                }
            }
            Err(WriteError::NotPrimary(p) | WriteError::Defer(p))
                if p != NO_PRIMARY && p != shared.factory_id =>
            {
                return answer(KvStatus::NotPrimary, primary_text(shared, p));
            }
            Err(WriteError::NoPrimary | WriteError::NotPrimary(_) | WriteError::Defer(_)) => {
                thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 10));
                if !waits() {
                    log::debug!("a string write's client left before it was placed");
                    break;
                }
                if admin::submit_nowait(shared, write.entry.clone(), &write.done).is_err() {
                    break;
                }
            }
            Err(e) => {
                log::debug!("a string write failed: {e}");
                break;
            }
        }
    }
    answer(KvStatus::Unavailable, KvBody::Empty)
}

/// The status and body of a committed write's outcome.
fn outcome_answer(outcome: KvOutcome) -> (KvStatus, KvBody) {
    match outcome {
        KvOutcome::Written(v) | KvOutcome::Deleted(v) => (KvStatus::Ok, KvBody::Version(v)),
        KvOutcome::NotFound => (KvStatus::NotFound, KvBody::Empty),
        KvOutcome::Exists(v) => (KvStatus::Exists, KvBody::Version(v)),
        KvOutcome::Mismatch(v) => (KvStatus::VersionMismatch, KvBody::Version(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_statuses_with_versions() {
        assert_eq!(
            outcome_answer(KvOutcome::Written(4)),
            (KvStatus::Ok, KvBody::Version(4))
        );
        assert_eq!(
            outcome_answer(KvOutcome::Deleted(5)),
            (KvStatus::Ok, KvBody::Version(5))
        );
        assert_eq!(
            outcome_answer(KvOutcome::NotFound),
            (KvStatus::NotFound, KvBody::Empty)
        );
        assert_eq!(
            outcome_answer(KvOutcome::Exists(2)),
            (KvStatus::Exists, KvBody::Version(2))
        );
        assert_eq!(
            outcome_answer(KvOutcome::Mismatch(u64::MAX)),
            (KvStatus::VersionMismatch, KvBody::Version(u64::MAX))
        );
    }
}

//! The reading side of a v2 session: frames in, requests started, and
//! the answers of each burst handed to the writer ([`super::answers`]) or
//! sent here.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::answers::{self, Lane};
use super::{answer_bytes, refused, start, Answer, End};
use crate::kv_budget::{Budget, MAX_IN_FLIGHT};
use crate::kv_frames::FrameReader;
use crate::server::primary::admin::{self, Completion};
use crate::server::Shared;
use crate::wire::kv::{KvBody, KvError, KvRequest, KvStatus};

/// Reads and starts requests until the client closes or misbehaves.
pub(super) fn read_requests(
    shared: &Shared,
    stream: &TcpStream,
    tx: &SyncSender<Vec<(Answer, usize)>>,
    budget: &Budget,
    lane: &Lane,
    peer: SocketAddr,
) -> End {
    let limits = shared.kv.limits;
    let mut reader = match FrameReader::new(stream, shared.limits.handshake_timeout) {
        Ok(reader) => reader,
        Err(e) => return End::Io(e),
    };
    let mut buf = Vec::new();
    let mut burst = Burst {
        shared,
        tx,
        lane,
        budget,
        sink: stream,
        peer,
        answers: Vec::new(),
        last_write: None,
        out: Vec::new(),
    };
    let end = loop {
        if (!reader.frame_at_hand() || burst.is_full()) && !burst.flush() {
            break End::WriterGone;
        }
        if let Err(end) = reader.next_frame(&mut buf, &limits) {
            break end.into();
        }
        let (answer, bad) = match KvRequest::decode(&buf, &limits) {
            Ok(request) => (start(shared, request), None),
            Err(e @ (KvError::KeyTooLarge(_) | KvError::ValueTooLarge(_))) => {
                log::debug!("v2 request refused: {e}");
                (refused(&buf, KvStatus::TooLarge, KvBody::Empty), None)
            }
            Err(e) => {
                let why = KvBody::Text(e.to_string().into_bytes());
                (refused(&buf, KvStatus::BadRequest, why), Some(e))
            }
        };
        let bytes = answer_bytes(&answer);
        // The budget is given back as the writer sends: what the burst
        // holds must reach it before the reader waits for room.
        let room = budget.try_take(bytes) || (burst.flush() && budget.take(bytes));
        if !room {
            break End::WriterGone;
        }
        burst.push(answer, bytes);
        if let Some(e) = bad {
            break End::BadRequest(e);
        }
    };
    // However the reading ended, the writes started are committed and
    // every answer started goes to the writer (if it still takes them).
    burst.flush();
    end
}

/// Most answers in one burst, and bursts queued to the writer: with the
/// burst the writer is working through and the one being read, at most
/// [`MAX_IN_FLIGHT`] requests wait.
const BURST: usize = 64;
pub(super) const QUEUED_BURSTS: usize = MAX_IN_FLIGHT / BURST - 2;

/// The requests started from frames that arrived together. Their writes
/// are queued and committed once the burst is handed over, as one batch;
/// their answers go to the writer as one message, which wakes it once, or
/// are sent here when the writer is idle and all of them are known then.
/// A burst is handed over as soon as no further frame is at hand, before
/// the reader could wait for anything, so a lone request is not held back.
struct Burst<'a> {
    shared: &'a Shared,
    tx: &'a SyncSender<Vec<(Answer, usize)>>,
    lane: &'a Lane,
    budget: &'a Budget,
    sink: &'a TcpStream,
    peer: SocketAddr,
    answers: Vec<(Answer, usize)>,
    last_write: Option<Arc<Completion>>,
    /// Encoded answers sent here (kept for its capacity).
    out: Vec<u8>,
}

impl Burst<'_> {
    fn is_full(&self) -> bool {
        self.answers.len() >= BURST
    }

    fn push(&mut self, answer: Answer, bytes: usize) {
        if let Answer::Pending(write) = &answer {
            self.last_write = Some(Arc::clone(&write.done));
        }
        self.answers.push((answer, bytes));
    }

    /// Commits the burst's writes, then sends its answers or hands them to
    /// the writer; false once the client or the writer is gone.
    fn flush(&mut self) -> bool {
        if let Some(last) = self.last_write.take() {
            admin::commit_queued(self.shared, &last);
        }
        if self.answers.is_empty() {
            return true;
        }
        let known = |(answer, _): &(Answer, usize)| answers::answerable_now(self.shared, answer);
        if self.lane.is_idle() && self.answers.iter().all(known) {
            return self.send_here();
        }
        self.lane.hand_over();
        self.tx.send(std::mem::take(&mut self.answers)).is_ok()
    }

    /// Sends the answers, every one of them known, as far as the socket
    /// takes them without waiting; what it does not take goes to the
    /// writer, so that the reader never waits on a client that is still
    /// sending (a client may write a whole pipeline before it reads).
    fn send_here(&mut self) -> bool {
        let mut held = 0;
        for (answer, bytes) in self.answers.drain(..) {
            answers::encode_into(self.shared, answer, &|| true, &mut self.out);
            held += bytes;
        }
        let sent = match send_nowait(self.sink, &self.out) {
            Ok(n) => n,
            Err(e) => {
                log::debug!(
                    "v2 client {}: gone before taking its answers ({e})",
                    self.peer
                );
                return false;
            }
        };
        if sent == self.out.len() {
            self.out.clear();
            self.budget.give_back(held);
            return true;
        }
        let rest = self.out.split_off(sent);
        self.out.clear();
        self.lane.hand_over();
        self.tx.send(vec![(Answer::Unsent(rest), held)]).is_ok()
    }
}

/// Writes what the socket takes of `bytes` now; how much it took.
fn send_nowait(sink: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let socket = socket2::SockRef::from(sink);
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send_with_flags(&bytes[sent..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

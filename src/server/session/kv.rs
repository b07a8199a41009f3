//! A protocol v2 session (`docs/protocol.md` §9): string keys and values,
//! pipelined. The accept loop hands a connection here when its handshake
//! is [`KV_TAG`](crate::wire::kv::KV_TAG).
//!
//! Two threads per connection. This one reads frames, decodes them and
//! starts each request: a write is handed to the admin's queue without
//! waiting ([`admin::submit_nowait`]), so that many writes of one
//! connection (and of every other) commit as one batch; a read (`get`,
//! `scan`) notes when it began. Each answer, ready or still to come, goes
//! in order into a bounded queue to the writer thread, which sends ready
//! answers at once, waits for each write's commit before sending its
//! answer, and carries out each read by the rule of G6 ([`super::reads`],
//! the same code as v1 reads): on a primary that can serve, from its
//! records; on a backup after a read-index round trip, which the reads
//! queued behind one another share (each took a ticket as it began); a
//! backup catching up answers `not primary`, and a read that cannot be
//! answered up to date within the read deadline `unavailable`. At most [`MAX_IN_FLIGHT`] requests, holding at most
//! [`MAX_QUEUED_BYTES`] of keys and values, wait in that queue: past that
//! the reader stops reading until answers are sent, so a client that
//! pipelines without end (or reads large values and never takes them) is
//! held back, not buffered.
//!
//! Answers thus leave in request order (the protocol allows any order):
//! a read sent after a write on the same connection is read after that
//! write is answered, so it sees it.
//!
//! A write is placed again (while a primary is being found) only while its
//! client is still connected: one that gave up may have sent newer writes
//! elsewhere, which an old write placed late would overwrite.
//!
//! Hostile input: a frame whose length is out of bounds, or that is not
//! finished within the handshake timeout once begun, closes the connection
//! with a log line; a key or value over the limit is answered `TooLarge`
//! by id and the session goes on; any other malformed request is answered
//! `BadRequest` and the connection closes after it.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::reads::{self, Began, ReadTarget};
use crate::protocol::session::Route;
use crate::server::primary::admin::{self, Completion};
use crate::server::primary::WriteError;
use crate::server::Shared;
use crate::state::kv::{KvOutcome, KvWrite};
use crate::state::NO_PRIMARY;
use crate::wire::kv::{KvBody, KvError, KvItem, KvLimits, KvOp, KvRequest, KvResponse, KvStatus};
use crate::wire::Entry;

/// Most requests of one connection started but not yet answered.
pub(crate) const MAX_IN_FLIGHT: usize = 4096;

/// Most bytes of keys and values the answers of one connection may hold
/// while queued (one larger answer is let through alone).
pub(crate) const MAX_QUEUED_BYTES: usize = 16 << 20;

/// Most attempts to place a write while a primary is being found.
const WRITE_ATTEMPTS: u32 = 60;

/// Answers buffered before the writer sends them without waiting for the
/// queue to run dry.
const FLUSH_AT: usize = 64 * 1024;

/// Stack of the writer thread: its buffers live on the heap.
const WRITER_STACK: usize = 128 * 1024;

/// An answer on its way to the writer thread.
enum Answer {
    /// Known now.
    Ready(KvResponse),
    /// A write handed to the admin; answered once it commits or fails.
    Pending(PendingWrite),
    /// A read, carried out by the writer thread in its turn.
    Read(PendingRead),
}

struct PendingRead {
    began: Began,
    target: KvRead,
}

/// A `get` or `scan`, as the read rule carries it out.
struct KvRead {
    id: u64,
    op: KvOp,
}

struct PendingWrite {
    id: u64,
    op: u8,
    entry: Entry,
    done: Arc<Completion>,
    /// Held against `--max-memory` until the write is done or dropped.
    _reserved: Reservation,
}

/// Bytes reserved against `--max-memory` for a write in flight, given back
/// when dropped (answered, failed, or never sent because the client left).
struct Reservation {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// Why the reading side stopped.
enum End {
    /// The client closed between frames.
    Closed,
    /// The length prefix is out of bounds (the frame lies about its size).
    BadLength(KvError),
    /// A frame was begun and not finished in time.
    Stalled,
    /// A malformed request, answered `BadRequest`.
    BadRequest(KvError),
    /// The writer stopped (the client stopped taking answers, or left).
    WriterGone,
    /// A socket error.
    Io(io::Error),
}

pub(crate) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_write_timeout(Some(shared.limits.client_write_timeout));
    let write_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("v2 client {peer}: cannot clone its socket: {e}; closing");
            return;
        }
    };
    let (tx, rx) = mpsc::sync_channel(MAX_IN_FLIGHT);
    let budget = Budget::default();
    let left = AtomicBool::new(false);
    let end = thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name(format!("kv-writer-{peer}"))
            .stack_size(WRITER_STACK)
            .spawn_scoped(scope, || {
                let waits = || !left.load(Ordering::Acquire);
                write_answers(shared, write_half, rx, &budget, peer, &waits);
                budget.close();
            });
        if let Err(e) = writer {
            log::warn!("v2 client {peer}: cannot start its writer thread: {e}; closing");
            return End::WriterGone;
        }
        let end = read_requests(shared, &stream, &tx, &budget);
        if matches!(end, End::Closed | End::Io(_)) {
            // The client closed or reset its end: it waits for nothing.
            left.store(true, Ordering::Release);
        }
        drop(tx);
        end
    });
    let limits = &shared.limits;
    match end {
        End::Closed => log::debug!("v2 client {peer} ended its session"),
        End::BadLength(e) => log::warn!("v2 client {peer}: {e}; closing"),
        End::Stalled => log::warn!(
            "v2 client {peer}: began a frame and did not finish it within {:?}; closing",
            limits.handshake_timeout
        ),
        End::BadRequest(e) => log::warn!("v2 client {peer}: {e}; answered bad request, closing"),
        End::WriterGone => log::debug!("v2 client {peer}: stopped taking answers"),
        End::Io(e) => log::debug!("v2 client {peer}: {e}; closing"),
    }
}

/// Reads and starts requests until the client closes or misbehaves.
fn read_requests(
    shared: &Shared,
    stream: &TcpStream,
    tx: &SyncSender<(Answer, usize)>,
    budget: &Budget,
) -> End {
    let limits = shared.kv.limits;
    let mut reader = FrameReader::new(stream, shared.limits.handshake_timeout);
    let mut buf = Vec::new();
    loop {
        if let Err(end) = reader.next_frame(&mut buf, &limits) {
            return end;
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
        if !budget.take(bytes) || tx.send((answer, bytes)).is_err() {
            return End::WriterGone;
        }
        if let Some(e) = bad {
            return End::BadRequest(e);
        }
    }
}

/// Bytes of keys and values queued by the connection, bounded by
/// [`MAX_QUEUED_BYTES`]: the reader takes before it queues an answer, the
/// writer gives back once the answer is sent.
#[derive(Default)]
struct Budget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    /// Waits until `n` more bytes fit (always, when nothing is queued);
    /// false once the writer has stopped.
    fn take(&self, n: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (used, closed) = *state;
            if closed {
                return false;
            }
            if used == 0 || used + n <= MAX_QUEUED_BYTES {
                state.0 += n;
                return true;
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(n);
        drop(state);
        self.freed.notify_one();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.freed.notify_all();
    }
}

/// Bytes of keys and values an answer holds until it is sent.
fn answer_bytes(answer: &Answer) -> usize {
    match answer {
        Answer::Ready(r) => match &r.body {
            KvBody::Value { value, .. } => value.len(),
            KvBody::Items { items, .. } => items.iter().map(KvResponse::item_len).sum(),
            _ => 0,
        },
        Answer::Pending(w) => w.entry.encoded_len(),
        // Read in its turn and sent at once: its value is not queued.
        Answer::Read(_) => 0,
    }
}

/// The answer to a request that was not decoded, by the id it carries.
fn refused(frame: &[u8], status: KvStatus, body: KvBody) -> Answer {
    let (id, op) = KvRequest::peek_id(frame).unwrap_or((0, 0));
    Answer::Ready(KvResponse {
        id,
        op,
        status,
        body,
    })
}

/// Starts one request: answers a read, or hands a write to the admin.
fn start(shared: &Shared, request: KvRequest) -> Answer {
    let KvRequest { id, op } = request;
    let code = op.code();
    let ready = |status, body| {
        Answer::Ready(KvResponse {
            id,
            op: code,
            status,
            body,
        })
    };
    let write = match op {
        op @ (KvOp::Get { .. } | KvOp::Scan { .. }) => {
            return Answer::Read(PendingRead {
                began: Began::now_for_later(shared),
                target: KvRead { id, op },
            })
        }
        KvOp::Put { key, value } => KvWrite::put(&key, &value),
        KvOp::Create { key, value } => KvWrite::create(&key, &value),
        KvOp::Update { key, value } => KvWrite::update(&key, &value),
        KvOp::Delete { key } => KvWrite::delete(&key),
        KvOp::Cas {
            key,
            expected,
            value,
        } => KvWrite::cas(&key, expected, &value),
    };
    if let Route::Forward(primary) = super::write::view(shared).write_route() {
        return ready(KvStatus::NotPrimary, primary_text(shared, primary));
    }
    let Some(reserved) = reserve_memory(shared, &write) else {
        return ready(KvStatus::NoMemory, KvBody::Empty);
    };
    let pending = PendingWrite {
        id,
        op: code,
        entry: Entry::kv(crate::state::V1_EPOCH, write),
        done: Arc::new(Completion::new()),
        _reserved: reserved,
    };
    match admin::submit_nowait(shared, pending.entry.clone(), &pending.done) {
        Ok(()) => Answer::Pending(pending),
        Err(_) => ready(KvStatus::Unavailable, KvBody::Empty),
    }
}

/// Reserves what `write` would add to the string store, counting what the
/// writes still in flight may add, so that a pipeline of writes cannot
/// take the store past `--max-memory` either; `None` when it does not fit.
/// (A write that would grow a key another write in flight also grows is
/// counted twice: the limit errs on the side of refusing.)
fn reserve_memory(shared: &Shared, write: &KvWrite) -> Option<Reservation> {
    let mut reservation = Reservation {
        counter: Arc::clone(&shared.kv_reserved),
        bytes: 0,
    };
    let Some(max) = shared.kv.max_memory else {
        return Some(reservation);
    };
    let (used, growth) = {
        let kv = shared.records.kv();
        (kv.memory_bytes(), kv.growth(write))
    };
    if growth == 0 {
        return Some(reservation);
    }
    let before = shared.kv_reserved.fetch_add(growth, Ordering::AcqRel);
    // Given back by the drop if it does not fit.
    reservation.bytes = growth;
    if used.saturating_add(before).saturating_add(growth) > max {
        return None;
    }
    Some(reservation)
}

fn scan(shared: &Shared, start: &[u8], limit: u32) -> KvBody {
    let limits: KvLimits = shared.kv.limits;
    // The response bound less the header, count and `more` (10 + 4 + 1).
    let budget = limits.max_response() - 15;
    let (items, more): (Vec<KvItem>, bool) =
        shared
            .records
            .kv()
            .scan(start, limit as usize, budget, KvResponse::item_len);
    KvBody::Items { items, more }
}

impl ReadTarget for KvRead {
    type Answer = KvResponse;

    fn local(&mut self, shared: &Shared) -> KvResponse {
        let (status, body) = match &self.op {
            KvOp::Get { key } => match shared.records.kv_get(key) {
                Some(v) => (
                    KvStatus::Ok,
                    KvBody::Value {
                        version: v.version(),
                        value: v.value().to_vec(),
                    },
                ),
                None => (KvStatus::NotFound, KvBody::Empty),
            },
            KvOp::Scan { start, limit } => (KvStatus::Ok, scan(shared, start, *limit)),
            // Only reads are made into a `KvRead`.
            _ => (KvStatus::BadRequest, KvBody::Empty),
        };
        self.answer(status, body)
    }

    /// v2 has no forwarding between servers: the client is sent to the
    /// primary (a backup catching up, or following an original primary).
    fn on_primary(&mut self, shared: &Shared, primary: i32) -> Result<KvResponse, String> {
        Ok(self.answer(KvStatus::NotPrimary, primary_text(shared, primary)))
    }
}

impl KvRead {
    /// True when this server answers reads at once (a primary that can
    /// serve): nothing to wait for.
    fn ready_now(&self, shared: &Shared) -> bool {
        reads::serves_now(shared)
    }

    fn answer(&self, status: KvStatus, body: KvBody) -> KvResponse {
        KvResponse {
            id: self.id,
            op: self.op.code(),
            status,
            body,
        }
    }

    /// Carries out the read by the rule of G6; `unavailable` when no
    /// up-to-date answer can be given within the read deadline.
    fn finish(mut self, shared: &Shared, began: Began) -> KvResponse {
        match reads::read_as(shared, &mut self, began) {
            Ok(response) => response,
            Err(e) => {
                log::debug!("a v2 read was not answered: {e}");
                self.answer(KvStatus::Unavailable, KvBody::Empty)
            }
        }
    }
}

/// The `NotPrimary` text: the primary's `host:port`, or empty if unknown.
fn primary_text(shared: &Shared, primary: i32) -> KvBody {
    let addr = shared
        .peer_list()
        .into_iter()
        .find(|p| p.id == primary)
        .map(|p| p.addr())
        .unwrap_or_default();
    KvBody::Text(addr.into_bytes())
}

/// The writer thread: sends every answer in order, waiting for each
/// write's commit; ends when the reader is done and every answer is out,
/// or when the client stops taking them.
fn write_answers(
    shared: &Shared,
    stream: TcpStream,
    rx: Receiver<(Answer, usize)>,
    budget: &Budget,
    peer: SocketAddr,
    waits: &dyn Fn() -> bool,
) {
    let mut out = Vec::new();
    let mut sink = &stream;
    loop {
        let (answer, bytes) = match rx.try_recv() {
            Ok(answer) => answer,
            Err(TryRecvError::Empty) => {
                if !send(&mut sink, &mut out, peer) {
                    break;
                }
                match rx.recv() {
                    Ok(answer) => answer,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let response = match answer {
            Answer::Ready(response) => response,
            Answer::Pending(write) => {
                // Answers already known go out before a wait, but not
                // before a write already committed: a pipelined batch
                // commits together, and its answers leave in one send.
                if !write.done.is_finished() && !send(&mut sink, &mut out, peer) {
                    break;
                }
                finish_write(shared, write, waits)
            }
            Answer::Read(read) => {
                if !read.target.ready_now(shared) && !send(&mut sink, &mut out, peer) {
                    break;
                }
                read.target.finish(shared, read.began)
            }
        };
        response.encode(&mut out);
        drop(response);
        budget.give_back(bytes);
        if out.len() >= FLUSH_AT && !send(&mut sink, &mut out, peer) {
            break;
        }
    }
    if send(&mut sink, &mut out, peer) {
        return;
    }
    // The client left or stopped reading: wake the reader too. Writes
    // still queued commit all the same; nobody waits for their answers.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes out what is buffered; false when the client is gone.
fn send(sink: &mut &TcpStream, out: &mut Vec<u8>, peer: SocketAddr) -> bool {
    if out.is_empty() {
        return true;
    }
    let result = sink.write_all(out);
    out.clear();
    match result {
        Ok(()) => true,
        Err(e) => {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                log::warn!("v2 client {peer}: did not take its answers in time; closing");
            } else {
                log::debug!("v2 client {peer}: gone before taking its answers ({e})");
            }
            false
        }
    }
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

/// Reads whole frames: waits as long as the client likes for a frame to
/// begin, then gives the rest of it the handshake timeout. The socket's
/// read timeout is changed only when a frame is cut across reads.
struct FrameReader<'a> {
    inner: BufReader<&'a TcpStream>,
    frame_timeout: Duration,
    timeout: Option<Duration>,
}

impl<'a> FrameReader<'a> {
    fn new(stream: &'a TcpStream, frame_timeout: Duration) -> Self {
        let _ = stream.set_read_timeout(None);
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            frame_timeout,
            timeout: None,
        }
    }

    /// Reads the next frame's bytes after its length prefix into `buf`,
    /// the length checked against `limits` before anything is allocated.
    fn next_frame(&mut self, buf: &mut Vec<u8>, limits: &KvLimits) -> Result<(), End> {
        if self.inner.buffer().is_empty() {
            self.set_timeout(None)?;
            match self.inner.fill_buf() {
                Ok([]) => return Err(End::Closed),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(End::Stalled),
                Err(e) => return Err(End::Io(e)),
            }
        }
        let deadline = Instant::now() + self.frame_timeout;
        let mut prefix = [0u8; 4];
        self.read_by(&mut prefix, deadline)?;
        let len = limits.check_length(prefix).map_err(End::BadLength)?;
        buf.clear();
        buf.resize(len, 0);
        self.read_by(buf, deadline)
    }

    /// Fills `out` before `deadline`.
    fn read_by(&mut self, out: &mut [u8], deadline: Instant) -> Result<(), End> {
        let mut got = 0;
        while got < out.len() {
            if self.inner.buffer().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(End::Stalled);
                }
                self.set_timeout(Some(left))?;
            }
            match self.inner.read(&mut out[got..]) {
                Ok(0) => return Err(End::Stalled),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(End::Stalled),
                Err(e) => return Err(End::Io(e)),
            }
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), End> {
        // Between frames the timeout is only lifted if it was set: most
        // frames arrive whole and cost no system call for it.
        if timeout != self.timeout && (timeout.is_some() || self.timeout.is_some()) {
            self.inner
                .get_ref()
                .set_read_timeout(timeout)
                .map_err(End::Io)?;
            self.timeout = timeout;
        }
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
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

    #[test]
    fn the_queue_budget_holds_the_reader_back_until_answers_are_sent() {
        let budget = Arc::new(Budget::default());
        assert!(budget.take(MAX_QUEUED_BYTES - 10));
        assert!(budget.take(10), "exactly full");
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || tx.send(budget.take(1)).unwrap())
        };
        // Still full: the reader waits (a bounded look, not a proof).
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        budget.give_back(10);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
        // One answer larger than the budget passes alone.
        let alone = Budget::default();
        assert!(alone.take(MAX_QUEUED_BYTES * 3));
        alone.close();
        assert!(!alone.take(1), "a closed budget stops the reader");
    }

    #[test]
    fn a_refused_frame_is_answered_by_its_id() {
        let mut frame = 77u64.to_be_bytes().to_vec();
        frame.push(2);
        match refused(&frame, KvStatus::TooLarge, KvBody::Empty) {
            Answer::Ready(r) => assert_eq!((r.id, r.op, r.status), (77, 2, KvStatus::TooLarge)),
            _ => unreachable!(),
        }
    }
}

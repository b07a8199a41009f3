//! A protocol v2 session (`docs/protocol.md` §9): string keys and values,
//! pipelined. The accept loop hands a connection here when its handshake
//! is [`KV_TAG`](crate::wire::kv::KV_TAG).
//!
//! Two threads per connection. The reader ([`burst`]) reads frames
//! ([`crate::kv_frames`]), decodes them and starts each request: a write is queued
//! for the admin without waiting, a read (`get`, `scan`) notes when it
//! began. The requests of frames that arrived together make a burst: its
//! writes are committed as one batch (with every other connection's
//! queued writes), and its answers are handed over as one message. The
//! writer thread ([`answers`]) sends ready answers at once, waits for
//! each write's commit before sending its answer, and carries out each
//! read by the rule of G6 ([`super::reads`], the same code as v1 reads):
//! on a primary that can serve, from its records; on a backup after a
//! read-index round trip, which the reads queued behind one another share
//! (each took a ticket as it began); a backup catching up answers `not
//! primary`, and a read that cannot be answered up to date within the
//! read deadline `unavailable`. When the writer has nothing left to send
//! and every answer of a burst is known once its writes are committed (a
//! lone primary, reads on a primary that can serve), the reader sends
//! them itself, sparing the writer's wake-up.
//!
//! At most [`MAX_IN_FLIGHT`](crate::kv_budget::MAX_IN_FLIGHT) requests, holding at most
//! [`MAX_QUEUED_BYTES`](crate::kv_budget::MAX_QUEUED_BYTES) of keys and values ([`crate::kv_budget`]), wait: past that
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

mod answers;
mod burst;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use super::reads::{self, Began, ReadTarget};
use crate::kv_frames::FrameEnd;
use crate::protocol::session::Route;
use crate::server::primary::admin::{self, Completion};
use crate::server::Shared;
use crate::state::kv::KvWrite;
use crate::wire::kv::{KvBody, KvError, KvItem, KvLimits, KvOp, KvRequest, KvResponse, KvStatus};
use crate::wire::Entry;
use answers::Lane;

use crate::kv_budget::Budget;

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
    /// Answers the reader encoded and could not send without waiting (the
    /// client is not taking them yet): the writer sends them, and the
    /// reader goes on reading.
    Unsent(Vec<u8>),
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

impl From<FrameEnd> for End {
    fn from(end: FrameEnd) -> Self {
        match end {
            FrameEnd::Closed => End::Closed,
            FrameEnd::BadLength(e) => End::BadLength(e),
            FrameEnd::Stalled => End::Stalled,
            FrameEnd::Io(e) => End::Io(e),
        }
    }
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
    let (tx, rx) = mpsc::sync_channel(burst::QUEUED_BURSTS);
    let lane = Lane::default();
    let budget = Budget::default();
    let left = AtomicBool::new(false);
    let end = thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name(format!("kv-writer-{peer}"))
            .stack_size(WRITER_STACK)
            .spawn_scoped(scope, || {
                let waits = || !left.load(Ordering::Acquire);
                answers::write_answers(shared, write_half, rx, &budget, &lane, peer, &waits);
                budget.close();
            });
        if let Err(e) = writer {
            log::warn!("v2 client {peer}: cannot start its writer thread: {e}; closing");
            return End::WriterGone;
        }
        let end = burst::read_requests(shared, &stream, &tx, &budget, &lane, peer);
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
        Answer::Unsent(bytes) => bytes.len(),
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
    // Committed when the burst it belongs to is handed over.
    match admin::queue_nowait(shared, pending.entry.clone(), &pending.done) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

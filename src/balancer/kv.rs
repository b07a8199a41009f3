//! A protocol v2 client session on the balancer (`docs/protocol.md` §9,
//! docs/balancer.md "Protocol v2 through the balancer"): `proxy` hands a
//! connection here when its handshake is [`KV_TAG`](crate::wire::kv::KV_TAG).
//!
//! Two threads per connection, as in the server. This one reads frames
//! ([`crate::kv_frames`]) and decodes them with the server's
//! codec; each request goes in order into a bounded queue to the
//! dispatcher thread, which takes runs of consecutive reads or writes (a
//! batch), has [`KvPool::serve`] carry each batch to the servers pipelined
//! and writes the answers back in the order the client sent the requests.
//! A read sent after a write thus starts after that write is answered,
//! and sees it. At most [`MAX_IN_FLIGHT`] requests holding at most
//! [`MAX_QUEUED_BYTES`](crate::kv_budget::MAX_QUEUED_BYTES) wait in the queue: past that the reader stops
//! reading, so a client that pipelines without end is held back, not
//! buffered.
//!
//! Hostile input is treated as the server treats it: a length prefix out
//! of bounds, or a frame begun and not finished within the handshake
//! timeout, closes the connection (after the answers already due) with a
//! log line; a key or value over the limit is answered `too large` by id;
//! any other malformed request is answered `bad request` and the
//! connection closes after it.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread;
use std::time::Duration;

use super::kv_retry::Class;
use super::kv_upstream::KvPool;
use super::upstream::Upstream;
use crate::kv_budget::{Budget, MAX_IN_FLIGHT};
use crate::kv_frames::{send_buffered, FrameEnd, FrameReader};
use crate::wire::kv::{KvBody, KvError, KvLimits, KvRequest, KvResponse, KvStatus, KEY_CEILING};

/// Most requests, and bytes of requests, in one batch sent to a server:
/// a batch's answers are held until it is done.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Answers buffered before they are sent without waiting for the queue to
/// run dry.
const FLUSH_AT: usize = 64 * 1024;

/// Stack of the dispatcher thread: its buffers live on the heap.
const DISPATCHER_STACK: usize = 128 * 1024;

/// What the balancer accepts from a client: any key the protocol carries
/// and values up to the largest a log entry holds. A server configured
/// with smaller limits answers `too large` itself, and that is relayed.
const LIMITS: KvLimits = KvLimits {
    max_key: KEY_CEILING,
    max_value: crate::wire::MAX_VALUE_LEN,
};

/// What a v2 session needs of the balancer.
pub(super) struct Context<'a> {
    pub(super) upstream: &'a Upstream,
    pub(super) pool: &'a KvPool,
    /// Client requests received.
    pub(super) requests: &'a AtomicU64,
    /// A frame begun must be finished within it.
    pub(super) frame_timeout: Duration,
}

/// A request on its way to the dispatcher.
enum Job {
    /// Answered already (refused).
    Ready(KvResponse),
    /// To be sent to a server.
    Forward(KvRequest),
}

/// Why the reading side stopped.
enum End {
    Frame(FrameEnd),
    BadRequest(KvError),
    DispatcherGone,
}

/// Serves one v2 connection until it closes.
pub(super) fn serve(cx: &Context, stream: &TcpStream, peer: SocketAddr) {
    let write_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            log::warn!("balancer: v2 client {peer}: cannot clone its socket: {e}; closing");
            return;
        }
    };
    let (tx, rx) = mpsc::sync_channel(MAX_IN_FLIGHT);
    let budget = Budget::default();
    let left = AtomicBool::new(false);
    let end = thread::scope(|scope| {
        let dispatcher = thread::Builder::new()
            .name(format!("load-kv-{peer}"))
            .stack_size(DISPATCHER_STACK)
            .spawn_scoped(scope, || {
                let wanted = || !left.load(Ordering::Acquire);
                dispatch(cx, write_half, rx, &budget, peer, &wanted);
                budget.close();
            });
        if let Err(e) = dispatcher {
            log::warn!("balancer: v2 client {peer}: cannot start a thread: {e}; closing");
            return End::DispatcherGone;
        }
        let end = read_requests(cx, stream, &tx, &budget);
        if matches!(end, End::Frame(FrameEnd::Closed | FrameEnd::Io(_))) {
            // The client closed or reset its end: nothing is resent for it.
            left.store(true, Ordering::Release);
        }
        drop(tx);
        end
    });
    log_end(peer, end, cx.frame_timeout);
}

fn log_end(peer: SocketAddr, end: End, frame_timeout: Duration) {
    match end {
        End::Frame(FrameEnd::Closed) => log::debug!("balancer: v2 client {peer} ended its session"),
        End::Frame(FrameEnd::BadLength(e)) => {
            log::warn!("balancer: v2 client {peer}: {e}; closing")
        }
        End::Frame(FrameEnd::Stalled) => log::warn!(
            "balancer: v2 client {peer}: began a frame and did not finish it within {frame_timeout:?}; closing"
        ),
        End::Frame(FrameEnd::Io(e)) => log::debug!("balancer: v2 client {peer}: {e}; closing"),
        End::BadRequest(e) => {
            log::warn!("balancer: v2 client {peer}: {e}; answered bad request, closing")
        }
        End::DispatcherGone => log::debug!("balancer: v2 client {peer}: stopped taking answers"),
    }
}

/// Reads and queues requests until the client closes or misbehaves.
fn read_requests(
    cx: &Context,
    stream: &TcpStream,
    tx: &SyncSender<(Job, usize)>,
    budget: &Budget,
) -> End {
    let mut reader = match FrameReader::new(stream, cx.frame_timeout) {
        Ok(r) => r,
        Err(e) => return End::Frame(FrameEnd::Io(e)),
    };
    let mut buf = Vec::new();
    loop {
        if let Err(end) = reader.next_frame(&mut buf, &LIMITS) {
            return End::Frame(end);
        }
        cx.requests.fetch_add(1, Ordering::Relaxed);
        let (job, bad) = job_of(&buf);
        let bytes = buf.len();
        if !budget.take(bytes) || tx.send((job, bytes)).is_err() {
            return End::DispatcherGone;
        }
        if let Some(e) = bad {
            return End::BadRequest(e);
        }
    }
}

/// The job for one frame, and the error that ends the session after it.
fn job_of(frame: &[u8]) -> (Job, Option<KvError>) {
    match KvRequest::decode(frame, &LIMITS) {
        Ok(request) => (Job::Forward(request), None),
        Err(e @ (KvError::KeyTooLarge(_) | KvError::ValueTooLarge(_))) => {
            log::debug!("balancer: v2 request refused: {e}");
            (refused(frame, KvStatus::TooLarge, KvBody::Empty), None)
        }
        Err(e) => {
            let why = KvBody::Text(e.to_string().into_bytes());
            (refused(frame, KvStatus::BadRequest, why), Some(e))
        }
    }
}

/// The answer to a frame that did not decode, by the id it carries.
fn refused(frame: &[u8], status: KvStatus, body: KvBody) -> Job {
    let (id, op) = KvRequest::peek_id(frame).unwrap_or((0, 0));
    Job::Ready(KvResponse {
        id,
        op,
        status,
        body,
    })
}

/// The dispatcher: answers every job in order; ends when the reader is
/// done and every answer is out, or when the client stops taking them.
fn dispatch(
    cx: &Context,
    stream: TcpStream,
    rx: Receiver<(Job, usize)>,
    budget: &Budget,
    peer: SocketAddr,
    wanted: &dyn Fn() -> bool,
) {
    let mut out = Vec::new();
    let mut carried = None;
    let gone = loop {
        let next = match carried.take() {
            Some(job) => job,
            None => match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty) => {
                    if !send(&stream, &mut out, peer) {
                        break true;
                    }
                    match rx.recv() {
                        Ok(job) => job,
                        Err(_) => break false,
                    }
                }
                Err(TryRecvError::Disconnected) => break false,
            },
        };
        match next {
            (Job::Ready(answer), bytes) => {
                answer.encode(&mut out);
                budget.give_back(bytes);
            }
            (Job::Forward(first), bytes) => {
                let (mut batch, taken, rest) = gather(first, bytes, &rx);
                carried = rest;
                // Answers known go out before the wait for the servers.
                if !send(&stream, &mut out, peer) {
                    break true;
                }
                for answer in cx.pool.serve(cx.upstream, &mut batch, wanted) {
                    answer.encode(&mut out);
                }
                budget.give_back(taken);
            }
        }
        if out.len() >= FLUSH_AT && !send(&stream, &mut out, peer) {
            break true;
        }
    };
    if gone || !send(&stream, &mut out, peer) {
        // The client left or stopped reading: wake the reader too.
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// A batch: `first` and the requests queued right behind it that go the
/// same way (all reads, or all writes), within the batch bounds. Returns
/// it, the queue bytes it holds, and the job that ended it, if one did.
fn gather(
    first: KvRequest,
    bytes: usize,
    rx: &Receiver<(Job, usize)>,
) -> (Vec<KvRequest>, usize, Option<(Job, usize)>) {
    let writes = Class::of(&first.op).is_write();
    let mut batch = vec![first];
    let mut taken = bytes;
    while batch.len() < MAX_BATCH && taken < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok((Job::Forward(r), n)) if Class::of(&r.op).is_write() == writes => {
                batch.push(r);
                taken += n;
            }
            Ok(other) => return (batch, taken, Some(other)),
            Err(_) => break,
        }
    }
    (batch, taken, None)
}

fn send(sink: &TcpStream, out: &mut Vec<u8>, peer: SocketAddr) -> bool {
    send_buffered(sink, out, &format_args!("balancer: v2 client {peer}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::kv::KvOp;

    fn frame(request: &KvRequest) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        out.split_off(4)
    }

    #[test]
    fn frames_become_jobs_as_on_a_server() {
        let get = KvRequest {
            id: 9,
            op: KvOp::Get { key: b"k".to_vec() },
        };
        assert!(matches!(job_of(&frame(&get)), (Job::Forward(r), None) if r == get));
        let huge = KvRequest {
            id: 10,
            op: KvOp::Get { key: vec![0; 1024] },
        };
        let mut bytes = frame(&huge);
        // A key length the frame does not hold: malformed.
        bytes[9..11].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut over = frame(&KvRequest {
            id: 11,
            op: KvOp::Put {
                key: vec![],
                value: vec![],
            },
        });
        over[11..15].copy_from_slice(&u32::MAX.to_be_bytes());
        match job_of(&over) {
            (Job::Ready(r), None) => assert_eq!((r.id, r.status), (11, KvStatus::TooLarge)),
            _ => panic!("an oversize value is answered too large"),
        }
        assert!(
            matches!(job_of(&bytes), (Job::Ready(r), Some(_)) if r.status == KvStatus::BadRequest)
        );
        let mut garbage = frame(&get);
        garbage[8] = 99;
        match job_of(&garbage) {
            (Job::Ready(r), Some(KvError::UnknownOp(99))) => {
                assert_eq!((r.id, r.status), (9, KvStatus::BadRequest))
            }
            _ => panic!("an unknown op is a bad request"),
        }
    }

    #[test]
    fn a_batch_takes_one_kind_and_stops_at_the_next() {
        let (tx, rx) = mpsc::sync_channel(MAX_BATCH * 2);
        let get = |id| KvRequest {
            id,
            op: KvOp::Get { key: vec![] },
        };
        let del = |id| KvRequest {
            id,
            op: KvOp::Delete { key: vec![] },
        };
        for r in [get(2), get(3), del(4), get(5)] {
            tx.send((Job::Forward(r), 10)).unwrap();
        }
        let (batch, taken, rest) = gather(get(1), 10, &rx);
        assert_eq!(batch.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(taken, 30);
        assert!(matches!(rest, Some((Job::Forward(r), 10)) if r.id == 4));
        let (batch, _, rest) = gather(get(5), 10, &rx);
        assert_eq!(batch.len(), 2, "the one left, and nothing carried");
        assert!(rest.is_none());
        for i in 0..(MAX_BATCH as u64 + 5) {
            tx.send((Job::Forward(del(i)), 1)).unwrap();
        }
        let (batch, _, _) = gather(del(100), 1, &rx);
        assert_eq!(batch.len(), MAX_BATCH);
    }
}

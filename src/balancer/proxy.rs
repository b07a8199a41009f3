//! The balancer's listener and its client sessions: one thread per
//! connection, as in the server. A v1 client session (`CLIENT` tag) is
//! decoded by the server's own [`ClientSession`] and each request is
//! relayed through the [`Upstream`] (reads and writes through the
//! [`Observer`]'s cache when `CACHE_SIZE` is not 0); a v2 client session
//! (`FKV` tag) is served by `kv`, over the v2 sessions of [`KvPool`]; a
//! status request (`FSTA`) gets the balancer's own report; anything else is
//! closed with a log line. A client that begins a request must finish it within the
//! handshake timeout, and must take its replies within the write timeout.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::kv_upstream::KvPool;
use super::observer::Observer;
use super::upstream::{Upstream, UpstreamError};
use super::BalancerConfig;
use crate::protocol::session::{custom_reply, read_reply, Action, ClientSession, REQUEST_LEN};
use crate::wire::kv::KV_TAG;
use crate::wire::status::STATUS_TAG;
use crate::wire::{CustomerRecord, Frame, RobotInfo, CLIENT_TAG, HANDSHAKE_LEN};

/// Stack of a connection thread: it holds a small buffer and a session.
const STACK: usize = 256 * 1024;

/// What every thread of one balancer shares.
pub(super) struct Shared {
    pub(super) config: BalancerConfig,
    pub(super) upstream: Upstream,
    /// The read cache and its commit stream (`CACHE_SIZE` 0: never used).
    pub(super) observer: Observer,
    /// The v2 sessions to the servers.
    pub(super) kv: KvPool,
    closed: AtomicBool,
    next_id: AtomicI32,
    conns: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
    pub(super) started: Instant,
    /// Client requests received (writes, reads, custom orders).
    pub(super) requests: AtomicU64,
    /// Client sessions open now.
    pub(super) clients: AtomicU32,
}

impl Shared {
    pub(super) fn new(config: BalancerConfig) -> Shared {
        Shared {
            upstream: Upstream::new(config.servers.clone(), config.upstream),
            observer: Observer::new(config.cache_size),
            kv: KvPool::new(config.servers.len(), config.upstream.pool_per_server),
            config,
            closed: AtomicBool::new(false),
            next_id: AtomicI32::new(0),
            conns: Mutex::new(Vec::new()),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            clients: AtomicU32::new(0),
        }
    }

    /// Closes every connection and joins its thread; new ones are refused.
    pub(super) fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.upstream.stop();
        self.kv.stop();
        self.observer.stop();
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for (stream, _) in &conns {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, t) in conns {
            let _ = t.join();
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn cached(&self) -> bool {
        self.config.cache_size > 0
    }

    /// A client's write, through the cache when there is one.
    fn order(&self, customer: i32, order: i32) -> Result<RobotInfo, UpstreamError> {
        if self.cached() {
            self.observer.order(&self.upstream, customer, order)
        } else {
            self.upstream.order(customer, order)
        }
    }

    /// A client's read, from the cache when it may answer.
    fn read(&self, customer: i32) -> Result<CustomerRecord, UpstreamError> {
        if self.cached() {
            self.observer.read(&self.upstream, customer)
        } else {
            self.upstream.read(customer)
        }
    }
}

/// Starts the accept loop on `listener`.
pub(super) fn spawn(shared: Arc<Shared>, listener: TcpListener) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("load-accept".into())
        .spawn(move || accept_loop(&shared, &listener))
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if shared.is_closed() => {
                log::debug!("balancer: accept: {e}");
                return;
            }
            Err(e) => {
                log::warn!("balancer: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.is_closed() {
            return;
        }
        admit(shared, stream, peer);
    }
}

/// Starts a connection's thread, or turns it away when too many are open.
fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let mut conns = shared.conns.lock().unwrap_or_else(PoisonError::into_inner);
    let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut *conns)
        .into_iter()
        .partition(|(_, t)| t.is_finished());
    *conns = open;
    for (_, t) in done {
        let _ = t.join();
    }
    if conns.len() >= shared.config.max_connections {
        log::warn!(
            "balancer: {peer}: {} connections open, the most allowed; closing",
            conns.len()
        );
        return;
    }
    let Ok(handle) = stream.try_clone() else {
        log::warn!("balancer: {peer}: cannot keep the connection; closing");
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let for_thread = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("load-{id}"))
        .stack_size(STACK)
        .spawn(move || run(&for_thread, stream, peer, id));
    match spawned {
        Ok(t) => conns.push((handle, t)),
        Err(e) => log::warn!("balancer: {peer}: cannot start a thread ({e}); closing"),
    }
}

/// Why a client session ended.
enum End {
    Closed,
    Io(io::Error),
    Stalled(usize),
    Upstream(UpstreamError),
    Violation(crate::protocol::session::Violation),
}

fn run(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, id: i32) {
    session(shared, &mut stream, peer, id);
    // The registry holds a clone of the socket until it reaps this thread:
    // only a shutdown ends the connection now.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn session(shared: &Shared, stream: &mut TcpStream, peer: SocketAddr, id: i32) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.config.client_write_timeout));
    let _ = stream.set_read_timeout(Some(shared.config.handshake_timeout));
    let mut tag = [0u8; HANDSHAKE_LEN];
    if let Err(e) = stream.read_exact(&mut tag) {
        log::debug!("balancer: {peer}: no handshake ({e}); closing");
        return;
    }
    if tag == STATUS_TAG {
        super::status::send(shared, stream, peer);
        return;
    }
    if tag == KV_TAG {
        shared.clients.fetch_add(1, Ordering::Relaxed);
        let cx = super::kv::Context {
            upstream: &shared.upstream,
            pool: &shared.kv,
            requests: &shared.requests,
            frame_timeout: shared.config.handshake_timeout,
        };
        super::kv::serve(&cx, stream, peer);
        shared.clients.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    if tag != CLIENT_TAG {
        log::warn!("balancer: {peer}: handshake {tag:02x?} is not a v1 or v2 client's; closing");
        return;
    }
    shared.clients.fetch_add(1, Ordering::Relaxed);
    let end = serve(shared, stream, id);
    shared.clients.fetch_sub(1, Ordering::Relaxed);
    match end {
        End::Closed => log::debug!("balancer: client {peer} ended its session"),
        End::Io(e) => log::debug!("balancer: client {peer}: {e}; closing"),
        End::Stalled(got) => log::warn!(
            "balancer: client {peer}: sent {got} of {REQUEST_LEN} bytes of a request, then nothing; closing"
        ),
        End::Upstream(e) => log::warn!("balancer: client {peer}: {e}; closing"),
        End::Violation(v) => log::warn!("balancer: client {peer}: {v}; closing"),
    }
}

fn serve(shared: &Shared, stream: &mut TcpStream, id: i32) -> End {
    let mut session = ClientSession::new();
    let mut buf = [0u8; 256];
    let (mut at, mut len) = (0, 0);
    loop {
        let (used, action) = session.receive(&buf[at..len]);
        at += used;
        if matches!(
            action,
            Action::Write { .. } | Action::Read { .. } | Action::Custom { .. }
        ) {
            shared.requests.fetch_add(1, Ordering::Relaxed);
        }
        let reply: Vec<u8> = match action {
            Action::NeedInput => {
                match fill(
                    stream,
                    &mut buf,
                    session.partial(),
                    shared.config.handshake_timeout,
                ) {
                    Ok(n) => (at, len) = (0, n),
                    Err(end) => return end,
                }
                continue;
            }
            Action::Write {
                customer_id,
                order_number,
            } => match shared.order(customer_id, order_number) {
                Ok(info) => info.to_vec(),
                Err(e) => return End::Upstream(e),
            },
            Action::Read { customer_id } => match shared.read(customer_id) {
                Ok(record) => read_reply(customer_id, record.last_order).to_vec(),
                Err(e) => return End::Upstream(e),
            },
            Action::Custom {
                customer_id,
                order_number,
            } => match shared.upstream.custom(customer_id, order_number) {
                Ok(status) => custom_reply(customer_id, order_number, id, status).to_vec(),
                Err(e) => return End::Upstream(e),
            },
            Action::End => return End::Closed,
            Action::Close(v) => return End::Violation(v),
        };
        debug_assert!(reply.len() <= RobotInfo::SIZE);
        if let Err(e) = stream.write_all(&reply) {
            return End::Io(e);
        }
    }
}

/// Reads what the client sent. Between requests it may wait for ever (the
/// balancer's stop shuts the socket down); a request begun must be
/// finished within `frame_timeout`.
fn fill(
    stream: &mut TcpStream,
    buf: &mut [u8],
    partial: usize,
    frame_timeout: Duration,
) -> Result<usize, End> {
    let timeout = (partial > 0).then_some(frame_timeout);
    stream.set_read_timeout(timeout).map_err(End::Io)?;
    loop {
        return match stream.read(buf) {
            Ok(0) if partial == 0 => Err(End::Closed),
            Ok(0) => Err(End::Io(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("closed after {partial} of {REQUEST_LEN} bytes of a request"),
            ))),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(End::Stalled(partial))
            }
            Err(e) => Err(End::Io(e)),
        };
    }
}

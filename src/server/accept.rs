//! The listening socket, the accept loop (the original's `ServerMain`
//! loop) and the handshake dispatch of each new connection (the start of
//! `EngineerThread`). [`Server::start`](super::Server::start), which the C
//! ABI's `factory_server_start` calls too, binds through [`listen`].
//!
//! The listen backlog is the system's `net.core.somaxconn` unless
//! [`Limits::backlog`](super::Limits) asks otherwise (std's
//! `TcpListener::bind` would use 128, far below a burst of clients).
//!
//! Departures from the original, which has neither limit: at most
//! [`Limits::max_connections`](super::Limits) connections are served at
//! once (one more is accepted and closed at once, so that it does not wait
//! in the backlog, and its client reads end of file, not a reset; logged at
//! most once a second with the count of the others), and the 8-byte
//! handshake must arrive within the handshake timeout, counted from the
//! accept, however slowly its bytes trickle in.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{backup, follower, next_engineer_id, session, ServerError, Shared};
use crate::conn::ConnError;
use crate::wire::{Tag, HANDSHAKE_LEN};

/// Stack size of a connection thread: the roles keep their buffers small
/// and on the stack, and thousands of idle clients must stay cheap.
pub(crate) const CONNECTION_STACK: usize = 256 * 1024;

/// Pause after a failed `accept()` (typically out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Where Linux publishes the cap on every listen backlog.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The backlog used when the system's cap cannot be read: Linux's default
/// `somaxconn` since 5.4.
const FALLBACK_BACKLOG: u32 = 4096;

/// A socket listening on `addr` with a backlog of `asked` connections, or
/// of the system's `somaxconn` when `None`.
pub(super) fn listen(addr: SocketAddr, asked: Option<u32>) -> io::Result<TcpListener> {
    let somaxconn = system_somaxconn();
    let backlog = backlog_for(asked, somaxconn);
    if let (Some(asked), Some(cap)) = (asked, somaxconn) {
        if asked > cap {
            log::warn!(
                "listen backlog {asked} is above net.core.somaxconn ({cap}), which caps it at {cap}"
            );
        }
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's TcpListener::bind does: a restarted server gets its port
    // back while connections of the last run linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    log::debug!("listening on {addr} with a backlog of {backlog}");
    Ok(socket.into())
}

fn system_somaxconn() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The backlog to ask for: the one asked, else the system's cap, else a
/// fallback; never 0 (which some kernels read as "no queue at all").
fn backlog_for(asked: Option<u32>, somaxconn: Option<u32>) -> u32 {
    asked.or(somaxconn).unwrap_or(FALLBACK_BACKLOG).max(1)
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    listener: TcpListener,
) -> Result<JoinHandle<()>, ServerError> {
    thread::Builder::new()
        .name(format!("accept-{}", shared.factory_id))
        .spawn(move || run(shared, listener))
        .map_err(ServerError::Io)
}

/// Refusals, threads that cannot start and failed accepts are each logged
/// at most this often (a flood would otherwise turn into a flood of lines).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

fn run(shared: Arc<Shared>, listener: TcpListener) {
    let mut workers = Workers::default();
    let live = Arc::new(AtomicUsize::new(0));
    let limit = shared.limits.max_connections;
    let (mut refusals, mut no_thread, mut failed_accepts) = Default::default();
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        match conn {
            // Only this thread adds connections, so the count cannot pass
            // the limit between this check and the spawn.
            Ok(stream) if live.load(Ordering::Acquire) >= limit => {
                refuse(&mut refusals, stream, limit)
            }
            Ok(stream) => match spawn_connection(&shared, stream, Slot::take(&live)) {
                Ok(worker) => workers.add(worker),
                Err(e) => {
                    if let Some(more) = Throttle::due(&mut no_thread) {
                        log::warn!(
                            "cannot start a thread for a new connection: {e}; closed at once{}",
                            others(more, "closed")
                        );
                    }
                }
            },
            Err(e) => {
                if let Some(more) = Throttle::due(&mut failed_accepts) {
                    log::warn!("accept failed: {e}{}", others(more, "failed"));
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    drop(listener);
    workers.join_all();
}

/// Fewest connection threads held before finished ones are joined.
const REAP_FLOOR: usize = 64;

/// The connection threads not joined yet. Joining the finished ones at
/// every accept walks every open connection per accept, quadratic in a
/// burst of thousands; they are joined instead when the list has doubled
/// since the last time, which costs O(1) per accept on average and holds at
/// most as many finished threads as live ones (or [`REAP_FLOOR`]).
struct Workers {
    threads: Vec<JoinHandle<()>>,
    reap_at: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            threads: Vec::new(),
            reap_at: REAP_FLOOR,
        }
    }
}

impl Workers {
    fn add(&mut self, worker: JoinHandle<()>) {
        self.threads.push(worker);
        if self.threads.len() >= self.reap_at {
            self.reap();
            self.reap_at = (2 * self.threads.len()).max(REAP_FLOOR);
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.threads.len() {
            if self.threads[i].is_finished() {
                let _ = self.threads.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
    }

    fn join_all(self) {
        for worker in self.threads {
            let _ = worker.join();
        }
    }
}

/// One connection counted against the limit, until it is dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(live: &Arc<AtomicUsize>) -> Slot {
        live.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(live))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One kind of event logged at most once per [`LOG_INTERVAL`], each line
/// with the count of those not logged since the last one.
#[derive(Default)]
struct Throttle {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// `Some(n)` when this event is to be logged now, `n` others having
    /// passed unlogged since the last line; `None`: counted for the next.
    fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .last_logged
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The tail of a throttled line: how many more were `what` unlogged.
fn others(more: u64, what: &str) -> String {
    if more == 0 {
        return String::new();
    }
    format!(" ({more} more {what} since the last report)")
}

/// Closes a connection beyond the limit at once, and logs it (or counts it
/// for the next line).
fn refuse(refusals: &mut Throttle, stream: TcpStream, limit: usize) {
    let Some(more) = refusals.due() else {
        turn_away(stream);
        return;
    };
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "a client".to_string(), |a| a.to_string());
    turn_away(stream);
    log::warn!(
        "{peer}: {limit} connections already open (--max-connections); closed at once{}",
        others(more, "refused")
    );
}

/// Most bytes read and discarded from a refused connection before closing.
const REFUSED_DRAIN: usize = 4096;

/// Closes a refused connection so that its client reads end of file.
///
/// Closing a socket whose input was not all read makes the kernel send a
/// reset instead of a FIN, and a client that already sent its tag (as every
/// client in a burst has, before it is accepted) would see "connection
/// reset by peer". So: FIN first, then discard what already arrived, then
/// close. Anything the client sends later is answered with a reset too, but
/// after the FIN, so its next read still sees end of file. Non-blocking, a
/// few system calls: the accept loop does not wait for the client.
fn turn_away(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = [0u8; 512];
    let mut drained = 0;
    while drained < REFUSED_DRAIN {
        match (&stream).read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => break, // end of file, nothing more yet, or an error
        }
    }
}

/// A stream on its way to its connection thread. If the thread cannot be
/// started, the closure that owns it is dropped, and with it the stream:
/// turned away (end of file) rather than reset.
struct Handoff(Option<TcpStream>);

impl Handoff {
    fn take(&mut self) -> Option<TcpStream> {
        self.0.take()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            turn_away(stream);
        }
    }
}

fn spawn_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    slot: Slot,
) -> std::io::Result<JoinHandle<()>> {
    let engineer_id = next_engineer_id(shared);
    let shared = Arc::clone(shared);
    let mut handoff = Handoff(Some(stream));
    thread::Builder::new()
        .name(format!("conn-{engineer_id}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            if let Some(stream) = handoff.take() {
                serve(&shared, stream, engineer_id);
            }
            drop(slot);
        })
}

fn serve(shared: &Shared, mut stream: TcpStream, engineer_id: i32) {
    let peer = match stream.peer_addr() {
        Ok(addr) => addr,
        Err(_) => return, // already gone
    };
    let Some(_registered) = shared.registry.register(&stream) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    match read_tag(&mut stream, deadline) {
        Ok(raw) => match Tag::decode(&raw) {
            Some(Tag::Client) => session::run(shared, stream, peer, engineer_id),
            Some(Tag::Pfa) => backup::run(shared, stream, peer),
            Some(Tag::Native) => follower::run(shared, stream, peer),
            None => log::warn!(
                "{peer}: unknown handshake tag {raw:02x?}, expected CLIENT, PFA or FREP; closing"
            ),
        },
        Err(e) => log_handshake_failure(shared, peer, &e),
    }
}

/// Reads the 8-byte tag, all of it before `deadline`.
fn read_tag(stream: &mut TcpStream, deadline: Instant) -> Result<[u8; HANDSHAKE_LEN], ConnError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut got = 0;
    while got < HANDSHAKE_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::Timeout);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(ConnError::Closed),
            Ok(0) => {
                return Err(ConnError::Truncated {
                    got,
                    want: HANDSHAKE_LEN,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf)
}

fn log_handshake_failure(shared: &Shared, peer: SocketAddr, e: &ConnError) {
    match e {
        ConnError::Timeout => log::warn!(
            "{peer}: no handshake within {:?}; closing",
            shared.limits.handshake_timeout
        ),
        ConnError::Truncated { .. } => log::warn!("{peer}: short handshake tag ({e}); closing"),
        _ => log::debug!("{peer}: closed before its handshake ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_backlog_is_the_one_asked_else_the_systems() {
        assert_eq!(backlog_for(Some(10), Some(4096)), 10);
        assert_eq!(backlog_for(Some(10_000), Some(4096)), 10_000);
        assert_eq!(backlog_for(None, Some(65_535)), 65_535);
        assert_eq!(backlog_for(None, None), FALLBACK_BACKLOG);
        assert_eq!(backlog_for(Some(0), Some(4096)), 1);
    }

    #[test]
    fn listen_takes_port_zero_and_accepts() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), Some(16)).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let _client = TcpStream::connect(addr).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert!(peer.ip().is_loopback());
    }

    /// Connects `n` clients to a listener that never accepts; true if all
    /// got through the handshake (a full accept queue drops the SYN, and
    /// with nobody accepting it stays full, so the connect times out).
    fn queued(listener: &TcpListener, n: usize) -> Result<Vec<TcpStream>, usize> {
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(s) => held.push(s),
                Err(_) => return Err(i),
            }
        }
        Ok(held)
    }

    #[test]
    fn the_default_backlog_queues_more_than_std_would() {
        // std's TcpListener::bind queues 128 (129 with Linux's off by one).
        let n = backlog_for(None, system_somaxconn()).min(300) as usize;
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), None).unwrap();
        assert_eq!(queued(&listener, n).err(), None, "of {n}");
    }

    #[test]
    fn a_small_backlog_queues_about_that_many() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), Some(4)).unwrap();
        let held = queued(&listener, 4).expect("four queued");
        // Linux queues one more than the backlog, then drops.
        let (addr, wait) = (listener.local_addr().unwrap(), Duration::from_millis(300));
        let extra: Vec<_> = (0..2)
            .map_while(|_| TcpStream::connect_timeout(&addr, wait).ok())
            .collect();
        assert!(extra.len() < 2, "six queued with a backlog of 4");
        drop((held, extra));
    }

    /// A thread that has ended, as the accept loop would hold it.
    fn finished_thread() -> JoinHandle<()> {
        let t = thread::spawn(|| {});
        let end = Instant::now() + Duration::from_secs(20);
        while !t.is_finished() && Instant::now() < end {
            thread::yield_now();
        }
        assert!(t.is_finished());
        t
    }

    #[test]
    fn finished_connection_threads_are_joined_as_the_list_grows() {
        let mut workers = Workers::default();
        for _ in 0..300 {
            workers.add(finished_thread());
            assert!(workers.threads.len() < REAP_FLOOR, "never joined");
        }
    }

    #[test]
    fn running_connection_threads_are_kept_until_the_end() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let ended = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::default();
        for _ in 0..(3 * REAP_FLOOR) {
            let (gate, ended) = (Arc::clone(&gate), Arc::clone(&ended));
            workers.add(thread::spawn(move || {
                let (open, changed) = &*gate;
                let open = open.lock().unwrap();
                let _ = changed.wait_timeout_while(open, Duration::from_secs(20), |o| !*o);
                ended.fetch_add(1, Ordering::SeqCst);
            }));
        }
        assert_eq!(workers.threads.len(), 3 * REAP_FLOOR);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        workers.join_all();
        assert_eq!(ended.load(Ordering::SeqCst), 3 * REAP_FLOOR);
    }

    #[test]
    fn a_throttle_logs_once_an_interval_with_the_count_of_the_others() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.due_at(start), Some(0));
        for ms in [1, 500, 999] {
            assert_eq!(t.due_at(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.due_at(start + LOG_INTERVAL), Some(3));
        assert_eq!(t.due_at(start + LOG_INTERVAL), None);
        assert_eq!(t.due_at(start + 5 * LOG_INTERVAL), Some(1));
        assert_eq!(others(0, "refused"), "");
        assert_eq!(
            others(3, "refused"),
            " (3 more refused since the last report)"
        );
    }

    /// A connected pair whose server side already holds unread input.
    fn pair_with_unread_input() -> (TcpStream, TcpStream) {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), None).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (served, _) = listener.accept().unwrap();
        client.write_all(b"CLIENT\0\0 and a request").unwrap();
        let mut first = [0u8; 1];
        // Blocks until the bytes are there, without taking them.
        assert_eq!(served.peek(&mut first).unwrap(), 1);
        (client, served)
    }

    fn read_once(client: &mut TcpStream) -> io::Result<usize> {
        client.read(&mut [0u8; 16])
    }

    #[test]
    fn a_turned_away_client_reads_end_of_file_not_a_reset() {
        let (mut client, served) = pair_with_unread_input();
        turn_away(served);
        assert_eq!(read_once(&mut client).unwrap(), 0);
        // Even when it writes again, after the close.
        let _ = client.write_all(b"more");
        assert_eq!(read_once(&mut client).unwrap(), 0);
    }

    #[test]
    fn a_stream_whose_thread_never_started_is_turned_away() {
        let (mut client, served) = pair_with_unread_input();
        drop(Handoff(Some(served)));
        assert_eq!(read_once(&mut client).unwrap(), 0);
    }

    #[test]
    fn a_taken_port_is_address_in_use() {
        let first = listen(SocketAddr::from(([127, 0, 0, 1], 0)), None).unwrap();
        let err = listen(first.local_addr().unwrap(), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    }
}

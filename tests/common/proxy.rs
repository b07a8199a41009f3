//! A fault-injecting TCP proxy for tests: listens on an ephemeral loopback
//! port and forwards each connection to a target, and each direction
//! (client → target "up", target → client "down") can be switched at any
//! time between passing bytes, resetting, blackholing and discarding.
//! Std threads only: one accept thread and two pumps per connection, all
//! joined when the proxy drops. Put one between every pair of servers (peer
//! lists name the proxies) and between clients and servers.
//!
//! - [`Mode::Pass`]: bytes flow.
//! - [`Mode::Reset`]: every open connection is closed at once on both sides
//!   with an RST (`SO_LINGER` 0); a new connection is accepted and reset as
//!   soon as a byte travels in that direction.
//! - [`Mode::Blackhole`]: connections stay open and nothing arrives, as
//!   when a network drops packets: bytes in that direction are held (the
//!   pump stops reading, so the sender's buffers fill and it blocks), and
//!   if the link heals before anyone gives up they arrive in order, as
//!   TCP's retransmission would deliver them.
//! - [`Mode::Discard`]: like a blackhole, but the bytes are read and thrown
//!   away, so after a heal the stream has a hole (a peer sees garbage;
//!   for hostile-input tests rather than partitions).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What a direction of the proxy does with bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward them.
    Pass,
    /// Reset the connections (both sides get an RST).
    Reset,
    /// Hold them: connections stay open, nothing arrives until a heal.
    Blackhole,
    /// Drop them: connections stay open, the bytes are lost for good.
    Discard,
}

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side to the target.
    Up,
    /// From the target back to the connecting side.
    Down,
}

/// Most connections open at once; more are reset on accept.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a pump's write may block (a peer that never reads) before
/// the connection is reset, and the longest wait for a target's connect.
const IO_LIMIT: Duration = Duration::from_secs(5);

/// Longest a held (blackholed) pump sleeps before it checks again.
const HOLD_RECHECK: Duration = Duration::from_millis(200);

struct Conn {
    client: TcpStream,
    target: TcpStream,
    dead: AtomicBool,
    /// Directions that reached their end.
    ended: AtomicUsize,
}

impl Conn {
    /// Both ends get an RST: linger 0, then the readers are woken (a
    /// read-side shutdown sends nothing) and the last descriptor closes.
    fn reset(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.client, &self.target] {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

struct State {
    up: Mode,
    down: Mode,
    conns: Vec<Arc<Conn>>,
    threads: Vec<JoinHandle<()>>,
}

struct Inner {
    target: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn mode(&self, dir: Dir) -> Mode {
        mode_of(&self.lock(), dir)
    }
}

fn mode_of(state: &State, dir: Dir) -> Mode {
    match dir {
        Dir::Up => state.up,
        Dir::Down => state.down,
    }
}

/// A running proxy; dropping it resets every connection and joins every
/// thread it started.
pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            target,
            state: Mutex::new(State {
                up: Mode::Pass,
                down: Mode::Pass,
                conns: Vec::new(),
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let inner2 = Arc::clone(&inner);
        let accept = thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(&inner2, &listener))?;
        Ok(Proxy {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets one direction's mode; switching to [`Mode::Reset`] resets
    /// every open connection at once.
    pub fn set(&self, dir: Dir, mode: Mode) {
        let mut state = self.inner.lock();
        match dir {
            Dir::Up => state.up = mode,
            Dir::Down => state.down = mode,
        }
        if mode == Mode::Reset {
            for conn in &state.conns {
                conn.reset();
            }
        }
        drop(state);
        self.inner.changed.notify_all();
    }

    /// Sets both directions.
    pub fn set_both(&self, mode: Mode) {
        self.set(Dir::Up, mode);
        self.set(Dir::Down, mode);
    }

    /// Both directions pass again.
    pub fn heal(&self) {
        self.set_both(Mode::Pass);
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        let mut state = self.inner.lock();
        state.conns.retain(|c| !c.is_dead());
        state.conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the accept thread with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // An opening thread may still add pumps: join until none is left
        // (each round only joins threads that were started before it).
        for _ in 0..MAX_CONNECTIONS * 3 + 2 {
            let threads = {
                let mut state = self.inner.lock();
                for conn in &state.conns {
                    conn.reset();
                }
                std::mem::take(&mut state.threads)
            };
            if threads.is_empty() {
                break;
            }
            self.inner.changed.notify_all();
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: &TcpListener) {
    // Bounded by the stop flag: Drop connects once to wake this accept.
    for stream in listener.incoming() {
        if inner.stopping() {
            return;
        }
        let Ok(client) = stream else { continue };
        // Connecting to the target happens on a thread of its own, so a
        // slow target never holds up accepting the next client.
        let inner2 = Arc::clone(inner);
        let spawned = thread::Builder::new()
            .name("proxy-open".into())
            .spawn(move || {
                if let Err(e) = open(&inner2, client) {
                    eprintln!("proxy to {}: {e}", inner2.target);
                }
            });
        if let Ok(handle) = spawned {
            let mut state = inner.lock();
            state.threads.retain(|t| !t.is_finished());
            state.threads.push(handle);
        }
    }
}

/// Connects to the target and starts the two pumps; a client that cannot
/// be served (too many connections, target down) is reset.
fn open(inner: &Arc<Inner>, client: TcpStream) -> io::Result<()> {
    let full = {
        let mut state = inner.lock();
        state.conns.retain(|c| !c.is_dead());
        state.threads.retain(|t| !t.is_finished());
        state.conns.len() >= MAX_CONNECTIONS
    };
    let target = if full {
        None
    } else {
        TcpStream::connect_timeout(&inner.target, IO_LIMIT).ok()
    };
    let Some(target) = target else {
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return Ok(());
    };
    for s in [&client, &target] {
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(IO_LIMIT))?;
    }
    let conn = Arc::new(Conn {
        client,
        target,
        dead: AtomicBool::new(false),
        ended: AtomicUsize::new(0),
    });
    // Registered before its pumps start, so that a pump ending at once
    // finds it and lets go of it (else it would hold the sockets open).
    inner.lock().conns.push(Arc::clone(&conn));
    let started = start_pumps(inner, &conn);
    if started.is_err() {
        conn.reset();
        inner.lock().conns.retain(|c| !Arc::ptr_eq(c, &conn));
    }
    started
}

fn start_pumps(inner: &Arc<Inner>, conn: &Arc<Conn>) -> io::Result<()> {
    for dir in [Dir::Up, Dir::Down] {
        let (from, to) = match dir {
            Dir::Up => (conn.client.try_clone()?, conn.target.try_clone()?),
            Dir::Down => (conn.target.try_clone()?, conn.client.try_clone()?),
        };
        let (inner2, conn2) = (Arc::clone(inner), Arc::clone(conn));
        let handle = thread::Builder::new()
            .name(format!("pump-{dir:?}"))
            .spawn(move || pump(&inner2, &conn2, dir, from, to))?;
        inner.lock().threads.push(handle);
    }
    Ok(())
}

/// Moves bytes one way until either side closes or the link is reset.
fn pump(inner: &Inner, conn: &Conn, dir: Dir, from: TcpStream, to: TcpStream) {
    pump_until_end(inner, conn, dir, from, to);
    if conn.ended.fetch_add(1, Ordering::SeqCst) == 1 {
        // Both ways are done: let go of the last descriptors, which sends
        // the RST if the connection was reset.
        conn.dead.store(true, Ordering::SeqCst);
        inner
            .lock()
            .conns
            .retain(|c| !std::ptr::eq(Arc::as_ptr(c), conn));
    }
}

fn pump_until_end(inner: &Inner, conn: &Conn, dir: Dir, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => {
                // The peer reset: so does the other side.
                conn.reset();
                return;
            }
        };
        if !deliver(inner, conn, dir, &buf[..n], &from, &mut to) {
            return;
        }
    }
    if conn.is_dead() || inner.stopping() {
        return;
    }
    // An orderly end on one side is passed on as an orderly end.
    let _ = to.shutdown(Shutdown::Write);
}

/// True if the peer of `s` reset the connection (checked without reading).
fn was_reset(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let reset = matches!(s.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::ConnectionReset);
    let _ = s.set_nonblocking(false);
    reset
}

/// Handles one read's worth of bytes as the direction's mode says; false
/// when the connection is finished.
fn deliver(
    inner: &Inner,
    conn: &Conn,
    dir: Dir,
    bytes: &[u8],
    from: &TcpStream,
    to: &mut TcpStream,
) -> bool {
    loop {
        if conn.is_dead() || inner.stopping() {
            return false;
        }
        match inner.mode(dir) {
            Mode::Pass => {
                if to.write_all(bytes).is_err() {
                    conn.reset();
                    return false;
                }
                return true;
            }
            Mode::Discard => return true,
            Mode::Reset => {
                conn.reset();
                return false;
            }
            Mode::Blackhole => {
                let mut state = inner.lock();
                while mode_of(&state, dir) == Mode::Blackhole
                    && !conn.is_dead()
                    && !inner.stopping()
                {
                    state = match inner.changed.wait_timeout(state, HOLD_RECHECK) {
                        Ok((s, _)) => s,
                        Err(e) => e.into_inner().0,
                    };
                }
                drop(state);
                // Held bytes stand for bytes the sender's kernel still
                // retransmits; a sender that reset meanwhile dropped them.
                if was_reset(from) {
                    conn.reset();
                    return false;
                }
            }
        }
    }
}

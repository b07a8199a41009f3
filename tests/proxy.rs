//! The fault-injecting proxy of tests/common/proxy.rs against a plain echo
//! server: each mode, per direction, and the heal.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::proxy::{Dir, Mode, Proxy};
use common::wait_until;

/// How long a read waits when the test expects nothing to arrive: the
/// only way to observe an absence; the test cannot pass by waiting less.
const QUIET: Duration = Duration::from_millis(300);

/// An echo server on an ephemeral port that counts the bytes it received.
struct Echo {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&received), Arc::clone(&stop));
        let accept = thread::spawn(move || {
            let mut conns = Vec::new();
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let r = Arc::clone(&r);
                conns.push(thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        r.fetch_add(n, Ordering::SeqCst);
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Echo {
            addr,
            received,
            stop,
            accept: Some(accept),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn connect(proxy: &Proxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}

/// True if nothing arrives on `s` within [`QUIET`] and it stays open.
fn silent(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(QUIET)).unwrap();
    let mut byte = [0u8; 1];
    let quiet = matches!(
        s.read(&mut byte),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    quiet
}

/// True if `s` was reset (not closed in order).
fn was_reset(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        match s.read(&mut buf) {
            Err(e) => return e.kind() == ErrorKind::ConnectionReset,
            Ok(0) => return false,
            Ok(_) => continue,
        }
    }
    false
}

#[test]
fn pass_forwards_both_ways() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    assert_eq!(round_trip(&mut s, b"hello").unwrap(), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(round_trip(&mut s, &big).unwrap(), big, "large transfers");
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn reset_closes_open_connections_with_an_rst() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s, b"one").unwrap();
    proxy.set(Dir::Up, Mode::Reset);
    assert!(
        was_reset(&mut s),
        "the client sees a reset, not an orderly end"
    );
    assert!(wait_until(|| proxy.connections() == 0));
    // A new connection is accepted and reset at its first byte.
    let mut s = connect(&proxy);
    let _ = s.write_all(b"two");
    assert!(was_reset(&mut s));
    assert_eq!(
        echo.received(),
        3,
        "nothing of the second connection arrived"
    );
    // Healed: connections work again.
    proxy.heal();
    let mut s = connect(&proxy);
    assert_eq!(round_trip(&mut s, b"three").unwrap(), b"three");
}

#[test]
fn a_downward_reset_lets_requests_through_and_resets_on_the_answer() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    proxy.set(Dir::Down, Mode::Reset);
    let mut s = connect(&proxy);
    s.write_all(b"ping").unwrap();
    assert!(wait_until(|| echo.received() == 4), "the request arrived");
    assert!(was_reset(&mut s), "the answer reset the connection");
}

#[test]
fn an_upward_blackhole_holds_bytes_until_the_heal() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s, b"a").unwrap();
    proxy.set(Dir::Up, Mode::Blackhole);
    s.write_all(b"held").unwrap();
    assert!(silent(&mut s), "nothing comes back");
    assert_eq!(echo.received(), 1, "nothing reached the server");
    assert_eq!(proxy.connections(), 1, "the connection stays open");
    // New connections are accepted and held too.
    let mut s2 = connect(&proxy);
    s2.write_all(b"x").unwrap();
    assert!(silent(&mut s2));
    proxy.heal();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held", "held bytes arrive in order after the heal");
    let mut one = [0u8; 1];
    s2.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"x");
}

/// Held bytes stand for what the sender's kernel still retransmits: a
/// sender that gave up and reset its connection (as the factory client
/// does when a request times out) dropped them, so the heal delivers none.
#[test]
fn bytes_held_for_a_sender_that_reset_are_dropped_at_the_heal() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s, b"a").unwrap();
    proxy.set(Dir::Up, Mode::Blackhole);
    s.write_all(b"held").unwrap();
    assert!(silent(&mut s), "nothing comes back");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    proxy.heal();
    assert!(
        wait_until(|| proxy.connections() == 0),
        "the connection ends"
    );
    assert_eq!(
        echo.received(),
        1,
        "the held bytes never reached the server"
    );
}

#[test]
fn a_downward_blackhole_is_one_way() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    proxy.set(Dir::Down, Mode::Blackhole);
    s.write_all(b"ping").unwrap();
    assert!(wait_until(|| echo.received() == 4), "requests get through");
    assert!(silent(&mut s), "answers do not");
    proxy.heal();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

#[test]
fn discard_loses_the_bytes_for_good() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    proxy.set(Dir::Up, Mode::Discard);
    s.write_all(b"lost").unwrap();
    assert!(silent(&mut s));
    proxy.heal();
    assert_eq!(round_trip(&mut s, b"kept").unwrap(), b"kept");
    assert_eq!(echo.received(), 4, "only the bytes after the heal arrived");
}

#[test]
fn an_orderly_close_passes_through() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let mut s = connect(&proxy);
    round_trip(&mut s, b"bye").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the server's end arrives as an end of file"
    );
    assert!(wait_until(|| proxy.connections() == 0));
}

#[test]
fn a_dead_target_resets_the_client() {
    let port = common::free_port();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    let mut s = connect(&proxy);
    let _ = s.write_all(b"anyone?");
    assert!(was_reset(&mut s));
}

#[test]
fn dropping_the_proxy_ends_its_connections_and_its_port() {
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    let addr = proxy.addr();
    let mut open = connect(&proxy);
    let mut held = connect(&proxy);
    round_trip(&mut open, b"1").unwrap();
    proxy.set(Dir::Up, Mode::Blackhole);
    held.write_all(b"2").unwrap();
    drop(proxy); // joins every thread, including the held pump
    assert!(was_reset(&mut open));
    assert!(was_reset(&mut held));
    assert!(TcpStream::connect(addr).is_err(), "nobody listens any more");
}

#[test]
fn every_connection_reset_at_its_first_byte_is_reset_promptly() {
    // Many at once: a pump that ends before its connection is registered
    // must still let go of the sockets, or the client never sees the RST.
    let echo = Echo::start();
    let proxy = Proxy::start(echo.addr).unwrap();
    proxy.set(Dir::Up, Mode::Reset);
    let clients: Vec<TcpStream> = (0..60)
        .map(|_| {
            // The byte goes out at once, as a peer's handshake does.
            let mut s = connect(&proxy);
            let _ = s.write_all(b"x");
            s
        })
        .collect();
    for mut s in clients {
        assert!(was_reset(&mut s), "a reset connection stayed open");
    }
}

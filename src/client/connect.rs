//! Opening a connection the way a client under load needs it: a refused or
//! reset connect (a server restarting, or its listen queue overflowing in a
//! burst of connects) is retried with a growing, jittered pause until a
//! time budget is spent; any other failure is final at once. Used by
//! [`super::Client::connect_retrying`] (the load client) and by the
//! cluster client, which also moves on to the next server.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

/// First pause after a refused or reset connect.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// Longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Pauses that double from [`FIRST_PAUSE`] up to [`MAX_PAUSE`], each cut
/// by a jitter of up to a half so that thousands of clients refused
/// together do not come back together.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::with_seed(thread_salt())
    }
}

/// A seed distinct per schedule and per moment; quality does not matter.
/// A process-wide counter rather than the thread's id: asking for
/// `thread::current()` on a C program's main thread allocates a handle that
/// is never freed, which valgrind reports against libfactory.
fn thread_salt() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SCHEDULES: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    SCHEDULES.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    Instant::now().hash(&mut h);
    h.finish()
}

impl Backoff {
    /// A schedule whose jitter comes from `seed` (tests use fixed seeds).
    pub fn with_seed(seed: u64) -> Self {
        Backoff {
            next: FIRST_PAUSE,
            seed: seed | 1,
        }
    }

    /// The next pause: between half of the nominal pause and all of it.
    pub fn next_pause(&mut self) -> Duration {
        // xorshift64: a few cycles, no dependency.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let nominal = self.next;
        self.next = (self.next * 2).min(MAX_PAUSE);
        let half = nominal / 2;
        let jitter_ns = self.seed % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter_ns)
    }

    /// Sleeps for the next pause, but never past `deadline`; false when
    /// the deadline has passed (nothing left to wait for).
    pub fn sleep_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        thread::sleep(self.next_pause().min(left));
        true
    }
}

/// True for a connect failure worth another try: the server refused
/// (nothing listens yet, or it is restarting) or reset the attempt (a full
/// listen queue).
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// Resolves `host:port`.
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Connects to the first of `addrs` that accepts, each attempt bounded by
/// `timeout`; transient failures are retried with [`Backoff`] until
/// `budget` has passed since the first attempt.
pub fn connect(
    addrs: &[SocketAddr],
    timeout: Option<Duration>,
    budget: Duration,
) -> io::Result<TcpStream> {
    let deadline = Instant::now() + budget;
    let mut backoff = Backoff::default();
    loop {
        match connect_any(addrs, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) if is_transient(&e) && backoff.sleep_until(deadline) => {}
            Err(e) => return Err(e),
        }
    }
}

fn connect_any(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::NotFound, "no address");
    for addr in addrs {
        let attempt = match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
///
/// # Errors
/// A message naming the part that is wrong.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{address}' is not HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("'{address}' has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!(
            "'{address}': port must be between 1 and 65535, got '{port}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::with_seed(42);
        let mut nominal = FIRST_PAUSE;
        for _ in 0..12 {
            let p = b.next_pause();
            assert!(p >= nominal / 2 && p <= nominal, "{p:?} vs {nominal:?}");
            nominal = (nominal * 2).min(MAX_PAUSE);
        }
        assert_eq!(nominal, MAX_PAUSE);
    }

    #[test]
    fn transient_errors() {
        assert!(is_transient(&ErrorKind::ConnectionRefused.into()));
        assert!(is_transient(&ErrorKind::ConnectionReset.into()));
        assert!(!is_transient(&ErrorKind::TimedOut.into()));
        assert!(!is_transient(&ErrorKind::PermissionDenied.into()));
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("h:1"), Ok(("h".into(), 1)));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1".into(), 80)));
        assert!(split_host_port("h").is_err());
        assert!(split_host_port(":5").is_err());
        assert!(split_host_port("h:0").is_err());
        assert!(split_host_port("h:70000").is_err());
    }

    #[test]
    fn a_refused_connect_is_retried_until_something_listens() {
        // Take a port, free it, and listen on it again only after the
        // client has been refused at least once.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(is_transient(&TcpStream::connect(addr).unwrap_err()));
        let (tx, rx) = std::sync::mpsc::channel();
        let listener = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let l = TcpListener::bind(addr);
            let _ = tx.send(());
            l.map(|l| l.accept().map(drop))
        });
        let got = connect(
            &[addr],
            Some(Duration::from_secs(5)),
            Duration::from_secs(20),
        );
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let bound = listener.join().unwrap();
        if bound.is_ok() {
            assert!(got.is_ok(), "{got:?}");
        }
    }

    #[test]
    fn a_refused_connect_gives_up_at_the_budget() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        let got = connect(&[addr], None, Duration::from_millis(200));
        assert!(got.is_err_and(|e| is_transient(&e)));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}

//! The server binary as an operator runs it: `RUST_LOG` filters and
//! timestamps, a graceful stop on SIGTERM and SIGINT, a closed stdout or
//! stderr, a peer host that does not resolve.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, DEADLINE, IO_TIMEOUT};
use factory::client::Client;

/// A `server` process with its stderr collected line by line.
struct Proc {
    port: u16,
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// `server PORT 0 0 --bind 127.0.0.1 EXTRA...` with `RUST_LOG=rust_log`,
    /// on a free port (retried if another test took it first); waits for
    /// `ready` in its log, or without one until it accepts connections.
    fn start(rust_log: &str, extra: &[&str], ready: Option<&str>) -> Proc {
        for _ in 0..5 {
            let port = free_port();
            let mut p = Proc::spawn(port, rust_log, extra);
            let up = match ready {
                Some(line) => p.wait_for_line(line),
                None => {
                    common::wait_until(|| {
                        TcpStream::connect(("127.0.0.1", port)).is_ok()
                            || matches!(p.child.try_wait(), Ok(Some(_)))
                    }) && matches!(p.child.try_wait(), Ok(None))
                }
            };
            if up {
                return p;
            }
            let exited = p.wait_exit(Duration::from_secs(1)).is_some();
            if !(exited && p.log_text().contains("already in use")) {
                panic!("server did not start: {}", p.log_text());
            }
        }
        panic!("no free port for a server");
    }

    fn spawn(port: u16, rust_log: &str, extra: &[&str]) -> Proc {
        let (peers, extra) = match extra.first() {
            Some(&"--peers") => (extra[1..4].to_vec(), &extra[4..]),
            _ => (Vec::new(), extra),
        };
        let num_peers = (peers.len() / 3).to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args([&port.to_string(), "0", &num_peers])
            .args(&peers)
            .args(["--bind", "127.0.0.1"])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, log, reader) = common::capture_lines(stderr);
        Proc {
            port,
            child,
            lines,
            log,
            reader: Some(reader),
        }
    }

    /// Waits for a new stderr line containing `needle`; false at the
    /// deadline or when stderr closes first.
    fn wait_for_line(&self, needle: &str) -> bool {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Sends `signal` (a number) with kill(1).
    fn signal(&self, signal: i32) {
        let pid = self.child.id().to_string();
        let name = format!("-{signal}");
        let status = Command::new("kill").args([&name, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {name} {pid}");
    }

    /// The exit status, once the process ended within `limit`; its stderr
    /// has then been read to the end.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn connect(port: u16) -> Client {
    Client::connect("127.0.0.1", port, IO_TIMEOUT).expect("connect")
}

/// Today's date as `YYYY-MM-DD` in UTC (civil-from-days, proleptic Gregorian).
fn utc_date(unix_secs: u64) -> String {
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// True for `YYYY-MM-DDTHH:MM:SS.mmmZ` followed by a space.
fn starts_with_rfc3339_utc(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() > 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && &b[23..25] == b"Z "
}

#[test]
fn log_lines_carry_an_rfc3339_utc_time() {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let server = Proc::start("info", &[], Some("listening on"));
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lines = server.log_lines();
    let line = lines.iter().find(|l| l.contains("listening on")).unwrap();
    assert!(starts_with_rfc3339_utc(line), "{line}");
    let dates = [utc_date(before), utc_date(after)];
    assert!(
        dates.iter().any(|d| line.starts_with(d.as_str())),
        "{line} vs {dates:?}"
    );
    assert!(line.contains(" INFO  factory::server: "), "{line}");
}

#[test]
fn rust_log_takes_module_filters() {
    // Only the session module, at debug: the accept path's info line
    // ("listening on", module factory::server) is filtered out.
    let server = Proc::start("factory::server::session::v1=debug", &[], None);
    let mut c = connect(server.port);
    c.read(1).expect("read");
    c.close();
    assert!(server.wait_for_line("ended its session"));
    let lines = server.log_lines();
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" factory::server::session::v1: ")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains(" DEBUG ")), "{lines:?}");
}

#[test]
fn an_invalid_rust_log_is_reported_once() {
    let server = Proc::start("bogus,factory=loud", &[], Some("listening on"));
    let lines = server.log_lines();
    let warnings: Vec<_> = lines.iter().filter(|l| l.contains("RUST_LOG")).collect();
    assert_eq!(warnings.len(), 1, "{lines:?}");
    assert!(warnings[0].starts_with("server: warning: "), "{lines:?}");
    assert!(warnings[0].contains("'bogus' names no module"), "{lines:?}");
    assert!(warnings[0].contains("'loud' is not"), "{lines:?}");
    assert!(warnings[0].ends_with("logging at info"), "{lines:?}");
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Writes fresh customers one after another until the connection fails,
/// recording each acknowledged write.
fn write_until_refused(port: u16, acked: &Mutex<Vec<(i32, i32)>>) {
    let Ok(mut c) = Client::connect("127.0.0.1", port, IO_TIMEOUT) else {
        return;
    };
    for customer in 0..1_000_000 {
        let order = customer * 7 + 1;
        match c.order(customer, order) {
            Ok(_) => acked.lock().unwrap().push((customer, order)),
            Err(_) => return,
        }
    }
}

#[test]
fn sigterm_stops_gracefully_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let extra = ["--data-dir", data_dir, "--fsync", "never"];
    let mut server = Proc::start("info", &extra, Some("listening on"));
    let port = server.port;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let acked = Arc::clone(&acked);
        thread::spawn(move || write_until_refused(port, &acked))
    };
    assert!(common::wait_until(|| acked.lock().unwrap().len() >= 300));
    // SIGTERM while writes are in flight.
    server.signal(SIGTERM);
    let status = server.wait_exit(DEADLINE).expect("server exits");
    writer.join().expect("writer");
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert_eq!(log.matches("stopped on SIGTERM").count(), 1, "{log}");
    assert!(!log.contains("NOT flushed"), "{log}");
    drop(server);

    let acked = acked.lock().unwrap().clone();
    let restarted = Proc::start("info", &extra, Some("listening on"));
    let log = restarted.log_text();
    assert!(log.contains("recovered cleanly"), "{log}");
    assert!(!log.contains("torn"), "{log}");
    let mut c = connect(restarted.port);
    for (customer, order) in &acked {
        let got = c.read(*customer).expect("read").last_order;
        assert_eq!(got, *order, "customer {customer} of {} acked", acked.len());
    }
    c.close();
}

#[test]
fn sigint_stops_gracefully_too() {
    let mut server = Proc::start("info", &[], Some("listening on"));
    let mut c = connect(server.port);
    c.order(1, 2).expect("write");
    server.signal(SIGINT);
    let status = server.wait_exit(DEADLINE).expect("server exits");
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    assert!(server.log_text().contains("stopped on SIGINT"));
    // The session was closed, not left hanging.
    assert!(c.read(1).is_err());
}

/// The write end of a pipe whose read end is already closed: writing to
/// it fails with EPIPE at once (a `true` child held the read end).
fn broken_pipe() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn true");
    let writer = reader.stdin.take().expect("stdin");
    reader.wait().expect("true exits");
    Stdio::from(writer)
}

#[test]
fn a_closed_stdout_or_stderr_is_no_panic() {
    for arg in ["--help", "--version"] {
        let o = Command::new(env!("CARGO_BIN_EXE_server"))
            .arg(arg)
            .stdout(broken_pipe())
            .stderr(Stdio::piped())
            .output()
            .expect("run server");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{arg}: {err}");
        assert!(err.is_empty(), "{arg}: {err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("0")
        .stdout(Stdio::null())
        .stderr(broken_pipe())
        .output()
        .expect("run server");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn an_unresolvable_peer_is_a_warning_and_is_retried() {
    let peer = free_port().to_string();
    let extra = ["--peers", "1", "nowhere.invalid", &peer, "--force-primary"];
    let rust_log = "info,factory::server::primary::replicator=debug";
    let server = Proc::start(rust_log, &extra, Some("listening on"));
    let warning = server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("does not resolve"))
        .expect("a warning at start");
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(
        warning.contains("peer id 1: host 'nowhere.invalid'"),
        "{warning}"
    );
    // Forced to lead, it replicates to the peer: the replicator resolves
    // the name again on every attempt.
    let mut c = connect(server.port);
    c.order(1, 1).expect("a forced primary takes writes");
    let lost = format!("lost peer 1 at nowhere.invalid:{peer}");
    assert!(server.wait_for_line(&lost), "{}", server.log_text());
    let again = format!("peer 1 at nowhere.invalid:{peer} still unreachable");
    assert!(server.wait_for_line(&again), "{}", server.log_text());
    c.close();
}

/// Peers are named by id and the address they listen on (the source port
/// of their connection says nothing to an operator); epochs by their
/// counter.
#[test]
fn peers_are_named_by_their_listening_address() {
    let mut cluster = common::ProcessCluster::start(2);
    let ports = cluster.ports();
    let mut c = common::client(ports[0]);
    c.order(1, 1).expect("write");
    c.close();
    let p = cluster.primary().expect("a primary");
    let b = 1 - p;
    let primary = &cluster.servers[p];
    let backup = &cluster.servers[b];
    let to_backup = format!(
        "replicating to peer {b} at 127.0.0.1:{} from index",
        ports[b]
    );
    assert!(
        primary.log_text().contains(&to_backup) || primary.wait_for_line(&to_backup),
        "{}",
        primary.log_text()
    );
    let following = format!("following primary {p} at 127.0.0.1:{} in epoch 1", ports[p]);
    assert!(
        backup.log_text().contains(&following) || backup.wait_for_line(&following),
        "{}",
        backup.log_text()
    );
    assert!(primary
        .log_text()
        .contains(&format!("factory {p} became primary in epoch 1 with")));
}

/// A child process killed (and reaped) when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server on a free port whose stderr is a pipe nobody reads any more;
/// retried if another test took the port first.
fn server_with_broken_stderr() -> (Reaped, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Reaped(
            Command::new(env!("CARGO_BIN_EXE_server"))
                .args([&port.to_string(), "0", "0", "--bind", "127.0.0.1"])
                .env("RUST_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(broken_pipe())
                .spawn()
                .expect("spawn server"),
        );
        let exited = |c: &mut Reaped| matches!(c.0.try_wait(), Ok(Some(_)));
        let up = common::wait_until(|| {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || exited(&mut child)
        });
        if up && !exited(&mut child) {
            return (child, port);
        }
    }
    panic!("the server did not start");
}

/// A server whose stderr reader went away keeps serving (log lines are
/// dropped, not a panic) and still stops cleanly.
#[test]
fn a_running_server_survives_a_closed_stderr() {
    let (mut server, port) = server_with_broken_stderr();
    let mut c = connect(port);
    c.order(5, 6).expect("write");
    assert_eq!(c.read(5).expect("read").last_order, 6);
    c.close();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-15", &pid])
        .status()
        .is_ok_and(|s| s.success()));
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            break status;
        }
        assert!(Instant::now() < end, "server did not stop");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

//! The `server` and `client` command lines: usage errors exit 2 with a
//! specific message (the server's on one line with "try --help", the
//! client's with the usage), runtime failures exit 1 and say why.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{client, free_port, lone_server, wait_until, DEADLINE};

fn server(args: &[&str]) -> Output {
    run_bounded(env!("CARGO_BIN_EXE_server"), args)
}

fn client_bin(args: &[&str]) -> Output {
    run_bounded(env!("CARGO_BIN_EXE_client"), args)
}

/// Runs `program` to its end and collects its output; a program still
/// running at the deadline (a server that started when it should have
/// refused, a client that hangs) is killed and fails the test.
fn run_bounded(program: &str, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let status = wait_bounded(&mut child);
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().unwrap()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "{program} {args:?} still ran at the deadline: {output:?}"
    );
    output
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A usage error on one line: the message, then where the full text is.
fn assert_short_usage_error(o: &Output, program: &str, message: &str) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit status for {message:?}: {o:?}"
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with(&format!("{program}: ")), "{err}");
    assert!(err.contains(message), "stderr lacks {message:?}: {err}");
    assert!(
        lines[0].ends_with(&format!("; try '{program} --help'")),
        "{err}"
    );
}

#[test]
fn server_usage_errors() {
    assert_short_usage_error(
        &server(&[]),
        "server",
        "expected PORT FACTORY_ID NUM_PEERS, got 0",
    );
    assert_short_usage_error(
        &server(&["0", "0", "0"]),
        "server",
        "PORT must be between 1 and 65535, got 0",
    );
    assert_short_usage_error(
        &server(&["65536", "0", "0"]),
        "server",
        "PORT must be between 1 and 65535",
    );
    assert_short_usage_error(
        &server(&["http", "0", "0"]),
        "server",
        "PORT must be a whole number, got 'http'",
    );
    assert_short_usage_error(
        &server(&["5000", "x", "0"]),
        "server",
        "FACTORY_ID must be a whole number",
    );
    assert_short_usage_error(
        &server(&["5000", "0", "-1"]),
        "server",
        "NUM_PEERS must be between 0",
    );
    assert_short_usage_error(
        &server(&["5000", "0", "2", "1", "127.0.0.1", "5001"]),
        "server",
        "expected 6 peer arguments",
    );
    assert_short_usage_error(
        &server(&["5000", "0", "1", "1", "127.0.0.1", "0"]),
        "server",
        "PEER_PORT of the 1st peer triple (peer id 1) must be between 1 and 65535",
    );
    assert_short_usage_error(
        &server(&["5000", "0", "0", "--nope"]),
        "server",
        "unknown option '--nope'",
    );
}

// The client's usage errors (one line and "try 'client --help'") are
// checked in tests/client_oneshot.rs.

#[test]
fn help_and_version() {
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_server"), "server"),
        (env!("CARGO_BIN_EXE_client"), "client"),
    ] {
        let help = run_bounded(bin, &["--help"]);
        assert!(help.status.success());
        assert!(stdout(&help).starts_with(&format!("usage: {name}")));
        let version = run_bounded(bin, &["--version"]);
        assert!(version.status.success());
        assert!(stdout(&version).contains(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn port_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let o = server(&[&port, "0", "0", "--bind", "127.0.0.1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains(&format!("port {port} is already in use")),
        "{o:?}"
    );
}

#[test]
fn unreachable_server_is_reported() {
    let port = free_port().to_string();
    let o = client_bin(&["127.0.0.1", &port, "2", "5", "1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains(&format!("cannot reach server 127.0.0.1:{port}")),
        "{o:?}"
    );
}

/// Waits for `child` to exit, killing it at the deadline.
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn server_dying_mid_run_fails_the_client() {
    let mut srv = lone_server(&[]);
    let port = srv.port;
    let mut load = Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            "4",
            "1000000",
            "1",
            "--timeout",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(|| {
            let mut c = client(port);
            c.read(0).map(|r| r.last_order >= 100).unwrap_or(false)
        }),
        "writes are flowing"
    );
    srv.kill();
    let status = wait_bounded(&mut load).expect("client exits instead of hanging");
    let o = load.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("of 4000000 requests failed"), "{err}");
}

#[test]
fn a_server_that_never_answers_times_the_client_out() {
    // Connections complete in the listener's backlog, but nothing is ever
    // accepted, read or answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["127.0.0.1", &port, "1", "1", "1", "--timeout", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The default timeout (30 s) is past the wait's deadline: only the
    // 1-second one makes the client exit in time.
    let status = wait_bounded(&mut child).expect("the client gives up instead of hanging");
    let waited = started.elapsed();
    let o = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("server 127.0.0.1:{port} did not answer in time")),
        "{err}"
    );
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
    drop(silent);
}

#[test]
fn scan_prints_one_line_per_customer() {
    let srv = lone_server(&[]);
    let port = srv.port;
    let mut c = client(port);
    c.order(0, 5).unwrap();
    c.order(2, 7).unwrap();
    c.close();
    let o = client_bin(&["127.0.0.1", &port.to_string(), "1", "6", "3"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "0\t5\n1\t-1\n2\t7\n3\t-1\n4\t-1\n5\t-1\n");

    let o = client_bin(&["127.0.0.1", &port.to_string(), "3", "4", "3"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out.lines().count(),
        12,
        "each of 3 threads prints 4 lines: {out}"
    );
    assert_eq!(out.lines().filter(|l| *l == "2\t7").count(), 3);
}

#[test]
fn write_and_read_modes_print_the_stats_line() {
    let srv = lone_server(&[]);
    let port = srv.port;
    for mode in ["1", "2"] {
        let o = client_bin(&["127.0.0.1", &port.to_string(), "3", "50", mode]);
        assert!(o.status.success(), "{o:?}");
        let out = stdout(&o);
        let fields: Vec<f64> = out
            .trim()
            .split('\t')
            .map(|f| f.parse().expect("a number"))
            .collect();
        assert_eq!(fields.len(), 4, "{out}");
        assert!(out
            .trim()
            .split('\t')
            .all(|f| f.split('.').nth(1).map(str::len) == Some(3)));
        let (mean, min, max) = (fields[0], fields[1], fields[2]);
        assert!(min <= mean && mean <= max && fields[3] > 0.0, "{out}");
    }
}

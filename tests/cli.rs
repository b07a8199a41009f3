//! The `server` and `client` command lines: usage errors exit 2 with a
//! specific message and the usage, runtime failures exit 1 and say why.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{client, free_port, wait_until, ServerProcess, DEADLINE};

fn server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .args(args)
        .output()
        .unwrap()
}

fn client_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_usage_error(o: &Output, message: &str) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit status for {message:?}: {o:?}"
    );
    let err = stderr(o);
    assert!(err.contains(message), "stderr lacks {message:?}: {err}");
    assert!(err.contains("usage:"), "stderr lacks the usage: {err}");
}

#[test]
fn server_usage_errors() {
    assert_usage_error(&server(&[]), "expected PORT FACTORY_ID NUM_PEERS, got 0");
    assert_usage_error(
        &server(&["0", "0", "0"]),
        "PORT must be between 1 and 65535, got 0",
    );
    assert_usage_error(
        &server(&["65536", "0", "0"]),
        "PORT must be between 1 and 65535",
    );
    assert_usage_error(
        &server(&["http", "0", "0"]),
        "PORT must be a whole number, got 'http'",
    );
    assert_usage_error(
        &server(&["5000", "x", "0"]),
        "FACTORY_ID must be a whole number",
    );
    assert_usage_error(&server(&["5000", "0", "-1"]), "NUM_PEERS must be between 0");
    assert_usage_error(
        &server(&["5000", "0", "2", "1", "127.0.0.1", "5001"]),
        "expected 6 peer arguments",
    );
    assert_usage_error(
        &server(&["5000", "0", "1", "1", "127.0.0.1", "0"]),
        "PEER_PORT of peer 1 must be between 1 and 65535",
    );
    assert_usage_error(
        &server(&["5000", "0", "0", "--nope"]),
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
        let help = Command::new(bin).arg("--help").output().unwrap();
        assert!(help.status.success());
        assert!(stdout(&help).starts_with(&format!("usage: {name}")));
        let version = Command::new(bin).arg("--version").output().unwrap();
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
    let port = free_port();
    let mut srv = ServerProcess::spawn(0, port, &[]).expect("server starts");
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
fn scan_prints_one_line_per_customer() {
    let port = free_port();
    let _srv = ServerProcess::spawn(0, port, &[]).expect("server starts");
    let mut c = client(port);
    c.order(0, 5).unwrap();
    c.order(2, 7).unwrap();
    c.close();
    let o = client_bin(&["127.0.0.1", &port.to_string(), "1", "6", "3"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "0\t5\n1\t-1\n2\t7\n3\t-1\n4\t-1\n5\t-1\n");

    let o = client_bin(&["127.0.0.1", &port.to_string(), "3", "4", "3"]);
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
    let port = free_port();
    let _srv = ServerProcess::spawn(0, port, &[]).expect("server starts");
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

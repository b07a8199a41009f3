//! The client's one-shot commands, its --json and --human output, its short
//! usage errors and its behaviour on a closed stdout or stderr (issue 14
//! points 2 and 4, client side).

mod common;

use std::process::{Command, Output, Stdio};

use common::{free_port, lone_server};
use serde_json::Value;

fn client_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn order_then_read_one_record() {
    let server = lone_server(&[]);
    let at = format!("127.0.0.1:{}", server.port);
    let o = client_bin(&["order", &at, "7", "42"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "7\t42\n");
    let o = client_bin(&["read", &at, "7"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), "7\t42\n".into()));
    let o = client_bin(&["read", &at, "8", "--json"]);
    assert_eq!(
        json(&stdout(&o)),
        serde_json::json!({"customer_id": 8, "last_order": -1})
    );
    // With --servers: the first server is down, the second serves.
    let list = format!("127.0.0.1:{},{at}", free_port());
    let o = client_bin(&["--servers", &list, "order", "9", "5", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        json(&stdout(&o)),
        serde_json::json!({"customer_id": 9, "last_order": 5})
    );
    let o = client_bin(&["--servers", &list, "read", "9"]);
    assert_eq!(stdout(&o), "9\t5\n");
    assert_eq!(server.log_text().matches("panicked").count(), 0);
}

#[test]
fn a_one_shot_to_a_server_that_is_down_fails_with_one_line() {
    let port = free_port();
    let o = client_bin(&["read", &format!("127.0.0.1:{port}"), "1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let o = client_bin(&[
        "--servers",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "1",
        "order",
        "1",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("no server of"), "{}", stderr(&o));
}

#[test]
fn stats_and_scan_as_json_and_labelled() {
    let server = lone_server(&[]);
    let port = server.port.to_string();
    let o = client_bin(&[
        "127.0.0.1",
        &port,
        "2",
        "10",
        "1",
        "--json",
        "--percentiles",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let stats = json(&stdout(&o));
    assert_eq!(stats["requests"], 20);
    assert_eq!(stats["failed"], 0);
    for field in [
        "mean_us",
        "min_us",
        "max_us",
        "throughput_ops",
        "p50_us",
        "p99_us",
    ] {
        assert!(
            stats[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {stats}"
        );
    }
    let o = client_bin(&["127.0.0.1", &port, "2", "10", "2", "--human"]);
    let line = stdout(&o);
    assert!(line.starts_with("requests 20  failed 0  mean "), "{line}");
    assert!(
        line.contains(" us  min ") && line.contains(" ops/s"),
        "{line}"
    );
    // The original's line stays four tab-separated numbers.
    let o = client_bin(&["127.0.0.1", &port, "2", "10", "2"]);
    let plain = stdout(&o);
    let fields: Vec<&str> = plain.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 4, "{plain:?}");
    assert!(fields.iter().all(|f| f.parse::<f64>().is_ok()), "{plain:?}");
    // A scan: one JSON object per line.
    let o = client_bin(&["127.0.0.1", &port, "1", "3", "3", "--json"]);
    let records: Vec<Value> = stdout(&o).lines().map(json).collect();
    assert_eq!(records.len(), 3, "{}", stdout(&o));
    assert_eq!(
        records[1],
        serde_json::json!({"customer_id": 1, "last_order": 9})
    );
}

fn assert_short_usage_error(args: &[&str], message: &str) {
    let o = client_bin(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
    assert!(err.starts_with("client: "), "{err}");
    assert!(err.contains(message), "{args:?}: {err} lacks {message:?}");
    assert!(err.contains("try 'client --help'"), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn usage_errors_are_one_line() {
    for (args, message) in [
        (&[][..], "expected 5 arguments"),
        (
            &["127.0.0.1", "5000", "8", "10"][..],
            "expected 5 arguments",
        ),
        (
            &["127.0.0.1", "0", "8", "10", "1"],
            "PORT must be between 1 and 65535",
        ),
        (
            &["127.0.0.1", "5000", "-8", "10", "1"],
            "NUM_CUSTOMERS must be between 0",
        ),
        (
            &["127.0.0.1", "5000", "8", "-10", "1"],
            "NUM_ORDERS must be between 0",
        ),
        (
            &["127.0.0.1", "5000", "8", "ten", "1"],
            "NUM_ORDERS must be a whole number, got 'ten'",
        ),
        (
            &["127.0.0.1", "5000", "8", "10", "5"],
            "REQUEST_TYPE must be between 1 and 4",
        ),
        (&["--nope"], "unknown option '--nope'"),
        (&["order", "h:1", "7"], "expected order H:P CUSTOMER ORDER"),
        (&["read", "h", "7"], "is not HOST:PORT"),
        (
            &["--servers", "h:1,h", "1", "1", "1"],
            "'h' is not HOST:PORT",
        ),
        (&["--status"], "needs a value"),
        (
            &["--json", "--human", "h", "1", "1", "1", "1"],
            "exclude each other",
        ),
    ] {
        assert_short_usage_error(args, message);
    }
    // --help keeps the full text.
    let o = client_bin(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("usage: client"));
    assert!(stdout(&o).contains("--servers LIST") && stdout(&o).contains("--status LIST"));
}

/// Runs `client args` with stdout or stderr a pipe whose reading end is
/// already closed, so that every write to it fails with EPIPE.
fn with_closed(stream: &str, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_client"));
    cmd.args(args).stdin(Stdio::null());
    if stream == "stdout" {
        cmd.stdout(writer).stderr(Stdio::piped());
    } else {
        cmd.stderr(writer).stdout(Stdio::piped());
    }
    cmd.output().unwrap()
}

#[test]
fn a_closed_stdout_or_stderr_ends_quietly() {
    // `client --help | true`: exit 0, nothing on stderr (no panic).
    let o = with_closed("stdout", &["--help"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    let o = with_closed("stdout", &["--version"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // A usage error with stderr closed: still exit 2, not a panic's 101.
    let o = with_closed("stderr", &["1", "2"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // A run whose output has nowhere to go still exits as the run went.
    let server = lone_server(&[]);
    let port = server.port.to_string();
    let o = with_closed("stdout", &["127.0.0.1", &port, "1", "50", "3"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = with_closed("stdout", &["127.0.0.1", &port, "1", "5", "1", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn a_load_run_started_before_its_server_retries_the_refused_connects() {
    // Issue 17 point 1, client side: a refused connect is retried with
    // backoff (for up to 3 s), so customers that connect while the server
    // is still coming up are served rather than counted as failed.
    for _ in 0..5 {
        let port = free_port();
        let mut load = Command::new(env!("CARGO_BIN_EXE_client"))
            .args(["127.0.0.1", &port.to_string(), "8", "20", "1", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its customer threads exist (each connects first thing, and is
        // refused: nothing listens yet) before the server starts.
        let tasks = format!("/proc/{}/task", load.id());
        let started = common::wait_until(|| {
            std::fs::read_dir(&tasks).is_ok_and(|d| d.count() > 8)
                || !matches!(load.try_wait(), Ok(None))
        });
        assert!(started, "the client's customer threads never started");
        let server = match common::ServerProcess::spawn(0, port, &[]) {
            Ok(server) => server,
            Err(common::SpawnError::PortInUse) => {
                let _ = load.wait_with_output();
                continue;
            }
            Err(e) => panic!("server did not start: {e:?}"),
        };
        let o = load.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let stats = json(&stdout(&o));
        assert_eq!(
            (stats["requests"].as_u64(), stats["failed"].as_u64()),
            (Some(160), Some(0))
        );
        drop(server);
        return;
    }
    panic!("no free port for the server");
}

//! `client kv load` against real server processes: every request is
//! answered and counted, what the writes stored is read back key by key
//! with `factory::kv`, reads check their values (a read of values of
//! another size fails loudly), preload and the redirect from a backup work
//! on a three-server cluster (the primary found by its status, or by a
//! backup's "not primary"), and a timed run ends.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{lone_server, ProcessCluster};
use factory::client::kv_load::{key_of, value_of};
use factory::kv::KvClient;
use serde_json::Value;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

/// Runs `client kv load ARGS --json`; its exit code and the JSON report.
fn kv_load(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["kv", "load"])
        .args(args)
        .args(["--json", "--timeout", "20"])
        .output()
        .expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client kv load {args:?} printed no JSON ({e}): {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

/// Every key `0..keys` holds `value_of(key, size)` and no other key exists.
fn holds_exactly(addr: &str, keys: u64, size: usize) {
    let mut kv = KvClient::connect(addr, TIMEOUT).expect("connect v2");
    for i in 0..keys {
        let got = kv.get(&key_of(i)).expect("get").map(|(_, v)| v);
        assert_eq!(got, Some(value_of(i, size)), "key {i}");
    }
    let (items, more) = kv.scan(b"", 1000).expect("scan");
    assert!(!more, "more keys than written");
    assert_eq!(items.len() as u64, keys, "keys in the store");
}

#[test]
fn every_write_is_answered_and_readable_afterwards() {
    let server = lone_server(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let (code, report) = kv_load(&[
        &addr,
        "--keys",
        "500",
        "--requests",
        "2000",
        "--connections",
        "4",
        "--depth",
        "8",
        "--value-size",
        "100",
        "--percentiles",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "requests"), 2000);
    assert_eq!(count(&report, "writes"), 2000);
    assert_eq!(count(&report, "failed"), 0);
    assert!(report["p99_us"].as_f64().unwrap() >= report["p50_us"].as_f64().unwrap());
    holds_exactly(&addr, 500, 100);

    let (code, report) = kv_load(&[
        &addr,
        "--keys",
        "500",
        "--requests",
        "1000",
        "--reads",
        "100",
        "--depth",
        "32",
        "--value-size",
        "100",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "requests"), 1000);
    assert_eq!(count(&report, "reads"), 1000);
    assert_eq!(count(&report, "misses"), 0);
    assert_eq!(count(&report, "failed"), 0);
}

#[test]
fn reads_of_values_never_written_fail() {
    let server = lone_server(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let (code, _) = kv_load(&[
        &addr,
        "--keys",
        "50",
        "--requests",
        "50",
        "--value-size",
        "16",
    ]);
    assert_eq!(code, 0);
    let (code, report) = kv_load(&[
        &addr,
        "--keys",
        "50",
        "--requests",
        "200",
        "--reads",
        "100",
        "--value-size",
        "17",
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(count(&report, "failed"), 200);
    assert_eq!(count(&report, "requests"), 0);
    assert!(report["first_error"]
        .as_str()
        .unwrap()
        .contains("never written"));
    // Keys beyond those written are misses, not failures.
    let (code, report) = kv_load(&[
        &addr,
        "--keys",
        "100",
        "--requests",
        "100",
        "--reads",
        "100",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "misses"), 50);
}

#[test]
fn preload_and_mixed_load_through_a_backup_of_three() {
    let mut cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    // The election picks the primary; the list names a backup first, and
    // the load finds the primary by its status.
    let primary = cluster.primary().expect("a primary");
    let (b1, b2) = ((primary + 1) % 3, (primary + 2) % 3);
    let mut kv = KvClient::connect(format!("127.0.0.1:{}", ports[primary]), TIMEOUT).unwrap();
    kv.put(b"first", b"write").expect("first write");
    let servers = format!("127.0.0.1:{},127.0.0.1:{}", ports[b1], ports[primary]);
    let (code, report) = kv_load(&[
        "--servers",
        &servers,
        "--keys",
        "300",
        "--preload",
        "--requests",
        "1000",
        "--reads",
        "50",
        "--depth",
        "16",
        "--value-size",
        "1024",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "preloaded"), 300);
    assert_eq!(count(&report, "requests"), 1000);
    assert_eq!(count(&report, "failed"), 0);
    assert_eq!(count(&report, "misses"), 0);
    let (reads, writes) = (count(&report, "reads"), count(&report, "writes"));
    assert_eq!(reads + writes, 1000);
    assert!((350..650).contains(&reads), "{reads} reads of 1000");
    assert_eq!(count(&report, "redirects"), 0, "{report}");
    // Given a backup alone, the load follows its "not primary" answers.
    let backup = format!("127.0.0.1:{}", ports[b2]);
    let (code, report) = kv_load(&[
        &backup,
        "--keys",
        "300",
        "--requests",
        "600",
        "--value-size",
        "1024",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "requests"), 600);
    assert!(count(&report, "redirects") > 0, "{report}");
    let mut kv = KvClient::connect(format!("127.0.0.1:{}", ports[primary]), TIMEOUT).unwrap();
    for i in 0..300 {
        let got = kv.get(&key_of(i)).expect("get").map(|(_, v)| v);
        assert_eq!(got, Some(value_of(i, 1024)), "key {i}");
    }
}

#[test]
fn a_timed_run_ends_with_every_request_answered() {
    let server = lone_server(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let (code, report) = kv_load(&[
        &addr,
        "--duration",
        "0.5",
        "--keys",
        "100",
        "--preload",
        "--reads",
        "90",
        "--depth",
        "4",
    ]);
    assert_eq!(code, 0, "{report}");
    assert!(count(&report, "requests") > 0);
    assert_eq!(count(&report, "failed"), 0);
    assert_eq!(count(&report, "misses"), 0);
    assert!(report["wall_s"].as_f64().unwrap() >= 0.5);
}

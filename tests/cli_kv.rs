//! `client kv ...` run as a process against real `server` processes: each
//! verb's output and exit status (0 done, 3 condition failed, 1 failure,
//! 2 bad command line) in plain, --human and --json; binary keys and
//! values through --hex, checked with the Rust client; a scan that pages
//! past the protocol's 1000 keys per request; and --servers riding
//! through a SIGKILL of the primary of three servers.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{lone_server, ProcessCluster};
use factory::kv::KvClient;
use factory::wire::kv::KvOp;

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .output()
        .expect("run client")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `client` and checks its exit status; returns stdout.
fn expect(code: i32, args: &[&str]) -> String {
    let o = client(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "client {args:?}: stdout {:?} stderr {:?}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn kv_client(port: u16) -> KvClient {
    KvClient::connect(format!("127.0.0.1:{port}"), Some(Duration::from_secs(10))).unwrap()
}

#[test]
fn every_verb_prints_its_outcome_and_exit_status() {
    let server = lone_server(&[]);
    let at = format!("127.0.0.1:{}", server.port);
    let at = at.as_str();

    let v1: u64 = expect(0, &["kv", "put", at, "k", "one"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(expect(0, &["kv", "get", at, "k"]), format!("{v1}\tone\n"));

    // create of a present key: 3, nothing on stdout, the reason on stderr.
    let o = client(&["kv", "create", at, "k", "two"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains(&format!("exists (version {v1})")),
        "{}",
        stderr(&o)
    );
    expect(3, &["kv", "update", at, "absent", "x"]);
    expect(3, &["kv", "delete", at, "absent"]);
    expect(3, &["kv", "get", at, "absent"]);

    let v2: u64 = expect(0, &["kv", "update", at, "k", "two"])
        .trim()
        .parse()
        .unwrap();
    assert!(v2 > v1);
    // cas on the stale version: 3, and the JSON names the current one.
    let stale = v1.to_string();
    assert_eq!(
        expect(3, &["kv", "cas", at, "k", &stale, "three", "--json"]),
        format!(
            "{{\"op\":\"cas\",\"key\":\"k\",\"status\":\"version_mismatch\",\"version\":{v2}}}\n"
        )
    );
    let current = v2.to_string();
    let v3: u64 = expect(0, &["kv", "cas", at, "k", &current, "three"])
        .trim()
        .parse()
        .unwrap();
    assert!(v3 > v2);
    expect(0, &["kv", "cas", at, "fresh", "none", "f"]);
    expect(3, &["kv", "cas", at, "fresh", "none", "g"]);
    expect(0, &["kv", "create", at, "new", "n"]);

    assert_eq!(
        expect(0, &["kv", "get", at, "k", "--json"]),
        format!("{{\"op\":\"get\",\"key\":\"k\",\"status\":\"ok\",\"version\":{v3},\"value\":\"three\"}}\n")
    );
    assert_eq!(
        expect(0, &["kv", "--human", "get", at, "k"]),
        format!("key k: version {v3}, 5 byte(s): three\n")
    );
    assert_eq!(
        expect(3, &["kv", "get", at, "absent", "--json"]),
        "{\"op\":\"get\",\"key\":\"absent\",\"status\":\"not_found\"}\n"
    );
    let deleted: u64 = expect(0, &["kv", "delete", at, "k"])
        .trim()
        .parse()
        .unwrap();
    assert!(deleted > v3);
    expect(3, &["kv", "get", at, "k"]);

    // The Rust client sees what the binary wrote.
    let mut c = kv_client(server.port);
    assert_eq!(c.get(b"new").unwrap().map(|(_, v)| v), Some(b"n".to_vec()));
    assert_eq!(c.get(b"k").unwrap(), None);
}

#[test]
fn binary_keys_and_values_through_hex() {
    let server = lone_server(&[]);
    let at = format!("127.0.0.1:{}", server.port);
    let at = at.as_str();
    let version: u64 = expect(0, &["kv", "put", at, "00ff", "00015c41", "--hex"])
        .trim()
        .parse()
        .unwrap();
    let mut c = kv_client(server.port);
    assert_eq!(
        c.get(&[0, 0xff]).unwrap(),
        Some((version, vec![0, 1, b'\\', b'A']))
    );
    assert_eq!(
        expect(0, &["kv", "get", at, "00ff", "--hex"]),
        format!("{version}\t00015c41\n")
    );
    // Escaped, without --hex.
    c.put(b"tab\tkey", &[b'a', 0, 0xfe]).unwrap();
    assert_eq!(
        expect(0, &["kv", "get", at, "tab\tkey"]),
        format!("{}\ta\\x00\\xfe\n", c.get(b"tab\tkey").unwrap().unwrap().0)
    );
    expect(2, &["kv", "get", at, "0f0", "--hex"]);
}

#[test]
fn scan_pages_past_a_thousand_keys() {
    let server = lone_server(&[]);
    let at = format!("127.0.0.1:{}", server.port);
    let at = at.as_str();
    let mut c = kv_client(server.port);
    let keys = 1203;
    let ops = (0..keys)
        .map(|i| KvOp::Put {
            key: format!("s/{i:05}").into_bytes(),
            value: format!("v{i}").into_bytes(),
        })
        .collect();
    c.batch(ops).unwrap();
    c.put(b"t", b"after").unwrap();

    let all = expect(0, &["kv", "scan", at, "s/", "1203"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), keys);
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[0], format!("s/{i:05}"));
        assert_eq!(fields[2], format!("v{i}"));
    }
    // One past them is "t"; the JSON summary says whether more follow.
    let json = expect(0, &["kv", "scan", at, "s/", "1100", "--json"]);
    let json: Vec<&str> = json.lines().collect();
    assert_eq!(json.len(), 1101);
    assert_eq!(json[1100], "{\"scan\":{\"count\":1100,\"more\":true}}");
    let rest = expect(0, &["kv", "scan", at, "s/01100", "200", "--json"]);
    let rest: Vec<&str> = rest.lines().collect();
    assert_eq!(rest.len(), 105);
    assert!(rest[103].starts_with("{\"key\":\"t\""), "{}", rest[103]);
    assert_eq!(rest[104], "{\"scan\":{\"count\":104,\"more\":false}}");
    assert_eq!(
        expect(0, &["kv", "scan", at, "t", "--human"]),
        format!(
            "key t: version {}, 5 byte(s): after\n1 key(s)\n",
            c.get(b"t").unwrap().unwrap().0
        )
    );
}

#[test]
fn refusals_and_failures_exit_1_and_bad_command_lines_2() {
    let server = lone_server(&["--max-value", "16"]);
    let at = format!("127.0.0.1:{}", server.port);
    let at = at.as_str();
    let o = client(&["kv", "put", at, "k", "seventeen bytes!!"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    expect(0, &["kv", "put", at, "k", "sixteen bytes!!!"]);

    let closed = format!("127.0.0.1:{}", common::free_port());
    let o = client(&["kv", "get", &closed, "k", "--timeout", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&closed), "{}", stderr(&o));

    for bad in [
        &["kv"][..],
        &["kv", "get", at],
        &["kv", "frobnicate", at, "k"],
        &["kv", "scan", at, "a", "0"],
        &["kv", "cas", at, "k", "x", "v"],
        &["kv", "get", "nohostport", "k"],
    ] {
        let o = client(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("try 'client --help'"), "{}", stderr(&o));
    }
    let help = expect(0, &["kv", "--help"]);
    assert!(help.contains("Exit status: 0 done; 3"));
    assert!(expect(0, &["--help"]).contains("'client kv' commands exit 3"));
}

#[test]
fn servers_follow_the_primary_through_a_kill() {
    let mut cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    let list = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = list.as_str();
    // With three servers the election picks the primary; the first write
    // goes to whichever server won.
    let primary = cluster.primary().expect("a primary");
    kv_client(ports[primary]).put(b"first", b"x").unwrap();
    // Listed first, a backup refuses and names the primary, which the
    // command follows.
    let backup = (primary + 1) % 3;
    let reordered = format!("127.0.0.1:{},{list}", ports[backup]);
    let before: u64 = expect(0, &["kv", "--servers", &reordered, "put", "before", "b"])
        .trim()
        .parse()
        .unwrap();
    let o = client(&[
        "kv",
        "put",
        &format!("127.0.0.1:{}", ports[backup]),
        "k",
        "v",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not the primary"), "{}", stderr(&o));

    cluster.kill(primary);
    // The dead server first in the list: the command moves on, and
    // follows whichever server takes over.
    let dead_first = format!("127.0.0.1:{},{list}", ports[primary]);
    let after: u64 = expect(
        0,
        &[
            "kv",
            "--servers",
            &dead_first,
            "--timeout",
            "60",
            "put",
            "after",
            "a",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    assert!(after > before);
    let new_primary = cluster.primary().expect("a new primary");
    assert_ne!(new_primary, primary);
    // Read from the new primary (a backup's v2 reads may trail it by the
    // last write): both writes are there.
    let at_primary = format!("127.0.0.1:{},{list}", ports[new_primary]);
    for (key, value, version) in [("before", "b", before), ("after", "a", after)] {
        assert_eq!(
            expect(0, &["kv", "--servers", &at_primary, "get", key]),
            format!("{version}\t{value}\n")
        );
    }
}

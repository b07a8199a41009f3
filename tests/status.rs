//! The cluster status request (issue 13 point 7) end to end: `client
//! --status` against real server processes, read back through its JSON;
//! rows for servers that have no status to give (an original server, one
//! that is down, one that answers junk) that do not abort the table; and a
//! server that gets a hostile status request keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{client, free_port, lone_server, wait_until, ProcessCluster, DEADLINE};
use factory::wire::status::STATUS_TAG;
use serde_json::Value;

fn client_bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(args)
        .output()
        .unwrap()
}

fn status_json(list: &str) -> (Option<i32>, Value) {
    let o = client_bin(&["--status", list, "--json", "--timeout", "5"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {text:?}"));
    (o.status.code(), value)
}

fn servers(v: &Value) -> &Vec<Value> {
    v["servers"].as_array().expect("a servers array")
}

/// True once the three rows show one primary, two backups following it in
/// its epoch, every server in the in-sync set (and told so by the log:
/// trusted) and both backups level.
fn settled(v: &Value) -> bool {
    let rows = servers(v);
    let primaries: Vec<&Value> = rows.iter().filter(|r| r["role"] == "primary").collect();
    let [primary] = primaries[..] else {
        return false;
    };
    let backups_follow = rows.iter().filter(|r| r["role"] == "backup").count() == 2
        && rows
            .iter()
            .all(|r| r["primary"] == primary["id"] && r["epoch"] == primary["epoch"]);
    let lags: Vec<i64> = primary["backups"]
        .as_array()
        .map(|b| b.iter().filter_map(|p| p["lag"].as_i64()).collect())
        .unwrap_or_default();
    backups_follow
        && rows
            .iter()
            .all(|r| r["in_sync"] == serde_json::json!([0, 1, 2]))
        && lags == [0, 0]
        && rows.iter().all(|r| r["trusted"] == true)
}

#[test]
fn status_of_a_three_server_cluster_read_from_json() {
    let cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    let list = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let (code, fresh) = status_json(&list);
    assert_eq!(code, Some(0), "{fresh}");
    // A write through server 1 (forwarded if it is a backup).
    let mut c = client(ports[1]);
    for order in 0..5 {
        c.order(3, order).unwrap();
    }
    let mut last = Value::Null;
    let ok = wait_until(|| {
        last = status_json(&list).1;
        settled(&last)
    });
    assert!(ok, "the status never settled: {last}");
    let rows = servers(&last);
    let primary = rows.iter().find(|r| r["role"] == "primary").unwrap();
    let id = primary["id"].as_u64().unwrap() as usize;
    assert_eq!(primary["address"], format!("127.0.0.1:{}", ports[id]));
    // Elected by the majority (G7): it holds a lease, the backups honour it.
    assert_eq!(primary["lease"], "held", "{last}");
    assert!(primary["lease_ms"].as_u64().unwrap() > 0, "{last}");
    assert!(primary["commit_index"].as_i64().unwrap() >= 5, "{last}");
    for r in rows {
        assert_eq!(r["state"], "ok");
        assert!(r["uptime_ms"].as_u64().unwrap() > 0);
        assert_eq!(r["trusted"], true);
        assert_eq!(r["last_index"], primary["last_index"], "{last}");
        if r["role"] == "backup" {
            assert_eq!(r["lease"], "honoured", "{last}");
        }
    }
    c.close();
}

/// With the election off (as a cluster with original servers runs), the
/// original's rule: no primary before a write, and the server that gets
/// the first write becomes primary, holding no lease.
#[test]
fn status_of_a_three_server_cluster_without_the_election() {
    let cluster = ProcessCluster::start_with(3, |_| common::election_off());
    let ports = cluster.ports();
    let list = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let (code, fresh) = status_json(&list);
    assert_eq!(code, Some(0), "{fresh}");
    assert!(
        servers(&fresh).iter().all(|r| r["role"] == "unknown"),
        "{fresh}"
    );
    let mut c = client(ports[1]);
    for order in 0..5 {
        c.order(3, order).unwrap();
    }
    let mut last = Value::Null;
    let ok = wait_until(|| {
        last = status_json(&list).1;
        settled(&last)
    });
    assert!(ok, "the status never settled: {last}");
    let rows = servers(&last);
    let primary = rows.iter().find(|r| r["role"] == "primary").unwrap();
    assert_eq!(primary["id"], 1);
    assert_eq!(primary["lease"], "none");
    assert!(primary["clients"].as_u64().unwrap() >= 1, "{last}");
    c.close();
}

/// What a fake server does with each connection.
#[derive(Clone, Copy)]
enum Fake {
    /// Reads the 8-byte tag and closes, as the original does with a tag it
    /// does not know.
    Original,
    /// Answers a length far beyond the bound.
    HugeLength,
}

/// A listener that serves `connections` connections as `fake` does, each
/// wait bounded by the test deadline.
fn fake_server(fake: Fake, connections: usize) -> (u16, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = thread::spawn(move || {
        let end = Instant::now() + DEADLINE;
        let mut served = 0;
        while served < connections && Instant::now() < end {
            let Ok((mut s, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut tag = [0u8; 8];
            let _ = s.read_exact(&mut tag);
            if let Fake::HugeLength = fake {
                let _ = s.write_all(&[0xff, 0xff, 0xff, 0xf0, 1, 1, 1]);
            }
            served += 1;
        }
        served
    });
    (port, handle)
}

#[test]
fn servers_without_a_status_get_a_row_and_the_table_goes_on() {
    let real = lone_server(&[]);
    let (original, original_thread) = fake_server(Fake::Original, 2);
    let (junk, junk_thread) = fake_server(Fake::HugeLength, 2);
    let down = free_port();
    let list = format!(
        "127.0.0.1:{},127.0.0.1:{original},127.0.0.1:{down},127.0.0.1:{junk}",
        real.port
    );
    let o = client_bin(&["--status", &list, "--timeout", "5"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "a server was unreachable: {o:?}");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 5, "a header and a row per server: {table}");
    assert!(rows[0].starts_with("SERVER"), "{table}");
    assert!(rows[1].contains("unknown"), "{table}");
    assert!(rows[2].contains("original"), "{table}");
    assert!(rows[3].contains("unreachable"), "{table}");
    assert!(
        rows[4].contains("invalid") && rows[4].contains("length"),
        "{table}"
    );
    let (code, v) = status_json(&list);
    assert_eq!(code, Some(1));
    let states: Vec<&str> = servers(&v)
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ok", "original", "unreachable", "invalid"], "{v}");
    assert_eq!(servers(&v)[0]["id"], 0);
    assert_eq!(original_thread.join().unwrap(), 2);
    assert_eq!(junk_thread.join().unwrap(), 2);
    // Only live and original servers: exit 0.
    let (original, original_thread) = fake_server(Fake::Original, 1);
    let (code, v) = status_json(&format!("127.0.0.1:{},127.0.0.1:{original}", real.port));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(original_thread.join().unwrap(), 1);
}

#[test]
fn hostile_status_requests_are_answered_or_closed_and_the_server_keeps_serving() {
    let server = lone_server(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    // The tag and then bytes no status request has: one report, then a close.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = STATUS_TAG.to_vec();
    bytes.extend([0xff; 64]);
    s.write_all(&bytes).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let len = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
    assert_eq!(reply.len(), 4 + len, "exactly one report, then the close");
    // Half a tag, then nothing: the handshake timeout closes it; a second
    // connection meanwhile is served.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(&STATUS_TAG[..5]).unwrap();
    let mut c = client(server.port);
    c.order(1, 2).unwrap();
    assert_eq!(c.read(1).unwrap().last_order, 2);
    c.close();
    drop(half);
    // Another status version is an unknown tag: closed without a byte.
    let mut other = TcpStream::connect(&addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    other.write_all(b"FSTA\0\0\0\x02").unwrap();
    assert!(common::closed_without_reply(&mut other));
    assert!(server.wait_for_line("unknown handshake tag"));
}

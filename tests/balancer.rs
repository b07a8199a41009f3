//! The load balancer (issue 16.1, 16.2) in front of three server
//! processes: plain v1 clients (single-server clients, which fail on any
//! error) see no failed request across a primary SIGKILL and restart
//! (reads through the cache included),
//! every acknowledged write is on every live server afterwards (fresh
//! customers after each fault included), no read through the balancer
//! returns less than what its own client had acknowledged, and the
//! original-shaped client (`client IP PORT ...`, positional mode) works
//! through the `load` binary unchanged.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{wait_until, ProcessCluster, DEADLINE};
use factory::balancer::{Balancer, BalancerConfig, UpstreamOptions};
use factory::client::status::{fetch_all, ServerStatus};
use factory::client::Client;
use factory::protocol::session::CustomStatus;
use factory::wire::status::Role;

fn addresses(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

fn balancer(list: &[String]) -> Balancer {
    caching_balancer(list, 0)
}

fn caching_balancer(list: &[String], cache_size: usize) -> Balancer {
    let mut config = BalancerConfig::loopback(0, list.to_vec());
    config.cache_size = cache_size;
    config.upstream = UpstreamOptions {
        deadline: DEADLINE,
        attempt_timeout: Duration::from_secs(5),
        pool_per_server: 8,
    };
    Balancer::start(config).expect("start the balancer")
}

/// A plain v1 client of the balancer: it knows one address and fails on
/// any error, so every failure the balancer lets through is seen.
fn client_of(b: &Balancer) -> Client {
    let port = b.local_addr().port();
    // The attempt timeout of the client must outlast the balancer's deadline.
    Client::connect("127.0.0.1", port, Some(DEADLINE + Duration::from_secs(10))).unwrap()
}

fn primary_of(list: &[String]) -> Option<usize> {
    let mut found = None;
    wait_until(|| {
        found = fetch_all(list, Duration::from_secs(2))
            .iter()
            .position(|s| matches!(s, ServerStatus::Report(r) if r.role == Role::Primary));
        found.is_some()
    });
    found
}

/// Per customer, one thread that writes orders 0, 1, ... through the
/// balancer and reads each back at once, recording the last acknowledged
/// order and any failure or read that went back in time.
struct Traffic {
    acked: Arc<Mutex<HashMap<i32, i32>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(b: &Balancer, customers: std::ops::Range<i32>) -> Traffic {
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = customers
            .map(|customer| {
                let (acked, failures, stop) =
                    (Arc::clone(&acked), Arc::clone(&failures), Arc::clone(&stop));
                let mut c = client_of(b);
                thread::spawn(move || {
                    for order in 0..10_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = c.order(customer, order) {
                            failures.lock().unwrap().push(format!("write: {e}"));
                            return;
                        }
                        acked.lock().unwrap().insert(customer, order);
                        match c.read(customer) {
                            Ok(r) if r.last_order >= order => {}
                            Ok(r) => {
                                failures.lock().unwrap().push(format!(
                                    "customer {customer}: read {} after order {order} was acknowledged",
                                    r.last_order
                                ));
                                return;
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(format!("read: {e}"));
                                return;
                            }
                        }
                    }
                    c.close();
                })
            })
            .collect();
        Traffic {
            acked,
            failures,
            stop,
            threads,
        }
    }

    fn total(&self) -> i64 {
        self.acked
            .lock()
            .unwrap()
            .values()
            .map(|&v| i64::from(v) + 1)
            .sum()
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    fn wait_for_more(&self, more: i64) -> bool {
        let target = self.total() + more;
        wait_until(|| self.total() >= target || !self.failures().is_empty())
            && self.total() >= target
    }

    fn finish(self) -> (HashMap<i32, i32>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures)
    }
}

/// Waits until every server in `live` returns `expected` for each customer.
fn assert_everywhere(list: &[String], live: &[usize], expected: &HashMap<i32, i32>) {
    for &i in live {
        let (host, port) = factory::client::connect::split_host_port(&list[i]).unwrap();
        let mut seen = HashMap::new();
        let ok = wait_until(|| {
            let Ok(mut c) = Client::connect(&host, port, common::IO_TIMEOUT) else {
                return false;
            };
            let all = expected.iter().all(|(&customer, &order)| {
                let got = c.read(customer).map(|r| r.last_order).unwrap_or(-2);
                seen.insert(customer, got);
                got == order
            });
            c.close();
            all
        });
        assert!(
            ok,
            "server {} lacks acknowledged writes: expected {expected:?}, saw {seen:?}",
            list[i]
        );
    }
}

#[test]
fn plain_clients_through_the_balancer_ride_through_a_primary_kill_and_restart() {
    let mut cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    // With the cache on: each read back follows its write, which fills the
    // cache, so reads are hits whenever the commit stream is up.
    let b = caching_balancer(&list, 1000);
    let traffic = Traffic::start(&b, 0..4);
    assert!(
        traffic.wait_for_more(100),
        "traffic flows: {:?}",
        traffic.failures()
    );
    let primary = primary_of(&list).expect("a primary");
    // The cache follows this primary and serves before it is killed.
    assert!(
        wait_until(|| {
            let m = b.metrics();
            m.cache_starts >= 1 && m.cache_hits > 0
        }),
        "the cache never served: {:?}",
        b.metrics()
    );
    cluster.kill(primary);
    assert!(
        traffic.wait_for_more(100),
        "traffic resumed after the kill: {:?}",
        traffic.failures()
    );
    // Fresh customers after the kill, on new connections.
    let after_kill = Traffic::start(&b, 100..102);
    assert!(after_kill.wait_for_more(50), "{:?}", after_kill.failures());
    cluster.restart(primary);
    assert!(
        traffic.wait_for_more(100),
        "traffic goes on after the restart: {:?}",
        traffic.failures()
    );
    let after_restart = Traffic::start(&b, 200..202);
    assert!(
        after_restart.wait_for_more(50),
        "{:?}",
        after_restart.failures()
    );
    // The cache follows the new primary's commits, and serves again.
    assert!(
        wait_until(|| b.metrics().cache_starts >= 2),
        "the cache never followed the new primary: {:?}",
        b.metrics()
    );
    let hits_before = b.metrics().cache_hits;
    assert!(
        after_restart.wait_for_more(50),
        "{:?}",
        after_restart.failures()
    );
    let mut expected = HashMap::new();
    for t in [traffic, after_kill, after_restart] {
        let (acked, failures) = t.finish();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        expected.extend(acked);
    }
    let m = b.metrics();
    eprintln!(
        "balancer after the kill and restart: {m:?}, {} customers",
        expected.len()
    );
    assert!(m.retries >= 1, "the kill was crossed by retrying: {m:?}");
    assert!(m.failovers >= 1, "a new primary was found: {m:?}");
    assert!(
        m.cache_hits > 0,
        "reads were answered from the cache: {m:?}"
    );
    assert!(
        m.cache_hits > hits_before,
        "hits after the cache followed the new primary: {m:?}"
    );
    b.stop();
    // The restarted server catches up too.
    assert_everywhere(&list, &[0, 1, 2], &expected);
}

#[test]
fn requests_are_relayed_over_pooled_sessions() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    // Sequential clients, each a new connection to the balancer.
    for customer in 0..20 {
        let mut c = client_of(&b);
        c.order(customer, customer + 1).unwrap();
        assert_eq!(c.read(customer).unwrap().last_order, customer + 1);
        c.close();
    }
    let m = b.metrics();
    assert_eq!(m.served.iter().sum::<u64>(), 40);
    assert!(
        m.connects <= 3,
        "40 requests from 20 connections reused the balancer's sessions: {m:?}"
    );
    let primary = primary_of(&list).unwrap();
    assert!(m.served[primary] >= 20, "writes went to the primary: {m:?}");
    b.stop();
}

#[test]
fn hostile_input_closes_that_connection_only() {
    let cluster = ProcessCluster::start(1);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let mut junk = TcpStream::connect(b.local_addr()).unwrap();
    junk.set_read_timeout(common::IO_TIMEOUT).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(common::closed_without_reply(&mut junk));
    let mut bad = TcpStream::connect(b.local_addr()).unwrap();
    bad.set_read_timeout(common::IO_TIMEOUT).unwrap();
    bad.write_all(&factory::wire::CLIENT_TAG).unwrap();
    bad.write_all(&[0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9])
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(bad.read(&mut byte), Ok(0) | Err(_)), "closed");
    let mut c = client_of(&b);
    c.order(1, 2).unwrap();
    assert_eq!(c.read(1).unwrap().last_order, 2);
    b.stop();
}

/// A `load` process in front of `list`, once it logs that it listens.
fn load_process(list: &[String], cache_size: usize) -> (Child, u16, Vec<String>) {
    for _ in 0..5 {
        let port = common::free_port();
        let mut args = vec![
            port.to_string(),
            cache_size.to_string(),
            list.len().to_string(),
        ];
        for (i, a) in list.iter().enumerate() {
            let (host, p) = factory::client::connect::split_host_port(a).unwrap();
            args.extend([i.to_string(), host, p.to_string()]);
        }
        args.extend(["--bind".into(), "127.0.0.1".into()]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_load"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn load");
        // The reader thread ends with the process's stderr.
        let (rx, _log, _reader) = common::capture_lines(child.stderr.take().unwrap());
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(DEADLINE) {
            lines.push(line.clone());
            if line.contains("balancer listening on") {
                return (child, port, lines);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if !lines.iter().any(|l| l.contains("in use")) {
            panic!("load did not start: {lines:?}");
        }
    }
    panic!("no free port for load");
}

#[test]
fn the_original_shaped_client_works_through_the_load_binary() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let (mut load, port, _) = load_process(&list, 0);
    let client = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_client"))
            .args(["127.0.0.1", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    // Write mode: 4 customers, 50 orders each; read mode; scan mode.
    let stats = client(&["4", "50", "1"]);
    assert_eq!(stats.lines().count(), 1, "one stats line: {stats}");
    client(&["4", "10", "2"]);
    let scan = client(&["1", "6", "3"]);
    let rows: Vec<&str> = scan.lines().collect();
    assert_eq!(
        rows[..6],
        ["0\t49", "1\t49", "2\t49", "3\t49", "4\t-1", "5\t-1"],
        "{scan}"
    );
    // And every server holds what the client wrote through the balancer.
    let expected: HashMap<i32, i32> = (0..4).map(|c| (c, 49)).collect();
    assert_everywhere(&list, &[0, 1, 2], &expected);
    let _ = load.kill();
    let _ = load.wait();
}

#[test]
fn the_load_binary_answers_through_its_cache() {
    let cluster = ProcessCluster::start(1);
    let list = addresses(&cluster.ports());
    let (mut load, port, startup) = load_process(&list, 100);
    assert!(
        !startup.iter().any(|l| l.contains("not used")),
        "{startup:?}"
    );
    let mut c = Client::connect("127.0.0.1", port, common::IO_TIMEOUT).unwrap();
    c.order(3, 4).unwrap();
    for _ in 0..5 {
        assert_eq!(c.read(3).unwrap().last_order, 4);
    }
    c.close();
    let _ = load.kill();
    let _ = load.wait();
    let help = Command::new(env!("CARGO_BIN_EXE_load"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("as linearizable as a read on a server"),
        "{help}"
    );
    assert!(!help.contains("NOT USED"), "{help}");
}

#[test]
fn custom_orders_are_relayed_and_so_are_their_answers() {
    let experts = |_| -> Vec<String> {
        ["--experts", "2", "--expert-work-us", "100"]
            .map(String::from)
            .to_vec()
    };
    let cluster = ProcessCluster::start_with(3, experts);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let mut c = client_of(&b);
    for order in 0..10 {
        assert_eq!(c.custom(5, order).unwrap(), CustomStatus::Done);
    }
    c.close();
    assert_everywhere(&list, &[0, 1, 2], &HashMap::from([(5, 9)]));
    b.stop();
    // Servers without experts: their answer comes back through.
    let plain = ProcessCluster::start(1);
    let list = addresses(&plain.ports());
    let b = balancer(&list);
    let mut c = client_of(&b);
    assert_eq!(c.custom(6, 1).unwrap(), CustomStatus::NoExperts);
    assert_eq!(c.read(6).unwrap().last_order, -1);
    b.stop();
}

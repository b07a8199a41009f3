//! The cluster client rides through a failover (issue 13 point 6, G1 and
//! G7 from the client's side): SIGKILL the primary of three server
//! processes under writers, and no request fails, and every acknowledged
//! write is on every live server afterwards, including writes to fresh
//! customers made after the kill. Once for `factory::client::Cluster`,
//! once for `client --servers`.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, ProcessCluster, DEADLINE};
use factory::client::status::{fetch_all, ServerStatus};
use factory::client::{Cluster, ClusterOptions};
use factory::wire::status::Role;

fn addresses(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

fn options() -> ClusterOptions {
    ClusterOptions {
        deadline: DEADLINE,
        attempt_timeout: Duration::from_secs(5),
    }
}

/// The index of the server that reports itself primary, once one does.
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

/// Waits until every server in `live` returns `expected` for each customer.
fn assert_everywhere(list: &[String], live: &[usize], expected: &HashMap<i32, i32>) {
    for &i in live {
        let (host, port) = factory::client::connect::split_host_port(&list[i]).unwrap();
        let mut last_seen = HashMap::new();
        let ok = wait_until(|| {
            let Ok(mut c) = factory::client::Client::connect(&host, port, common::IO_TIMEOUT)
            else {
                return false;
            };
            let all = expected.iter().all(|(&customer, &order)| {
                let got = c.read(customer).map(|r| r.last_order).unwrap_or(-2);
                last_seen.insert(customer, got);
                got == order
            });
            c.close();
            all
        });
        assert!(
            ok,
            "server {} lacks acknowledged writes: expected {expected:?}, saw {last_seen:?}",
            list[i]
        );
    }
}

struct Writers {
    acked: Arc<Mutex<HashMap<i32, i32>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<u64>>,
}

impl Writers {
    /// One thread and Cluster per customer, each writing orders 0, 1, 2, ...
    fn start(list: &[String], customers: std::ops::Range<i32>) -> Writers {
        Writers::start_with(list, customers, options())
    }

    fn start_with(
        list: &[String],
        customers: std::ops::Range<i32>,
        options: ClusterOptions,
    ) -> Writers {
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = customers
            .map(|customer| {
                let (acked, failures, stop) =
                    (Arc::clone(&acked), Arc::clone(&failures), Arc::clone(&stop));
                let mut cluster = Cluster::new(list.to_vec(), options).unwrap();
                thread::spawn(move || {
                    // Bounded by the order count as well as by the stop flag.
                    for order in 0..10_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match cluster.order(customer, order) {
                            Ok(_) => {
                                acked.lock().unwrap().insert(customer, order);
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(e.to_string());
                                break;
                            }
                        }
                    }
                    let failovers = cluster.failovers();
                    cluster.close();
                    failovers
                })
            })
            .collect();
        Writers {
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

    fn wait_for_more(&self, more: i64) -> bool {
        let target = self.total() + more;
        wait_until(|| self.total() >= target || !self.failures.lock().unwrap().is_empty())
            && self.total() >= target
    }

    /// Stops the writers: (last acked order per customer, failures, failovers).
    fn finish(self) -> (HashMap<i32, i32>, Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let failovers = self.threads.into_iter().map(|t| t.join().unwrap()).sum();
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures, failovers)
    }
}

#[test]
fn g1_g7_the_cluster_client_rides_through_a_primary_sigkill() {
    let mut cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    // Once elected, so that the writers find it (and then must move).
    let primary = primary_of(&list).expect("a primary");
    let writers = Writers::start(&list, 0..4);
    assert!(writers.wait_for_more(200), "writes are flowing");
    cluster.kill(primary);
    // Fresh writes after the fault, by the same writers and by new
    // customers.
    assert!(
        writers.wait_for_more(200),
        "writes resumed after the kill: {:?}",
        writers.failures.lock().unwrap()
    );
    let mut fresh = Cluster::new(list.clone(), options()).unwrap();
    let mut expected = HashMap::new();
    for customer in 100..110 {
        fresh
            .order(customer, customer * 2)
            .unwrap_or_else(|e| panic!("a fresh write after the kill failed: {e}"));
        expected.insert(customer, customer * 2);
    }
    fresh.close();
    let (acked, failures, failovers) = writers.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(failovers >= 1, "the writers did move to another server");
    expected.extend(acked);
    let live: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    assert_everywhere(&list, &live, &expected);
}

/// A paused primary answers nothing and closes nothing. Each attempt may
/// wait as long as the whole request (20 s), so a client that only waited
/// for its reply would fail every request sent to it; the cluster client
/// watches for a newly elected primary instead and sends the request
/// there, while the old primary stays stopped.
#[test]
fn g1_g7_the_cluster_client_leaves_a_paused_primary_for_the_new_one() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let primary = primary_of(&list).expect("a primary");
    let patient = ClusterOptions {
        deadline: Duration::from_secs(20),
        attempt_timeout: Duration::from_secs(20),
    };
    let writers = Writers::start_with(&list, 0..4, patient);
    assert!(writers.wait_for_more(200), "writes are flowing");
    let pid = cluster.servers[primary].pid();
    common::net::signal(pid, "-STOP");
    let resumed = writers.wait_for_more(200);
    let mut fresh = Cluster::new(list.clone(), patient).unwrap();
    let mut expected = HashMap::new();
    let mut fresh_failure = None;
    for customer in 100..110 {
        match fresh.order(customer, customer * 3) {
            Ok(_) => {
                expected.insert(customer, customer * 3);
            }
            Err(e) => {
                fresh_failure = Some(e.to_string());
                break;
            }
        }
    }
    fresh.close();
    common::net::signal(pid, "-CONT");
    let (acked, failures, failovers) = writers.finish();
    assert!(
        resumed,
        "writes resumed while the primary was paused: {failures:?}"
    );
    assert_eq!(fresh_failure, None, "a fresh write during the pause");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(failovers >= 1, "the writers did move to another server");
    expected.extend(acked);
    let live: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    assert_everywhere(&list, &live, &expected);
}

#[test]
fn g1_g7_client_servers_rides_through_a_primary_sigkill() {
    let mut cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    const CUSTOMERS: i32 = 4;
    const ORDERS: i32 = 10_000;
    // Once elected, so that the client finds it (and then must move).
    let primary = primary_of(&list).expect("a primary");
    let mut load = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--servers", &list.join(","), "--json", "--timeout", "20"])
        .args([CUSTOMERS.to_string(), ORDERS.to_string(), "1".to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (host, port) = factory::client::connect::split_host_port(&list[primary]).unwrap();
    let progressed = wait_until(|| {
        factory::client::Client::connect(&host, port, common::IO_TIMEOUT)
            .and_then(|mut c| c.read(0))
            .is_ok_and(|r| r.last_order >= 100)
    });
    assert!(progressed, "writes are flowing");
    cluster.kill(primary);
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end && matches!(load.try_wait(), Ok(None)) {
        thread::sleep(Duration::from_millis(50));
    }
    if matches!(load.try_wait(), Ok(None)) {
        let _ = load.kill();
    }
    let o = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let stats: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON stats");
    assert_eq!(stats["failed"], 0, "{stats}");
    assert_eq!(stats["requests"], i64::from(CUSTOMERS * ORDERS), "{stats}");
    assert!(
        stats["failovers"].as_u64().unwrap() >= 1,
        "the kill came mid-run: {stats}"
    );
    let expected: HashMap<i32, i32> = (0..CUSTOMERS).map(|c| (c, ORDERS - 1)).collect();
    let live: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    assert_everywhere(&list, &live, &expected);
}

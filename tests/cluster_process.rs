//! Clusters of separate `server` processes driven by the `client` binary,
//! and failures: a backup or the primary killed with SIGKILL mid-stream.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{assert_all_written, client, read, wait_until, ProcessCluster};

fn run_client(port: u16, customers: i32, orders: i32, mode: i32) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["127.0.0.1", &port.to_string()])
        .args([customers, orders, mode].map(|n| n.to_string()))
        .args(["--timeout", "10"])
        .output()
        .expect("run client")
}

/// Parses scan output (`customer<TAB>last_order` lines) into a map.
fn scan(port: u16, customers: i32) -> HashMap<i32, i32> {
    let out = run_client(port, 1, customers, 3);
    assert!(out.status.success(), "scan failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (c, v) = line.split_once('\t').expect("tab-separated line");
            (c.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

fn cluster_of(n: usize) {
    let cluster = ProcessCluster::start(n);
    let ports = cluster.ports();
    let out = run_client(ports[0], 8, 300, 1);
    assert!(out.status.success(), "writes failed: {out:?}");
    let stats = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stats.trim().split('\t').count(), 4, "stats line: {stats}");

    for &port in &ports {
        assert!(
            wait_until(|| scan(port, 8).values().all(|&v| v == 299)),
            "server :{port} converges on every write"
        );
        assert_all_written(port, 8, 300, true);
    }
    assert!(cluster
        .servers
        .iter()
        .any(|s| s.log_text().contains("became primary")));
}

#[test]
fn one_server_process() {
    cluster_of(1);
}

#[test]
fn two_server_processes() {
    cluster_of(2);
}

#[test]
fn three_server_processes() {
    cluster_of(3);
}

/// Writers that record, per customer, the last order acknowledged to them.
struct Writers {
    acked: Arc<Mutex<HashMap<i32, i32>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<usize>>,
}

impl Writers {
    /// Each customer writes increasing orders until stopped or an error.
    fn start(port: u16, customers: i32) -> Writers {
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..customers)
            .map(|customer| {
                let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut c = client(port);
                    let mut errors = 0;
                    for order in 0..1_000_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match c.order(customer, order) {
                            Ok(_) => {
                                acked.lock().unwrap().insert(customer, order);
                            }
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        Writers {
            acked,
            stop,
            threads,
        }
    }

    fn acked_total(&self) -> i32 {
        self.acked.lock().unwrap().values().map(|v| v + 1).sum()
    }

    /// Stops the writers; returns how many of them ended with an error.
    fn finish(self) -> (usize, HashMap<i32, i32>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.threads.into_iter().map(|t| t.join().unwrap()).sum();
        let acked = self.acked.lock().unwrap().clone();
        (errors, acked)
    }
}

/// True when every acknowledged order is on the server at `port`: since
/// each customer's orders only grow, its record must be at least the last ack.
fn has_all_acked(port: u16, acked: &HashMap<i32, i32>) -> bool {
    acked
        .iter()
        .all(|(&customer, &order)| read(port, customer) >= order)
}

/// Waits (bounded) for the server at `port` to hold every acknowledged
/// order: a backup applies the last entries once the primary's commit
/// notice arrives.
fn assert_acked_present(port: u16, acked: &HashMap<i32, i32>) {
    assert!(
        wait_until(|| has_all_acked(port, acked)),
        "server :{port} lacks acknowledged orders"
    );
}

#[test]
fn backup_killed_mid_stream() {
    let mut cluster = ProcessCluster::start(3);
    let p = cluster.primary().expect("an elected primary");
    let (a, b) = ((p + 1) % 3, (p + 2) % 3);
    let primary = cluster.ports()[p];
    let writers = Writers::start(primary, 8);
    assert!(wait_until(|| writers.acked_total() >= 500), "writes flow");
    cluster.servers[b].kill();
    let before = writers.acked_total();
    assert!(
        wait_until(|| writers.acked_total() >= before + 500),
        "the primary keeps acknowledging after losing a backup"
    );
    let (errors, acked) = writers.finish();
    assert_eq!(errors, 0, "no writer saw an error");
    assert!(cluster.servers[p].wait_for_line(&format!("lost peer {b}")));
    for (&customer, &order) in &acked {
        assert_eq!(read(primary, customer), order, "primary has every ack");
    }
    assert_acked_present(cluster.ports()[a], &acked);
}

/// The original's rule, kept by clusters without the election: a write to
/// a backup makes it take over (tests/failover.rs has the elected case).
#[test]
fn primary_killed_then_backup_takes_writes() {
    let mut cluster = ProcessCluster::start_with(3, |_| common::election_off());
    let ports = cluster.ports();
    let writers = Writers::start(ports[0], 8);
    assert!(wait_until(|| writers.acked_total() >= 500), "writes flow");
    cluster.servers[0].kill();
    let (errors, acked) = writers.finish();
    assert!(errors > 0, "writers notice the primary's death");

    // The first write to a backup makes it primary; it commits what it held.
    let mut c = client(ports[1]);
    c.order(100, 1).expect("write through the backup");
    c.close();
    assert!(cluster.servers[1].wait_for_line("became primary"));
    assert!(has_all_acked(ports[1], &acked), "new primary has every ack");
    assert_eq!(read(ports[1], 100), 1);
    let mut c = client(ports[1]);
    c.order(100, 2)
        .expect("second write through the new primary");
    c.close();
    assert!(
        wait_until(|| read(ports[2], 100) == 2),
        "the other backup follows the new primary"
    );
    assert_acked_present(ports[2], &acked);
}

//! `server --metrics ADDR`: the `/metrics` text is parsed strictly
//! (`common::prometheus`), scraped while a load runs, and its counters checked against what the
//! clients did.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::prometheus::{get, parse, scrape};
use common::{client, in_process_cluster_with, wait_until, ServerProcess, SpawnError};

fn metrics_addr_from_log(log: &str) -> SocketAddr {
    let at = log.find("metrics on http://").expect("the metrics line") + 18;
    let rest = &log[at..];
    let end = rest.find("/metrics").expect("the path");
    rest[..end].parse().expect("an address")
}

/// A lone server process with `--metrics 127.0.0.1:0` and a data dir.
fn metrics_server(data_dir: &str) -> ServerProcess {
    let extra: Vec<String> = ["--metrics", "127.0.0.1:0", "--data-dir", data_dir]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for _ in 0..5 {
        match ServerProcess::spawn_with(0, common::free_port(), &[], &extra) {
            Ok(server) => return server,
            Err(SpawnError::PortInUse) => continue,
            Err(e) => panic!("server did not start: {e:?}"),
        }
    }
    panic!("no free port for a server");
}

fn run_client(port: u16, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn client")
}

#[test]
fn counters_add_up_to_what_the_client_did() {
    let dir = tempfile::tempdir().unwrap();
    // The metrics line comes before the listening line spawn waited for.
    let server = metrics_server(dir.path().to_str().unwrap());
    let addr = metrics_addr_from_log(&server.log_text());

    // 4 customers x 250 orders, scraped all along.
    let mut load = run_client(server.port, &["4", "250", "1"]);
    let mut during = 0;
    let mut last_writes = 0.0;
    while matches!(load.try_wait(), Ok(None)) {
        let s = scrape(addr);
        let writes = s.get("factory_writes_total", &[]);
        assert!(writes >= last_writes && writes <= 1000.0, "{writes}");
        last_writes = writes;
        if matches!(load.try_wait(), Ok(None)) {
            during += 1;
        }
    }
    assert!(load.wait().unwrap().success(), "every write acknowledged");
    assert!(during >= 1, "no scrape completed during the load");
    let reads = run_client(server.port, &["4", "25", "2"]).wait().unwrap();
    assert!(reads.success());

    // A session counts its write after sending the reply, so a scrape right
    // after the last reply may be one short: wait for the count, then
    // require it exactly (too many fails at once).
    let s = settled(addr, "factory_writes_total", 1000.0);
    assert_eq!(s.get("factory_writes_total", &[]), 1000.0);
    assert_eq!(s.get("factory_reads_total", &[]), 100.0);
    assert_eq!(s.get("factory_batch_size_sum", &[]), 1000.0);
    let batches = s.get("factory_batch_size_count", &[]);
    assert!((1.0..=1000.0).contains(&batches), "{batches}");
    // --fsync always: at least one fsync per batch.
    assert!(s.get("factory_fsync_seconds_count", &[]) >= batches);
    assert!(s.get("factory_fsync_seconds_sum", &[]) > 0.0);
    assert_eq!(s.sum_of("factory_errors_total"), 0.0);
    assert_eq!(
        s.get("factory_forwarded_total", &[("request", "write")]),
        0.0
    );
    assert_eq!(s.get("factory_role", &[("role", "primary")]), 1.0);
    assert_eq!(s.get("factory_role", &[("role", "backup")]), 0.0);
    assert_eq!(s.get("factory_epoch", &[]), 1.0);
    assert_eq!(s.get("factory_elections_total", &[("outcome", "won")]), 1.0);
    assert!(s.get("factory_connections_accepted_total", &[]) >= 8.0);
    assert!(wait_until(
        || scrape(addr).get("factory_connections", &[]) == 0.0
    ));
    assert!(get(addr, "/nothing", 404).contains("/metrics"));
}

#[test]
fn a_cluster_reports_forwarding_replication_and_lag() {
    let clusters = in_process_cluster_with(3, |c| {
        c.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let addrs: Vec<SocketAddr> = clusters.iter().map(|s| s.metrics_addr().unwrap()).collect();
    let port = |i: usize| clusters[i].local_addr().port();
    // Server 0 takes the first write and leads; 30 more go through server 1.
    let mut c0 = client(port(0));
    for order in 0..20 {
        c0.order(1, order).expect("write to the primary");
    }
    c0.close();
    let mut c1 = client(port(1));
    for order in 0..30 {
        c1.order(2, order).expect("write through a backup");
    }
    c1.close();

    settled(addrs[1], "factory_writes_total", 30.0);
    let primary = settled(addrs[0], "factory_writes_total", 50.0);
    let backup = scrape(addrs[1]);
    assert_eq!(primary.get("factory_role", &[("role", "primary")]), 1.0);
    assert_eq!(backup.get("factory_role", &[("role", "backup")]), 1.0);
    assert_eq!(backup.get("factory_primary_id", &[]), 0.0);
    // The primary answered its own 20 and the 30 the backup forwarded.
    assert_eq!(primary.get("factory_writes_total", &[]), 50.0);
    assert_eq!(backup.get("factory_writes_total", &[]), 30.0);
    assert_eq!(
        backup.get("factory_forwarded_total", &[("request", "write")]),
        30.0
    );
    // The primary committed all 50 in its batches, each waited for backups.
    assert_eq!(primary.get("factory_batch_size_sum", &[]), 50.0);
    let batches = primary.get("factory_batch_size_count", &[]);
    assert!(primary.get("factory_replication_wait_seconds_count", &[]) >= batches);
    assert_eq!(primary.get("factory_peer_up", &[("peer", "1")]), 1.0);
    // Every write was acknowledged by both backups (the in-sync set), so
    // the lag is 0 once the last commit notice is acknowledged too.
    for peer in ["1", "2"] {
        assert!(wait_until(|| scrape(addrs[0])
            .get("factory_peer_lag_entries", &[("peer", peer)])
            == 0.0));
    }
    assert!(backup
        .samples
        .iter()
        .all(|s| s.name != "factory_peer_lag_entries"));

    // Stopping a server stops its endpoint.
    let stopped = addrs[2];
    let mut servers = clusters;
    servers.pop().unwrap().stop();
    assert!(wait_until(|| TcpStream::connect(stopped).is_err()));
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\"} 1\n";
    assert!(parse(good).is_ok());
    for bad in [
        "a_total 1\n",                                              // no TYPE
        "# TYPE a_total counter\na_total 1\n",                      // no HELP
        "# HELP a_total A.\n# TYPE a_total counter\na_total{k=v} 1\n", // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1",       // no newline
        "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",   // value
        "# HELP a A.\n# TYPE a counter\na 1\n",                       // _total
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// Scrapes never stall a server under load: a scraper in a loop while
/// writes flow, with every scrape parsed.
#[test]
fn scraping_in_a_loop_while_writing() {
    let servers = in_process_cluster_with(1, |c| {
        c.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let addr = servers[0].metrics_addr().unwrap();
    let port = servers[0].local_addr().port();
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) && n < 10_000 {
                scrape(addr);
                n += 1;
            }
            n
        })
    };
    common::write_concurrently(port, 4, 100);
    done.store(true, Ordering::Relaxed);
    assert!(scraper.join().unwrap() >= 1);
    assert_eq!(
        settled(addr, "factory_writes_total", 400.0).get("factory_writes_total", &[]),
        400.0
    );
}

#[test]
fn a_taken_metrics_address_fails_the_start_before_listening() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = common::free_port().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_server"))
        .args([&port, "0", "0", "--bind", "127.0.0.1", "--metrics", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve --metrics on {addr}")),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
}

/// A scrape once the unlabelled counter `name` has reached `expected`, or
/// the last one at the deadline (the caller's assertion then fails).
fn settled(addr: SocketAddr, name: &str, expected: f64) -> common::prometheus::Scrape {
    let mut last = scrape(addr);
    wait_until(|| {
        last = scrape(addr);
        last.get(name, &[]) >= expected
    });
    last
}

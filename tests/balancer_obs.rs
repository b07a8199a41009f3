//! The balancer's observability (issue 16.5): its answer to the status
//! request, shown by `client --status` as a row of role "balancer" with
//! its figures, and `--metrics`, parsed strictly (`common::prometheus`)
//! after a run whose requests are all counted: the requests each server
//! answered and the cache's hits add up to the requests the clients sent,
//! and the cache's figures agree everywhere.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use common::prometheus::{get, scrape};
use common::{in_process_cluster, wait_until};
use factory::balancer::{Balancer, BalancerConfig};
use factory::client::status::{fetch, ServerStatus};
use factory::client::Client;
use factory::wire::status::Role;

const CLIENTS: i32 = 4;
const ORDERS: i32 = 20;

/// CLIENTS threads, each ORDERS writes and ORDERS reads of its own
/// customers through the balancer; returns the requests sent (each one
/// acknowledged: a failure panics the thread and the test).
fn run(port: u16) -> u64 {
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            thread::spawn(move || {
                let mut c = Client::connect("127.0.0.1", port, Some(Duration::from_secs(60)))
                    .expect("connect to the balancer");
                for i in 0..ORDERS {
                    let customer = t * 1000 + i;
                    c.order(customer, i + 1).expect("an order");
                    assert_eq!(c.read(customer).expect("a read").last_order, i + 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    (2 * CLIENTS * ORDERS) as u64
}

#[test]
fn status_and_metrics_count_every_request() {
    let servers = in_process_cluster(3);
    let list: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.local_addr().port()))
        .collect();
    let mut config = BalancerConfig::loopback(0, list.clone());
    config.server_ids = vec![10, 11, 12];
    config.cache_size = 50;
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let b = Balancer::start(config).expect("start the balancer");
    let addr = b.local_addr();
    let metrics = b.metrics_addr().expect("metrics served");
    // The cache serves once its commit stream runs (a primary exists
    // after the first write).
    let mut first =
        Client::connect("127.0.0.1", addr.port(), Some(Duration::from_secs(60))).unwrap();
    first.order(999, 1).unwrap();
    first.close();
    assert!(wait_until(|| matches!(
        fetch(&addr.to_string(), Duration::from_secs(2)),
        ServerStatus::Report(r) if r.balancer.as_ref().is_some_and(|v| v.cache_enabled)
    )));

    let sent = run(addr.port()) + 1;

    // The status request, decoded as `client --status` decodes it.
    let status = fetch(&addr.to_string(), Duration::from_secs(5));
    let ServerStatus::Report(r) = status else {
        panic!("the balancer sent no report: {status:?}");
    };
    assert_eq!(r.role, Role::Unknown, "old decoders read role unknown");
    assert_eq!(r.role_name(), "balancer");
    let view = r.balancer.as_ref().expect("the balancer's section");
    assert_eq!(view.requests, sent);
    let reads = (CLIENTS * ORDERS) as u64;
    let answered: u64 = view.servers.iter().map(|s| s.answered).sum();
    assert_eq!(
        answered + view.cache_hits,
        sent,
        "every request answered by a server or the cache: {view:?}"
    );
    assert_eq!(view.cache_hits + view.cache_misses, reads, "{view:?}");
    assert!(view.cache_hits > 0, "each read follows its write: {view:?}");
    assert!(
        view.cache_entries > 0 && view.cache_entries <= 50,
        "{view:?}"
    );
    assert_eq!(view.retries, 0);
    assert_eq!(view.failovers, 0);
    assert_eq!(view.cache_capacity, 50);
    assert!(view.cache_enabled);
    let ids: Vec<i32> = view.servers.iter().map(|s| s.id).collect();
    assert_eq!(ids, [10, 11, 12]);
    let primary = view
        .servers
        .iter()
        .position(|s| s.primary)
        .expect("the primary it writes to");
    assert_eq!(r.primary_id, ids[primary]);
    // Every write goes to the primary; reads that miss are spread.
    assert!(view.servers[primary].answered > reads, "{view:?}");

    // The metrics, strictly parsed, say the same.
    let s = scrape(metrics);
    assert_eq!(s.get("factory_balancer_requests_total", &[]), sent as f64);
    assert_eq!(s.sum_of("factory_balancer_answered_total"), answered as f64);
    let id = ids[primary].to_string();
    let primary_labels = [("server", list[primary].as_str()), ("id", id.as_str())];
    assert_eq!(
        s.get("factory_balancer_answered_total", &primary_labels),
        view.servers[primary].answered as f64
    );
    assert_eq!(s.get("factory_balancer_primary", &primary_labels), 1.0);
    assert_eq!(s.sum_of("factory_balancer_primary"), 1.0);
    assert_eq!(s.get("factory_balancer_retries_total", &[]), 0.0);
    assert_eq!(s.get("factory_balancer_failovers_total", &[]), 0.0);
    assert!(s.get("factory_balancer_sessions_opened_total", &[]) >= 1.0);
    assert_eq!(s.get("factory_balancer_cache_enabled", &[]), 1.0);
    assert_eq!(s.get("factory_balancer_cache_capacity", &[]), 50.0);
    assert_eq!(
        s.get("factory_balancer_cache_entries", &[]),
        f64::from(view.cache_entries)
    );
    for (name, value) in [
        ("hits", view.cache_hits),
        ("misses", view.cache_misses),
        ("invalidations", view.invalidations),
    ] {
        let family = format!("factory_balancer_cache_{name}_total");
        assert_eq!(s.get(&family, &[]), value as f64, "{family}");
    }
    assert_eq!(
        s.get("factory_balancer_cache_stream_starts_total", &[]),
        1.0
    );
    assert_eq!(
        s.get("factory_balancer_cache_following", &primary_labels),
        1.0
    );
    assert!(wait_until(|| scrape(metrics)
        .get("factory_balancer_client_connections", &[])
        == 0.0));
    assert!(get(metrics, "/other", 404).contains("/metrics"));

    // `client --status` over the servers and the balancer: a row of role
    // "balancer", its figures under the table, and the same in JSON.
    let all = format!("{},{addr}", list.join(","));
    let o = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--status", &all, "--timeout", "5"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "header, 3 servers, the balancer, its figures: {table}"
    );
    let row: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(row[0], addr.to_string(), "{table}");
    assert_eq!(row[2], "balancer", "{table}");
    assert_eq!(row[4], id, "{table}");
    let answered = format!(
        "answered {}",
        ids.iter()
            .zip(&view.servers)
            .map(|(id, s)| format!("{id}={}", s.answered))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(
        lines[5].starts_with(&format!("balancer {addr}: requests {sent} {answered} ")),
        "{table}"
    );
    assert!(
        lines[5].contains(&format!(
            "cache on (capacity 50, entries {}, hits {}, misses {}, invalidations {})",
            view.cache_entries, view.cache_hits, view.cache_misses, view.invalidations
        )),
        "{table}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--status", &addr.to_string(), "--json", "--timeout", "5"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let me = &json["servers"][0];
    assert_eq!(me["role"], "balancer", "{json}");
    assert_eq!(me["balancer"]["requests"], sent, "{json}");
    assert_eq!(me["balancer"]["cache"]["enabled"], true, "{json}");
    assert_eq!(me["balancer"]["cache"]["hits"], view.cache_hits, "{json}");
    b.stop();
}

#[test]
fn a_taken_metrics_address_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = BalancerConfig::loopback(0, vec!["127.0.0.1:1".into()]);
    config.metrics = Some(taken.local_addr().unwrap());
    let err = Balancer::start(config).err().expect("the start fails");
    assert!(err.to_string().contains("--metrics"), "{err}");
}

/// `load ... --metrics 127.0.0.1:0`: the endpoint's address is logged
/// before the balancer says it listens, and it counts a request made
/// through the binary.
#[test]
fn the_load_binary_serves_metrics() {
    use std::process::Stdio;

    let servers = in_process_cluster(1);
    let server_port = servers[0].local_addr().port();
    for _ in 0..5 {
        let port = common::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_load"))
            .args([&port.to_string(), "0", "1", "4", "127.0.0.1"])
            .arg(server_port.to_string())
            .args(["--bind", "127.0.0.1", "--metrics", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn load");
        // The reader thread ends with the process's stderr.
        let (rx, _log, _reader) = common::capture_lines(child.stderr.take().unwrap());
        let mut lines = Vec::new();
        while let Ok(line) = rx.recv_timeout(common::DEADLINE) {
            let listening = line.contains("balancer listening on");
            lines.push(line);
            if listening {
                break;
            }
        }
        if !lines.iter().any(|l| l.contains("balancer listening on")) {
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                lines.iter().any(|l| l.contains("in use")),
                "load did not start: {lines:?}"
            );
            continue;
        }
        let line = lines
            .iter()
            .find(|l| l.contains("metrics on http://"))
            .unwrap_or_else(|| panic!("no metrics line before listening: {lines:?}"));
        let at = line.find("http://").unwrap() + 7;
        let end = line[at..].find("/metrics").unwrap() + at;
        let metrics: std::net::SocketAddr = line[at..end].parse().unwrap();
        let mut c = Client::connect("127.0.0.1", port, Some(Duration::from_secs(60))).unwrap();
        c.order(7, 3).unwrap();
        drop(c);
        let s = scrape(metrics);
        assert_eq!(s.get("factory_balancer_requests_total", &[]), 1.0);
        let server = format!("127.0.0.1:{server_port}");
        let labels = [("server", server.as_str()), ("id", "4")];
        assert_eq!(s.get("factory_balancer_answered_total", &labels), 1.0);
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    panic!("no free port for load");
}

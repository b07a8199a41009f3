//! `server --metrics ADDR`: the `/metrics` text is parsed strictly (every
//! line a HELP/TYPE comment or `name{labels} value`, every family declared
//! before its samples, histograms cumulative and ending at their count),
//! scraped while a load runs, and its counters checked against what the
//! clients did.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{client, in_process_cluster_with, wait_until, ServerProcess, SpawnError};

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A parsed exposition.
struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of `name` with exactly `labels` (in any order).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }

    fn sum_of(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `k="v",k2="v2"` (escapes \\, \" and \n in values).
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("bad labels {s:?}"))?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("bad escape in {s:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice in {s:?}"));
        }
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(format!("trailing comma in {s:?}")),
            None if rest.is_empty() => rest,
            None => return Err(format!("expected ',' in {s:?}")),
        };
    }
    Ok(labels)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (head, value) = match line.find('{') {
        Some(open) => {
            let close = line
                .rfind('}')
                .ok_or_else(|| format!("no '}}': {line:?}"))?;
            let rest = line[close + 1..]
                .strip_prefix(' ')
                .ok_or_else(|| format!("no space before the value: {line:?}"))?;
            ((&line[..open], Some(&line[open + 1..close])), rest)
        }
        None => {
            let (name, rest) = line
                .split_once(' ')
                .ok_or_else(|| format!("no value: {line:?}"))?;
            ((name, None), rest)
        }
    };
    let (name, labels) = head;
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut parts = value.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp: {line:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("extra fields: {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels: labels.map(parse_labels).transpose()?.unwrap_or_default(),
        value,
    })
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

/// Parses the Prometheus text format strictly.
fn parse(text: &str) -> Result<Scrape, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let body = text
        .strip_suffix('\n')
        .ok_or("the text does not end with a newline")?;
    for line in body.split('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            match (keyword, name) {
                (Some("HELP"), Some(name)) if is_name(name, true) => {
                    let help = rest.ok_or(format!("empty HELP: {line:?}"))?;
                    if helps.insert(name.into(), help.into()).is_some() {
                        return Err(format!("HELP twice for {name}"));
                    }
                }
                (Some("TYPE"), Some(name)) if is_name(name, true) => {
                    let kind = rest.ok_or(format!("no type: {line:?}"))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("bad type: {line:?}"));
                    }
                    let of_it = |s: &Sample| {
                        s.name == name
                            || ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|x| s.name.strip_suffix(x) == Some(name))
                    };
                    if samples.iter().any(of_it) {
                        return Err(format!("TYPE after samples of {name}"));
                    }
                    if types.insert(name.into(), kind.into()).is_some() {
                        return Err(format!("TYPE twice for {name}"));
                    }
                }
                _ => return Err(format!("bad comment line {line:?}")),
            }
            continue;
        }
        let sample = parse_sample(line)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| format!("{} has no TYPE before it", sample.name))?;
        if !helps.contains_key(family) {
            return Err(format!("{family} has no HELP before its samples"));
        }
        if types[family] == "counter" && !family.ends_with("_total") {
            return Err(format!("counter {family} does not end in _total"));
        }
        samples.push(sample);
    }
    check_histograms(&types, &samples)?;
    Ok(Scrape { samples })
}

fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) -> Result<(), String> {
    for (name, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket_name = format!("{name}_bucket");
        let buckets: Vec<&Sample> = samples.iter().filter(|s| s.name == bucket_name).collect();
        let mut last = (f64::NEG_INFINITY, 0.0);
        for b in &buckets {
            let le = b
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or(format!("{name}: a bucket without le"))?;
            let le = parse_value(&le.1)?;
            if le <= last.0 || b.value < last.1 {
                return Err(format!("{name}: buckets not increasing at le={le}"));
            }
            last = (le, b.value);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}: no +Inf bucket"));
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{name}_count"))
            .ok_or(format!("{name}: no _count"))?;
        if count.value != last.1 {
            return Err(format!(
                "{name}: +Inf bucket {} != count {}",
                last.1, count.value
            ));
        }
        if !samples.iter().any(|s| s.name == format!("{name}_sum")) {
            return Err(format!("{name}: no _sum"));
        }
    }
    Ok(())
}

/// `GET /metrics` over plain HTTP/1.1; returns the parsed body.
fn scrape(addr: SocketAddr) -> Scrape {
    let text = get(addr, "/metrics", 200);
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// GETs `path` and checks the status; returns the body.
fn get(addr: SocketAddr, path: &str, status: u16) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header");
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status_line}"
    );
    if status == 200 {
        assert!(
            head.lines().any(|l| l
                .to_ascii_lowercase()
                .starts_with("content-type: text/plain; version=0.0.4")),
            "{head}"
        );
    }
    body.to_string()
}

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

    let s = scrape(addr);
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

    let primary = scrape(addrs[0]);
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
    assert_eq!(scrape(addr).get("factory_writes_total", &[]), 400.0);
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

//! The load generator behind `client kv load` (protocol v2, docs/protocol.md
//! §9): one thread and one connection per `--connections`, each sending
//! batches of `--depth` requests in one write and reading every answer
//! before the next batch, so that each connection keeps up to that many
//! requests in flight (the shape of `redis-benchmark -P`). Called by the
//! `client` binary through `cli::kv_load`, and by the benchmark script.
//!
//! Request `j` of connection `c` is number `j * connections + c` of the run;
//! its key is `key_of(n % keys)` and it is a read for the `--reads` share of
//! numbers (a fixed hash, so two runs with the same options send the same
//! requests). The value of key `i` is always [`value_of`]`(i, size)`, so a
//! read can check what it got and a test can check what was written, even
//! when connections race on one key. A run of `keys` writes with the
//! default stride writes every key exactly once (`--preload` does that
//! before the timed part).
//!
//! The same loop also speaks RESP ([`KvProtocol::Resp`]) to a Redis-protocol
//! server (`SET`/`GET`, with `WAIT N 0` after the writes of each batch), so
//! that the benchmark compares both stores through one client of one cost.
//!
//! Latency of a request: from the write of its batch to the arrival of its
//! answer (for RESP with WAIT, of the WAIT's answer, when the write is known
//! to be replicated). A request answered "not primary" is sent again to the
//! server the answer names (or the next of `--servers`) and timed from its
//! first send.

mod etcd;
mod link;

use std::thread;
use std::time::{Duration, Instant};

use super::Stats;
use link::{Answer, Link};

/// Longest time a connection retries a refused or reset connect.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(3);

/// Most times one connection follows "not primary" (or reconnects to try
/// the next server) before it gives up on a request.
const MAX_REDIRECTS: u32 = 20;

/// Stack of a connection thread: its buffers live on the heap.
const STACK: usize = 256 * 1024;

/// Requests in flight per connection while preloading.
const PRELOAD_DEPTH: usize = 64;

/// Which protocol the load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvProtocol {
    /// factory's protocol v2.
    V2,
    /// RESP to a Redis-protocol server; `wait > 0` sends `WAIT wait 0`
    /// after the writes of each batch and counts them acknowledged only
    /// when it answers at least `wait`.
    Resp { wait: u32 },
    /// etcd v3's JSON gateway over HTTP/1.1 (`POST /v3/kv/put` and
    /// `/v3/kv/range`), for the benchmark's etcd rows.
    Etcd,
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvLoadLimit {
    /// After this many requests in all, split over the connections.
    Requests(u64),
    /// After this long (each connection ends its batch in flight).
    Duration(Duration),
}

/// A `client kv load` run.
#[derive(Clone, Debug, PartialEq)]
pub struct KvLoadConfig {
    /// `host:port` of the servers; connections start at the first.
    pub servers: Vec<String>,
    /// Bytes of each value written.
    pub value_size: usize,
    /// Keys `0..keys`.
    pub keys: u64,
    /// Percentage of requests that are reads (0..=100).
    pub read_percent: u8,
    /// Requests per batch on each connection.
    pub depth: usize,
    /// Connections (threads).
    pub connections: usize,
    /// When to stop.
    pub limit: KvLoadLimit,
    /// Write every key once before the timed part.
    pub preload: bool,
    /// Keep a histogram for p50 and p99.
    pub percentiles: bool,
    /// Connect and I/O timeout (`None`: wait forever).
    pub timeout: Option<Duration>,
    /// What to speak.
    pub protocol: KvProtocol,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct KvLoadReport {
    /// Latencies of the requests answered.
    pub stats: Stats,
    /// The timed part's wall time.
    pub wall: Duration,
    /// Requests answered (reads that found nothing included).
    pub ok: u64,
    /// Requests not answered, refused, or answered with a wrong value;
    /// with a request limit, also those never sent after a failure.
    pub failed: u64,
    /// Reads answered.
    pub reads: u64,
    /// Writes answered.
    pub writes: u64,
    /// Reads answered "not found".
    pub misses: u64,
    /// Requests sent again after "not primary".
    pub redirects: u64,
    /// Connections that never opened.
    pub unreachable: usize,
    /// Requests written by `--preload` (not timed, not in the counts).
    pub preloaded: u64,
    /// The first failure, for the message.
    pub first_error: Option<String>,
}

impl KvLoadReport {
    fn absorb(&mut self, other: Tally) {
        self.stats.merge(&other.stats);
        self.ok += other.ok;
        self.failed += other.failed;
        self.reads += other.reads;
        self.writes += other.writes;
        self.misses += other.misses;
        self.redirects += other.redirects;
        self.unreachable += usize::from(!other.connected);
        if self.first_error.is_none() {
            self.first_error = other.error;
        }
    }
}

/// The key of index `i`.
pub fn key_of(i: u64) -> Vec<u8> {
    format!("key{i:010}").into_bytes()
}

/// Width of the index stamped at the start of each value.
const STAMP: usize = 10;

/// The value of key `i`: its index in ten decimal digits, then dots, cut
/// or filled to `size` bytes.
pub fn value_of(i: u64, size: usize) -> Vec<u8> {
    let mut v = vec![b'.'; size];
    stamp(&mut v, i);
    v
}

fn stamp(value: &mut [u8], i: u64) {
    let digits = format!("{i:010}");
    let n = value.len().min(STAMP);
    value[..n].copy_from_slice(&digits.as_bytes()[digits.len() - STAMP..][..n]);
}

/// True when `value` is [`value_of`]`(i, size)`, without building it.
pub fn value_matches(value: &[u8], i: u64, size: usize) -> bool {
    if value.len() != size {
        return false;
    }
    let mut head = [b'.'; STAMP];
    stamp(&mut head, i);
    let n = size.min(STAMP);
    value[..n] == head[..n] && value[n..].iter().all(|&b| b == b'.')
}

/// Whether request number `n` of a run is a read.
fn is_read(n: u64, read_percent: u8) -> bool {
    // splitmix64's finaliser: the share holds for any stretch of numbers.
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z % 100 < u64::from(read_percent)
}

/// One request of a batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// Key index.
    pub index: u64,
    /// A get (else a put).
    pub read: bool,
}

/// Runs the load: the preload (if asked), then the timed part. With more
/// than one server (v2), the one whose status says primary is tried first,
/// so that no read of the run goes to a backup that may lag it.
pub fn run(config: &KvLoadConfig) -> KvLoadReport {
    let mut config = config.clone();
    if config.servers.len() > 1 && config.protocol == KvProtocol::V2 {
        primary_first(&mut config.servers, config.timeout);
    }
    let config = &config;
    let mut report = KvLoadReport {
        stats: new_stats(config),
        ..KvLoadReport::default()
    };
    if config.preload {
        let preload = KvLoadConfig {
            read_percent: 0,
            depth: config.depth.max(PRELOAD_DEPTH),
            limit: KvLoadLimit::Requests(config.keys),
            percentiles: false,
            ..config.clone()
        };
        let (tallies, _) = run_connections(&preload);
        let mut pre = KvLoadReport::default();
        tallies.into_iter().for_each(|t| pre.absorb(t));
        report.preloaded = pre.writes;
        if pre.failed > 0 || pre.unreachable > 0 {
            report.failed = pre.failed;
            report.unreachable = pre.unreachable;
            report.first_error = Some(format!(
                "preload: {} of {} writes failed{}",
                pre.failed,
                config.keys,
                pre.first_error
                    .map_or_else(String::new, |e| format!(" (first error: {e})"))
            ));
            return report;
        }
    }
    let (tallies, wall) = run_connections(config);
    report.wall = wall;
    tallies.into_iter().for_each(|t| report.absorb(t));
    report
}

fn primary_first(servers: &mut [String], timeout: Option<Duration>) {
    let timeout = timeout.unwrap_or(CONNECT_BUDGET).min(CONNECT_BUDGET);
    let statuses = super::status::fetch_all(servers, timeout);
    let primary = statuses.iter().position(|s| {
        matches!(s, super::status::ServerStatus::Report(r) if r.role == crate::wire::status::Role::Primary)
    });
    if let Some(p) = primary {
        servers[..=p].rotate_right(1);
    }
}

fn new_stats(config: &KvLoadConfig) -> Stats {
    if config.percentiles {
        Stats::with_percentiles()
    } else {
        Stats::default()
    }
}

/// What one connection did.
#[derive(Default)]
struct Tally {
    stats: Stats,
    ok: u64,
    failed: u64,
    reads: u64,
    writes: u64,
    misses: u64,
    redirects: u64,
    connected: bool,
    error: Option<String>,
}

fn run_connections(config: &KvLoadConfig) -> (Vec<Tally>, Duration) {
    let start = Instant::now();
    let deadline = match config.limit {
        KvLoadLimit::Duration(d) => Some(start + d),
        KvLoadLimit::Requests(_) => None,
    };
    let tallies = thread::scope(|scope| {
        let handles: Vec<_> = (0..config.connections)
            .map(|c| {
                let planned = planned(config, c);
                thread::Builder::new()
                    .name(format!("kv-load-{c}"))
                    .stack_size(STACK)
                    .spawn_scoped(scope, move || connection(config, c, planned, deadline))
                    .map_err(|e| (planned, e))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(handle) => handle.join().unwrap_or_else(|_| Tally {
                    error: Some("a load thread panicked".into()),
                    ..Tally::default()
                }),
                Err((planned, e)) => Tally {
                    failed: planned.unwrap_or(0),
                    error: Some(format!("cannot start a load thread: {e}")),
                    ..Tally::default()
                },
            })
            .collect()
    });
    (tallies, start.elapsed())
}

/// Requests connection `c` makes under a request limit.
fn planned(config: &KvLoadConfig, c: usize) -> Option<u64> {
    match config.limit {
        KvLoadLimit::Requests(total) => {
            let n = config.connections as u64;
            Some(total / n + u64::from((c as u64) < total % n))
        }
        KvLoadLimit::Duration(_) => None,
    }
}

fn connection(
    config: &KvLoadConfig,
    c: usize,
    planned: Option<u64>,
    deadline: Option<Instant>,
) -> Tally {
    let mut tally = Tally {
        stats: new_stats(config),
        ..Tally::default()
    };
    let mut server = 0;
    let mut link = match Link::open(config, &config.servers[server]) {
        Ok(link) => link,
        Err(e) => {
            tally.failed = planned.unwrap_or(0);
            tally.error = Some(e);
            return tally;
        }
    };
    tally.connected = true;
    let stride = config.connections as u64;
    let mut left = planned.unwrap_or(u64::MAX);
    let mut j: u64 = 0;
    let mut batch = Vec::with_capacity(config.depth);
    let mut answers = Vec::with_capacity(config.depth);
    while left > 0 && deadline.is_none_or(|d| Instant::now() < d) {
        let n = left.min(config.depth as u64);
        batch.clear();
        for _ in 0..n {
            let number = j * stride + c as u64;
            j += 1;
            batch.push(Request {
                index: number % config.keys,
                read: is_read(number, config.read_percent),
            });
        }
        left -= n;
        let started = Instant::now();
        let mut redirects = 0;
        while !batch.is_empty() {
            if let Err(e) = link.exchange(&batch, &mut answers) {
                tally.failed += batch.len() as u64 + left.min(planned.unwrap_or(0));
                tally.error.get_or_insert(e);
                return tally;
            }
            let mut again = Vec::new();
            let mut redirect_to = None;
            for (request, (answer, at)) in batch.iter().zip(answers.drain(..)) {
                match answer {
                    Answer::Ok | Answer::Miss => {
                        tally.stats.record(at.saturating_duration_since(started));
                        tally.ok += 1;
                        if request.read {
                            tally.reads += 1;
                            tally.misses += u64::from(answer == Answer::Miss);
                        } else {
                            tally.writes += 1;
                        }
                    }
                    Answer::NotPrimary(to) => {
                        again.push(*request);
                        redirect_to = Some(to);
                    }
                    Answer::Failed(why) => {
                        tally.failed += 1;
                        tally.error.get_or_insert(why);
                    }
                }
            }
            batch = again;
            if let Some(to) = redirect_to {
                redirects += 1;
                tally.redirects += batch.len() as u64;
                let next = if to.is_empty() {
                    server = (server + 1) % config.servers.len();
                    config.servers[server].clone()
                } else {
                    to
                };
                let opened = if redirects > MAX_REDIRECTS {
                    Err(format!("still no primary after {MAX_REDIRECTS} redirects"))
                } else {
                    Link::open(config, &next)
                };
                match opened {
                    Ok(l) => link = l,
                    Err(e) => {
                        tally.failed += batch.len() as u64 + left.min(planned.unwrap_or(0));
                        tally.error.get_or_insert(e);
                        return tally;
                    }
                }
            }
        }
    }
    link.close();
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_index() {
        assert_eq!(value_of(42, 16), b"0000000042......");
        assert_eq!(value_of(12_345, 3), b"000");
        assert_eq!(value_of(7, 0), b"");
        assert!(value_matches(&value_of(99, 100), 99, 100));
        assert!(!value_matches(&value_of(98, 100), 99, 100));
        assert!(!value_matches(&value_of(99, 99), 99, 100));
        let mut v = value_of(99, 100);
        v[50] = b'x';
        assert!(!value_matches(&v, 99, 100));
        assert_eq!(key_of(3), b"key0000000003");
    }

    #[test]
    fn read_share_is_about_right() {
        let reads = (0..10_000).filter(|&n| is_read(n, 30)).count();
        assert!((2_700..3_300).contains(&reads), "{reads}");
        assert!((0..1000).all(|n| is_read(n, 100)));
        assert!(!(0..1000).any(|n| is_read(n, 0)));
    }

    #[test]
    fn requests_are_split_over_connections() {
        let config = KvLoadConfig {
            servers: vec!["h:1".into()],
            value_size: 16,
            keys: 10,
            read_percent: 0,
            depth: 1,
            connections: 3,
            limit: KvLoadLimit::Requests(10),
            preload: false,
            percentiles: false,
            timeout: None,
            protocol: KvProtocol::V2,
        };
        let split: Vec<_> = (0..3).map(|c| planned(&config, c).unwrap()).collect();
        assert_eq!(split, [4, 3, 3]);
    }
}

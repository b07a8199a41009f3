//! The load generator behind the `client` binary (the original's
//! `ClientThread`): one thread and one session per customer, each doing the
//! requests of its [`Mode`], with latencies merged at the end.
//!
//! Departures from the original: a failed request is counted rather than
//! ignored, so that the binary can report it and exit non-zero; and with
//! [`LoadConfig::percentiles`] each thread also fills a latency histogram,
//! allocated before its first request, for p50 and p99.

use std::thread;
use std::time::{Duration, Instant};

use super::{Client, ClientError, Stats};
use crate::wire::CustomerRecord;

/// Stack size of a customer thread: it holds one session and a few frames.
const CUSTOMER_STACK: usize = 128 * 1024;

/// What each customer thread does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 1: customer `c` writes orders `0..orders` for itself.
    Write,
    /// 2: customer `c` reads its own record `orders` times.
    Read,
    /// 3: every thread reads customers `0..orders` and reports each record.
    Scan,
}

/// A load run: the client's command line.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Number of customer threads (customer ids `0..customers`).
    pub customers: i32,
    /// Requests per customer, or customers to scan.
    pub orders: i32,
    /// What to do.
    pub mode: Mode,
    /// I/O timeout; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Keep a latency histogram so that the stats line ends with p50 and p99.
    pub percentiles: bool,
}

impl LoadConfig {
    /// Empty statistics of the kind this run keeps.
    fn new_stats(&self) -> Stats {
        if self.percentiles {
            Stats::with_percentiles()
        } else {
            Stats::default()
        }
    }
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Latencies of the requests that succeeded.
    pub stats: Stats,
    /// From before the first connection to after the last thread ended.
    pub wall: Duration,
    /// Requests the run meant to make.
    pub planned: u64,
    /// Requests not completed: failed, or never sent after a failure.
    pub failed: u64,
    /// Customers that could not open a session.
    pub unreachable: u32,
    /// The first error seen, for the message.
    pub first_error: Option<ClientError>,
}

#[derive(Default)]
struct Outcome {
    stats: Stats,
    failed: u64,
    connected: bool,
    error: Option<ClientError>,
}

/// Runs the load; in scan mode `on_record` gets every record read (it is
/// called from many threads at once).
pub fn run(config: &LoadConfig, on_record: &(dyn Fn(&CustomerRecord) + Sync)) -> LoadReport {
    let start = Instant::now();
    let outcomes: Vec<Outcome> = thread::scope(|scope| {
        let handles: Vec<_> = (0..config.customers)
            .map(|customer_id| {
                thread::Builder::new()
                    .name(format!("customer-{customer_id}"))
                    .stack_size(CUSTOMER_STACK)
                    .spawn_scoped(scope, move || customer(config, customer_id, on_record))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(handle) => handle.join().unwrap_or_default(),
                Err(_) => Outcome {
                    failed: config.orders as u64,
                    ..Outcome::default()
                },
            })
            .collect()
    });
    let mut report = LoadReport {
        wall: start.elapsed(),
        planned: config.customers as u64 * config.orders as u64,
        stats: config.new_stats(),
        ..LoadReport::default()
    };
    for outcome in outcomes {
        report.stats.merge(&outcome.stats);
        report.failed += outcome.failed;
        report.unreachable += u32::from(!outcome.connected);
        if report.first_error.is_none() {
            report.first_error = outcome.error;
        }
    }
    report
}

fn customer(
    config: &LoadConfig,
    customer_id: i32,
    on_record: &(dyn Fn(&CustomerRecord) + Sync),
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut client = match Client::connect(&config.host, config.port, config.timeout) {
        Ok(client) => client,
        Err(e) => {
            outcome.failed = config.orders as u64;
            outcome.error = Some(e);
            return outcome;
        }
    };
    outcome.connected = true;
    outcome.stats = config.new_stats();
    for i in 0..config.orders {
        let started = Instant::now();
        let result = match config.mode {
            Mode::Write => client.order(customer_id, i).map(drop),
            Mode::Read => client.read(customer_id).map(drop),
            Mode::Scan => client.read(i).map(|record| on_record(&record)),
        };
        if let Err(e) = result {
            outcome.failed = (config.orders - i) as u64;
            outcome.error = Some(e);
            return outcome;
        }
        outcome.stats.record(started.elapsed());
    }
    client.close();
    outcome
}

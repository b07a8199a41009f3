//! The load generator behind the `client` binary (the original's
//! `ClientThread`): one thread and one session per customer, each doing the
//! requests of its [`Mode`], with latencies merged at the end.
//!
//! Departures from the original: a failed request is counted rather than
//! ignored, so that the binary can report it and exit non-zero; with
//! [`LoadConfig::percentiles`] each thread also fills a latency histogram,
//! allocated before its first request, for p50 and p99; a refused or reset
//! connect is retried with backoff for up to [`CONNECT_BUDGET`] (or the
//! timeout, if shorter), so that a burst of connects that overflows a
//! server's listen queue is not counted as failed; and with
//! [`Target::Cluster`] each customer talks to a [`Cluster`], which rides
//! through failovers.

use std::thread;
use std::time::{Duration, Instant};

use super::{Client, ClientError, Cluster, ClusterOptions, Stats};
use crate::wire::CustomerRecord;

/// Longest time a customer retries a refused or reset connect.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(3);

/// Whom the customers talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server, as the original client does.
    Server {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A cluster, through [`Cluster`]: `host:port` of each server.
    Cluster(Vec<String>),
}

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
    /// 4: as 1, but each order is a custom order (docs/protocol.md §2.5),
    /// done by one of the server's experts; one answered busy or no
    /// experts counts as failed.
    Custom,
}

/// A load run: the client's command line.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// The server or servers.
    pub target: Target,
    /// Number of customer threads (customer ids `0..customers`).
    pub customers: i32,
    /// Requests per customer, or customers to scan.
    pub orders: i32,
    /// What to do.
    pub mode: Mode,
    /// I/O timeout; `None` waits forever. With a cluster target: the
    /// deadline of each request, retries included.
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

    /// The cluster client's options for this run's timeout.
    pub fn cluster_options(&self) -> ClusterOptions {
        let deadline = self.timeout.unwrap_or(Duration::from_secs(86_400));
        ClusterOptions {
            deadline,
            attempt_timeout: ClusterOptions::default().attempt_timeout.min(deadline),
        }
    }
}

/// One customer's connection: a session with one server or a cluster
/// client.
pub enum Session {
    /// A session with one server.
    Server(Client),
    /// A cluster client.
    Cluster(Cluster),
}

impl Session {
    /// Opens the session `config` asks for.
    ///
    /// # Errors
    /// When no session could be opened.
    pub fn open(config: &LoadConfig) -> Result<Session, ClientError> {
        match &config.target {
            Target::Server { host, port } => {
                let budget = config
                    .timeout
                    .map_or(CONNECT_BUDGET, |t| t.min(CONNECT_BUDGET));
                Client::connect_retrying(host, *port, config.timeout, budget).map(Session::Server)
            }
            Target::Cluster(servers) => {
                Cluster::connect(servers.clone(), config.cluster_options()).map(Session::Cluster)
            }
        }
    }

    /// Places an order.
    ///
    /// # Errors
    /// As [`Client::order`] or [`Cluster::order`].
    pub fn order(&mut self, customer_id: i32, order_number: i32) -> Result<(), ClientError> {
        match self {
            Session::Server(c) => c.order(customer_id, order_number).map(drop),
            Session::Cluster(c) => c.order(customer_id, order_number).map(drop),
        }
    }

    /// Places a custom order; anything but done is an error.
    ///
    /// # Errors
    /// As [`Client::custom`], or [`ClientError::Protocol`] naming the
    /// status when the order was not done.
    pub fn custom(&mut self, customer_id: i32, order_number: i32) -> Result<(), ClientError> {
        let (status, server) = match self {
            Session::Server(c) => (c.custom(customer_id, order_number)?, c.server().to_owned()),
            Session::Cluster(c) => (
                c.custom(customer_id, order_number)?,
                c.server().unwrap_or_default().to_owned(),
            ),
        };
        match status {
            crate::protocol::session::CustomStatus::Done => Ok(()),
            other => Err(ClientError::Protocol {
                server,
                detail: format!(
                    "custom order {order_number} of customer {customer_id} answered {other:?}"
                ),
            }),
        }
    }

    /// Reads a record.
    ///
    /// # Errors
    /// As [`Client::read`] or [`Cluster::read`].
    pub fn read(&mut self, customer_id: i32) -> Result<CustomerRecord, ClientError> {
        match self {
            Session::Server(c) => c.read(customer_id),
            Session::Cluster(c) => c.read(customer_id),
        }
    }

    /// Failovers so far (always 0 for one server).
    pub fn failovers(&self) -> u64 {
        match self {
            Session::Server(_) => 0,
            Session::Cluster(c) => c.failovers(),
        }
    }

    /// Ends the session politely.
    pub fn close(self) {
        match self {
            Session::Server(c) => c.close(),
            Session::Cluster(c) => c.close(),
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
    /// Sessions given up for another server (cluster target only).
    pub failovers: u64,
}

#[derive(Default)]
struct Outcome {
    stats: Stats,
    failed: u64,
    connected: bool,
    error: Option<ClientError>,
    failovers: u64,
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
        report.failovers += outcome.failovers;
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
    let mut client = match Session::open(config) {
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
            Mode::Write => client.order(customer_id, i),
            Mode::Custom => client.custom(customer_id, i),
            Mode::Read => client.read(customer_id).map(drop),
            Mode::Scan => client.read(i).map(|record| on_record(&record)),
        };
        if let Err(e) = result {
            outcome.failed = (config.orders - i) as u64;
            outcome.error = Some(e);
            outcome.failovers = client.failovers();
            return outcome;
        }
        outcome.stats.record(started.elapsed());
    }
    outcome.failovers = client.failovers();
    client.close();
    outcome
}

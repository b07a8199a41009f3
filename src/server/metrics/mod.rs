//! The server's counters and histograms, and `server --metrics ADDR`: a
//! blocking thread answering `GET /metrics` in the Prometheus text format
//! (version 0.0.4).
//!
//! The hooks are called on the request path by sessions, the admin, the
//! replicators and the durable log; each is one relaxed atomic add (a
//! histogram: two), with no lock and no allocation. Gauges that describe
//! state (role, epoch, indexes, each peer's lag) are read from the replica
//! and the replication progress when scraped, not maintained per request.
//!
//! The exposition text is written by hand (`crate::exposition`, shared with the balancer): the format is a few lines per
//! metric, and the crates that write it keep their own registries whose
//! histograms lock on every observation.
//!
//! Files: this one holds the counters, histograms and the [`Metrics`] of
//! a server; [`text`] writes the exposition; [`endpoint`] serves it.

mod endpoint;
mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use endpoint::Endpoint;

/// A count that only goes up.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one until the returned guard drops.
    pub(crate) fn hold(&self) -> GaugeHold<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeHold(self)
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], given back when dropped.
pub(crate) struct GaugeHold<'a>(&'a Gauge);

impl Drop for GaugeHold<'_> {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Latency bucket bounds in nanoseconds: 50 µs to 1 s.
const LATENCY_BOUNDS_NS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Batch-size bucket bounds (writes per batch, up to the admin's 1024).
const BATCH_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram over fixed buckets; `divisor` turns an observed unit into
/// the exposed one (nanoseconds into seconds).
pub(crate) struct Histogram {
    bounds: &'static [u64],
    /// One count per bound, then the overflow (not cumulative).
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    divisor: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::latency()
    }
}

impl Histogram {
    fn new(bounds: &'static [u64], divisor: f64) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            divisor,
        }
    }

    /// A histogram of durations, exposed in seconds.
    pub(crate) fn latency() -> Self {
        Histogram::new(&LATENCY_BOUNDS_NS, 1e9)
    }

    fn batch_sizes() -> Self {
        Histogram::new(&BATCH_BOUNDS, 1.0)
    }

    /// Counts one observation of `value` (in the histogram's unit).
    pub(crate) fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts one duration.
    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// Kinds of errors counted in `factory_errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A client sent something that is not a request.
    ClientProtocol,
    /// A client began a request and did not finish it in time.
    ClientStalled,
    /// A client did not take its reply in time.
    ClientReplyTimeout,
    /// Another socket error on a client session.
    ClientIo,
    /// A write could not be placed (no safe primary, storage, stopping).
    WriteRefused,
    /// Forwarding a request to the primary failed (it is retried).
    ForwardFailed,
    /// A read could not be answered up to date in time (G6): closed.
    ReadRefused,
    /// A connection sent no valid handshake.
    Handshake,
    /// A connection beyond --max-connections was closed at once.
    ConnectionLimit,
    /// The primary lost its link to a backup.
    PeerLost,
    /// A backup refused or broke off a replication stream.
    ReplicationStream,
    /// The durable log could not be written or synced.
    Storage,
}

impl Fault {
    const ALL: [Fault; 12] = [
        Fault::ClientProtocol,
        Fault::ClientStalled,
        Fault::ClientReplyTimeout,
        Fault::ClientIo,
        Fault::WriteRefused,
        Fault::ForwardFailed,
        Fault::ReadRefused,
        Fault::Handshake,
        Fault::ConnectionLimit,
        Fault::PeerLost,
        Fault::ReplicationStream,
        Fault::Storage,
    ];

    fn label(self) -> &'static str {
        match self {
            Fault::ClientProtocol => "client_protocol",
            Fault::ClientStalled => "client_stalled",
            Fault::ClientReplyTimeout => "client_reply_timeout",
            Fault::ClientIo => "client_io",
            Fault::WriteRefused => "write_refused",
            Fault::ForwardFailed => "forward_failed",
            Fault::ReadRefused => "read_refused",
            Fault::Handshake => "handshake",
            Fault::ConnectionLimit => "connection_limit",
            Fault::PeerLost => "peer_lost",
            Fault::ReplicationStream => "replication_stream",
            Fault::Storage => "storage",
        }
    }
}

/// Outcomes of a takeover attempt, in `factory_elections_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Election {
    /// This server became primary.
    Won,
    /// Another server holds a longer log and is left to take over.
    Deferred,
    /// A primary exists; this server follows it.
    Followed,
    /// A higher epoch was seen; no primary yet.
    StoodBack,
    /// Taking over could lose acknowledged writes; writes are refused.
    Refused,
}

impl Election {
    const ALL: [Election; 5] = [
        Election::Won,
        Election::Deferred,
        Election::Followed,
        Election::StoodBack,
        Election::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Election::Won => "won",
            Election::Deferred => "deferred",
            Election::Followed => "followed",
            Election::StoodBack => "stood_back",
            Election::Refused => "refused",
        }
    }
}

/// Every counter and histogram of one server.
pub(crate) struct Metrics {
    /// Client writes acknowledged by this server (committed here or by
    /// the primary it forwarded them to).
    pub(crate) writes: Counter,
    /// Client reads answered.
    pub(crate) reads: Counter,
    /// Writes forwarded to the primary and acknowledged by it.
    pub(crate) forwarded_writes: Counter,
    /// Reads forwarded to the primary and answered by it.
    pub(crate) forwarded_reads: Counter,
    errors: [Counter; Fault::ALL.len()],
    elections: [Counter; Election::ALL.len()],
    /// Times this server gave up the primary role to a newer epoch.
    pub(crate) step_downs: Counter,
    /// Connections accepted.
    pub(crate) accepted: Counter,
    /// Connections open now (client sessions, streams, handshakes).
    pub(crate) connections: Gauge,
    /// Writes per batch the primary committed.
    pub(crate) batch_size: Histogram,
    /// How long the primary waited for its in-sync backups to hold a batch.
    pub(crate) replication_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            writes: Counter::default(),
            reads: Counter::default(),
            forwarded_writes: Counter::default(),
            forwarded_reads: Counter::default(),
            errors: Default::default(),
            elections: Default::default(),
            step_downs: Counter::default(),
            accepted: Counter::default(),
            connections: Gauge::default(),
            batch_size: Histogram::batch_sizes(),
            replication_wait: Histogram::latency(),
        }
    }
}

impl Metrics {
    /// Counts one error of `kind`.
    pub(crate) fn error(&self, kind: Fault) {
        self.errors[kind as usize].inc();
    }

    /// Counts one takeover attempt that ended in `outcome`.
    pub(crate) fn election(&self, outcome: Election) {
        self.elections[outcome as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_holds_are_given_back() {
        let g = Gauge::default();
        let a = g.hold();
        let b = g.hold();
        assert_eq!(g.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(g.get(), 0);
    }
}

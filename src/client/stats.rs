//! Latency statistics in the shape of the original's `ClientTimer`: count,
//! sum, min and max of per-request latencies, merged across threads, and the
//! wall time of the whole run for throughput.

use std::fmt;
use std::time::Duration;

/// Per-request latency figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Requests timed.
    pub count: u64,
    sum_us: f64,
    min_us: f64,
    max_us: f64,
}

impl Stats {
    /// Records one request's latency.
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_secs_f64() * 1e6;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        if us > self.max_us {
            self.max_us = us;
        }
        self.sum_us += us;
        self.count += 1;
    }

    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &Stats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min_us < self.min_us {
            self.min_us = other.min_us;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
        self.count += other.count;
    }

    /// Mean latency in µs (0 with no requests).
    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us / self.count as f64
        }
    }

    /// The original's last output line: mean, min, max (µs) and throughput
    /// (requests per second over `wall`), tab-separated, three decimals.
    pub fn line(&self, wall: Duration) -> StatsLine {
        let secs = wall.as_secs_f64();
        StatsLine {
            mean: self.mean_us(),
            min: self.min_us,
            max: self.max_us,
            throughput: if secs > 0.0 {
                self.count as f64 / secs
            } else {
                0.0
            },
        }
    }
}

/// The four figures the client prints last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsLine {
    /// Mean latency, µs.
    pub mean: f64,
    /// Minimum latency, µs.
    pub min: f64,
    /// Maximum latency, µs.
    pub max: f64,
    /// Requests per second.
    pub throughput: f64,
}

impl fmt::Display for StatsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3}\t{:.3}\t{:.3}\t{:.3}",
            self.mean, self.min, self.max, self.throughput
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_merges() {
        let mut a = Stats::default();
        a.record(Duration::from_micros(10));
        a.record(Duration::from_micros(30));
        let mut b = Stats::default();
        b.record(Duration::from_micros(5));
        a.merge(&b);
        a.merge(&Stats::default());
        assert_eq!(a.count, 3);
        let line = a.line(Duration::from_millis(1));
        assert_eq!(line.to_string(), "15.000\t5.000\t30.000\t3000.000");
    }

    #[test]
    fn empty_stats_print_zeros() {
        let line = Stats::default().line(Duration::ZERO);
        assert_eq!(line.to_string(), "0.000\t0.000\t0.000\t0.000");
    }
}

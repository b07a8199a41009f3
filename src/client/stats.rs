//! Latency statistics in the shape of the original's `ClientTimer`: count,
//! sum, min and max of per-request latencies, merged across threads, and the
//! wall time of the whole run for throughput.
//!
//! Beyond the original, a [`Stats`] made by [`Stats::with_percentiles`] also
//! fills a [`Histogram`] so that the stats line can end with p50 and p99.
//! The histogram is allocated once per thread, before the first request, so
//! recording stays allocation-free; plain [`Stats::default`] has none and
//! costs exactly what the original's timer did.

use std::fmt;
use std::time::Duration;

/// Per-request latency figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Requests timed.
    pub count: u64,
    sum_us: f64,
    min_us: f64,
    max_us: f64,
    histogram: Option<Box<Histogram>>,
}

impl Stats {
    /// Empty figures that also keep a latency histogram, for p50 and p99.
    pub fn with_percentiles() -> Self {
        Stats {
            histogram: Some(Box::default()),
            ..Stats::default()
        }
    }

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
        if let Some(histogram) = &mut self.histogram {
            histogram.record(latency);
        }
    }

    /// Adds another thread's figures (and its histogram, if both keep one).
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
        if let (Some(mine), Some(theirs)) = (&mut self.histogram, &other.histogram) {
            mine.merge(theirs);
        }
    }

    /// Mean latency in µs (0 with no requests).
    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us / self.count as f64
        }
    }

    /// The latency histogram, when these figures keep one.
    pub fn histogram(&self) -> Option<&Histogram> {
        self.histogram.as_deref()
    }

    /// The original's last output line: mean, min, max (µs) and throughput
    /// (requests per second over `wall`), tab-separated, three decimals;
    /// then p50 and p99 (µs) when these figures keep a histogram.
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
            percentiles: self.histogram.as_ref().map(|h| Percentiles {
                p50: h.percentile_us(50.0),
                p99: h.percentile_us(99.0),
            }),
        }
    }
}

/// The figures the client prints last.
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
    /// Median and 99th percentile, when asked for (`--percentiles`).
    pub percentiles: Option<Percentiles>,
}

/// Latency percentiles, µs, to the histogram's precision (1/128).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// Median latency, µs.
    pub p50: f64,
    /// 99th percentile latency, µs.
    pub p99: f64,
}

impl fmt::Display for StatsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3}\t{:.3}\t{:.3}\t{:.3}",
            self.mean, self.min, self.max, self.throughput
        )?;
        if let Some(p) = self.percentiles {
            write!(f, "\t{:.3}\t{:.3}", p.p50, p.p99)?;
        }
        Ok(())
    }
}

/// Sub-buckets per power of two are `2^SUB_BITS / 2` (the first range has
/// `2^SUB_BITS` one-nanosecond buckets): a bucket is at most 1/128 of its
/// values wide.
const SUB_BITS: u32 = 8;
const SUB_COUNT: u64 = 1 << SUB_BITS;
const HALF_SUB: u64 = SUB_COUNT / 2;
/// Latencies are kept in nanoseconds up to 2^MAX_BITS ns (about 18
/// minutes); anything longer counts as that.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = (SUB_COUNT + (MAX_BITS - SUB_BITS) as u64 * HALF_SUB) as usize;

/// A log-linear latency histogram in the manner of HdrHistogram: exact
/// nanosecond buckets below 256 ns, then 128 equal buckets per power of
/// two, so every value is known to within 1/128 (0.8 %). Fixed size
/// (about 34 KiB), allocated once; recording is an index computation and an
/// increment.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency (µs, middle of its bucket) below or at which `percent`
    /// of the counted latencies lie; 0 when nothing was counted.
    pub fn percentile_us(&self, percent: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((percent / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_middle_ns(index) / 1e3;
            }
        }
        bucket_middle_ns(BUCKETS - 1) / 1e3
    }
}

/// The bucket of a latency of `ns` nanoseconds.
fn bucket_of(ns: u64) -> usize {
    let ns = ns.min((1 << MAX_BITS) - 1);
    if ns < SUB_COUNT {
        return ns as usize;
    }
    // ns lies in [2^magnitude, 2^(magnitude+1)), magnitude >= SUB_BITS;
    // buckets there are 2^shift wide.
    let magnitude = 63 - ns.leading_zeros();
    let shift = magnitude - SUB_BITS + 1;
    let sub = (ns >> shift) - HALF_SUB;
    (SUB_COUNT + u64::from(shift - 1) * HALF_SUB + sub) as usize
}

/// The middle of bucket `index`, in nanoseconds.
fn bucket_middle_ns(index: usize) -> f64 {
    let index = index as u64;
    if index < SUB_COUNT {
        return index as f64;
    }
    let shift = (index - SUB_COUNT) / HALF_SUB + 1;
    let sub = (index - SUB_COUNT) % HALF_SUB + HALF_SUB;
    let low = sub << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
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

    #[test]
    fn percentiles_add_two_fields() {
        let mut a = Stats::with_percentiles();
        let mut b = Stats::with_percentiles();
        // 1..=100 µs over two threads: p50 is 50 µs, p99 is 99 µs.
        for us in 1..=100 {
            let target = if us % 2 == 0 { &mut a } else { &mut b };
            target.record(Duration::from_micros(us));
        }
        a.merge(&b);
        let line = a.line(Duration::from_millis(1)).to_string();
        let fields: Vec<f64> = line.split('\t').map(|f| f.parse().unwrap()).collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(&fields[..4], &[50.5, 1.0, 100.0, 100_000.0]);
        assert!((fields[4] - 50.0).abs() <= 50.0 / 128.0, "{line}");
        assert!((fields[5] - 99.0).abs() <= 99.0 / 128.0, "{line}");
        assert_eq!(
            Stats::with_percentiles().line(Duration::ZERO).to_string(),
            "0.000\t0.000\t0.000\t0.000\t0.000\t0.000"
        );
    }

    #[test]
    fn buckets_are_ordered_and_within_1_in_256() {
        let mut values: Vec<u64> = (0..1000).collect();
        for bits in 10..MAX_BITS {
            values.extend([(1 << bits) - 1, 1 << bits, (1 << bits) + 1, 3 << (bits - 1)]);
        }
        values.sort_unstable();
        let mut last = 0;
        for ns in values {
            let bucket = bucket_of(ns);
            assert!(bucket >= last, "buckets out of order at {ns} ns");
            last = bucket;
            let middle = bucket_middle_ns(bucket);
            assert!(
                (middle - ns as f64).abs() <= ns as f64 / 256.0,
                "{ns} ns -> {middle}"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentile_of_one_value_and_of_none() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile_us(99.0), 0.0);
        h.record(Duration::from_micros(40));
        assert_eq!(h.count(), 1);
        let p = h.percentile_us(50.0);
        assert!((p - 40.0).abs() <= 40.0 / 128.0, "{p}");
    }
}

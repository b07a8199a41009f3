//! Criterion benchmarks: one entry point, one suite per concern, in the
//! manner of tikv/raft-rs `benches/benches.rs`.
//!
//! - [`suites::wire`]: encode and decode of every v1 frame.
//! - [`suites::cluster`]: write and read round trips through in-process
//!   loopback clusters of 1, 2 and 3 servers, and writes from 8 concurrent
//!   clients (throughput).
//!
//! `cargo bench` (or `make bench`) runs all of them in about a minute; pass
//! a filter to run a few, e.g. `cargo bench --bench benches -- cluster/write`.
//! Timings are short (0.5 s warm-up, 2 s measurement, 20 samples) so the
//! whole suite fits a 2-core machine; on such a machine latency-bound
//! results are bimodal (see `docs/performance.md`), so compare runs made
//! back to back, or pin with `taskset -c 0 cargo bench`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod suites;

/// Short timings for every suite.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = suites::wire::bench_wire, suites::cluster::bench_cluster
}
criterion_main!(benches);

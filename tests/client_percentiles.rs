//! `client --percentiles`: the stats line gains p50 and p99 (µs) as fields
//! five and six; without the flag it keeps the original's four fields.

mod common;

use std::process::Command;

use common::in_process_cluster;

/// Runs the client binary against `port`; returns the last stdout line's
/// fields as numbers.
fn stats_fields(port: u16, mode: &str, extra: &[&str]) -> Vec<f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            "4",
            "50",
            mode,
            "--timeout",
            "10",
        ])
        .args(extra)
        .output()
        .expect("run client");
    assert!(out.status.success(), "client failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a stats line");
    last.split('\t')
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("field {f:?} of {last:?}"))
        })
        .collect()
}

#[test]
fn default_stats_line_has_four_fields() {
    let servers = in_process_cluster(2);
    let port = servers[0].local_addr().port();
    assert_eq!(stats_fields(port, "1", &[]).len(), 4);
    assert_eq!(stats_fields(port, "2", &[]).len(), 4);
    servers.into_iter().for_each(|s| s.stop());
}

#[test]
fn percentiles_lie_between_min_and_max() {
    let servers = in_process_cluster(2);
    let port = servers[0].local_addr().port();
    for mode in ["1", "2"] {
        let f = stats_fields(port, mode, &["--percentiles"]);
        assert_eq!(f.len(), 6, "mode {mode}: {f:?}");
        let (min, max, p50, p99) = (f[1], f[2], f[4], f[5]);
        // Percentiles are bucket middles, within 1/128 of a real latency.
        let slack = 1.0 + 1.0 / 128.0;
        assert!(
            min / slack <= p50 && p50 <= p99 && p99 <= max * slack,
            "{f:?}"
        );
    }
    servers.into_iter().for_each(|s| s.stop());
}

//! The Prometheus text exposition (format 0.0.4) of a server's
//! [`Metrics`](super::Metrics) and of the state read at scrape time (role,
//! epoch, indexes, each peer's lag). Called by the endpoint per scrape.

use std::sync::atomic::Ordering;

use super::{Election, Fault, Histogram, Metrics};
use crate::exposition::Text;
use crate::server::Shared;

/// A histogram's buckets, sum and unit, written as one family.
fn histogram(t: &mut Text, name: &str, help: &str, h: &Histogram) {
    let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let sum = h.sum.load(Ordering::Relaxed);
    t.histogram(name, help, h.bounds, &counts, sum, h.divisor);
}

/// Everything `GET /metrics` answers, as of now.
pub(super) fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut t = Text::with_capacity(8192);
    counters(&mut t, m);
    t.single(
        "factory_connections",
        "gauge",
        "Connections open now (client sessions, replication streams, handshakes).",
        m.connections.get(),
    );
    histogram(
        &mut t,
        "factory_batch_size",
        "Client writes per batch the primary committed.",
        &m.batch_size,
    );
    histogram(
        &mut t,
        "factory_fsync_seconds",
        "Time of each fsync of the durable log (with --data-dir).",
        shared.durable.fsync_histogram(),
    );
    histogram(
        &mut t,
        "factory_replication_wait_seconds",
        "Time the primary waited for its in-sync backups to acknowledge a batch.",
        &m.replication_wait,
    );
    state(&mut t, shared);
    t.into_string()
}

fn counters(t: &mut Text, m: &Metrics) {
    t.single(
        "factory_writes_total",
        "counter",
        "Client writes acknowledged by this server; one a backup forwards counts on the backup and again on the primary (see factory_forwarded_total).",
        m.writes.get(),
    );
    t.single(
        "factory_reads_total",
        "counter",
        "Client reads answered.",
        m.reads.get(),
    );
    t.family(
        "factory_forwarded_total",
        "counter",
        "Client requests forwarded to the primary and answered by it.",
    );
    t.sample(
        "factory_forwarded_total",
        "request=\"write\"",
        m.forwarded_writes.get(),
    );
    t.sample(
        "factory_forwarded_total",
        "request=\"read\"",
        m.forwarded_reads.get(),
    );
    t.family(
        "factory_errors_total",
        "counter",
        "Errors by kind (a retried forward counts each failed attempt).",
    );
    for kind in Fault::ALL {
        let labels = format!("kind=\"{}\"", kind.label());
        t.sample(
            "factory_errors_total",
            &labels,
            m.errors[kind as usize].get(),
        );
    }
    t.family(
        "factory_elections_total",
        "counter",
        "Takeover attempts of this server, by outcome.",
    );
    for outcome in Election::ALL {
        let labels = format!("outcome=\"{}\"", outcome.label());
        let n = m.elections[outcome as usize].get();
        t.sample("factory_elections_total", &labels, n);
    }
    t.single(
        "factory_step_downs_total",
        "counter",
        "Times this server stopped being primary because another took over.",
        m.step_downs.get(),
    );
    t.single(
        "factory_connections_accepted_total",
        "counter",
        "Connections accepted.",
        m.accepted.get(),
    );
}

/// Gauges read from the replica and the replication progress.
fn state(t: &mut Text, shared: &Shared) {
    let (is_primary, primary, epoch, last, committed, trusted) = {
        let r = shared.replica();
        let primary = r.primary_id();
        (
            r.is_primary(),
            primary,
            r.epoch(),
            r.last_index(),
            r.committed_index(),
            r.trusted(),
        )
    };
    let role = if is_primary {
        "primary"
    } else if primary != crate::state::NO_PRIMARY {
        "backup"
    } else {
        "none"
    };
    t.family(
        "factory_role",
        "gauge",
        "1 for this server's role: primary, backup (following a primary) or none (no primary known).",
    );
    for r in ["primary", "backup", "none"] {
        t.sample(
            "factory_role",
            &format!("role=\"{r}\""),
            u8::from(r == role),
        );
    }
    t.single(
        "factory_primary_id",
        "gauge",
        "Factory id of the primary this server follows (its own when primary), -1 if none.",
        primary,
    );
    t.single(
        "factory_epoch",
        "gauge",
        "The newest epoch this server has seen, as its log lines print it (higher at each takeover).",
        epoch >> 16,
    );
    t.single(
        "factory_trusted",
        "gauge",
        "1 while this server is known to hold every committed entry.",
        u8::from(trusted),
    );
    t.single(
        "factory_last_index",
        "gauge",
        "Index of the last log entry (-1: empty).",
        last,
    );
    t.single(
        "factory_committed_index",
        "gauge",
        "Index of the last committed entry (-1: none).",
        committed,
    );
    peers(t, shared);
}

fn peers(t: &mut Text, shared: &Shared) {
    let progress = shared.repl.lock();
    let primary = progress.epoch != 0;
    t.family(
        "factory_peer_up",
        "gauge",
        "On the primary: 1 while the replication link to the peer is live.",
    );
    if primary {
        for p in &progress.peers {
            t.sample("factory_peer_up", &peer_label(p.id), u8::from(p.live));
        }
    }
    t.family(
        "factory_peer_lag_entries",
        "gauge",
        "On the primary: log entries the peer has not yet acknowledged.",
    );
    if primary {
        for p in &progress.peers {
            let lag = (i64::from(progress.last_index) - i64::from(p.matched)).max(0);
            t.sample("factory_peer_lag_entries", &peer_label(p.id), lag);
        }
    }
}

fn peer_label(id: i32) -> String {
    format!("peer=\"{id}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let h = Histogram::batch_sizes();
        for v in [1, 1, 3, 1024, 5000] {
            h.observe(v);
        }
        let mut t = Text::default();
        histogram(&mut t, "b", "help", &h);
        let text = t.into_string();
        assert!(text.contains("b_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("b_bucket{le=\"4\"} 3\n"), "{text}");
        assert!(text.contains("b_bucket{le=\"1024\"} 4\n"), "{text}");
        assert!(text.contains("b_bucket{le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("b_sum 6029\n"), "{text}");
        assert!(text.contains("b_count 5\n"), "{text}");
    }

    #[test]
    fn latencies_are_exposed_in_seconds() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(80));
        let mut t = Text::default();
        histogram(&mut t, "l", "help", &h);
        let text = t.into_string();
        assert!(text.contains("l_bucket{le=\"0.00005\"} 0\n"), "{text}");
        assert!(text.contains("l_bucket{le=\"0.0001\"} 1\n"), "{text}");
        assert!(text.contains("l_sum 0.00008\n"), "{text}");
    }
}

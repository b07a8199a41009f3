//! How the `client` binary prints results besides the original's
//! tab-separated line: the labelled stats line (`--human`), JSON
//! (`--json`: hand-written, since every value is a number, a boolean or a
//! short string), and the cluster status table. Pure functions from
//! results to text; the binary writes the text.

use std::fmt::Write as _;
use std::time::Duration;

use super::status::ServerStatus;
use super::StatsLine;
use crate::wire::status::{BalancerView, StatusReport};
use crate::wire::{CustomerRecord, Epoch};

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a load run did, beside its latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests not completed.
    pub failed: u64,
    /// Sessions given up for another server (cluster client).
    pub failovers: u64,
}

/// The stats line as one JSON object.
pub fn stats_json(line: &StatsLine, counts: RunCounts, wall: Duration) -> String {
    let mut out = format!(
        "{{\"requests\":{},\"failed\":{},\"failovers\":{},\"wall_s\":{:.6},\"mean_us\":{:.3},\"min_us\":{:.3},\"max_us\":{:.3},\"throughput_ops\":{:.3}",
        counts.ok,
        counts.failed,
        counts.failovers,
        wall.as_secs_f64(),
        line.mean,
        line.min,
        line.max,
        line.throughput
    );
    if let Some(p) = line.percentiles {
        let _ = write!(out, ",\"p50_us\":{:.3},\"p99_us\":{:.3}", p.p50, p.p99);
    }
    out.push('}');
    out
}

/// The stats line with labels and units.
pub fn stats_human(line: &StatsLine, counts: RunCounts) -> String {
    let mut out = format!(
        "requests {}  failed {}  mean {:.3} us  min {:.3} us  max {:.3} us  throughput {:.3} ops/s",
        counts.ok, counts.failed, line.mean, line.min, line.max, line.throughput
    );
    if let Some(p) = line.percentiles {
        let _ = write!(out, "  p50 {:.3} us  p99 {:.3} us", p.p50, p.p99);
    }
    if counts.failovers > 0 {
        let _ = write!(out, "  failovers {}", counts.failovers);
    }
    out
}

/// A record as the scan and the one-shot commands print it.
pub fn record_plain(r: &CustomerRecord) -> String {
    format!("{}\t{}", r.customer_id, r.last_order)
}

/// A record as one JSON object.
pub fn record_json(r: &CustomerRecord) -> String {
    format!(
        "{{\"customer_id\":{},\"last_order\":{}}}",
        r.customer_id, r.last_order
    )
}

/// An epoch the way the servers' logs print it: its counter.
pub fn epoch_text(epoch: Epoch) -> String {
    crate::logging::epoch(epoch).to_string()
}

fn ids_text(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Each backup's lag as `id=entries` (`id=down` for a failed link).
fn lag_text(r: &StatusReport) -> String {
    if r.peers.is_empty() {
        return "-".into();
    }
    r.peers
        .iter()
        .map(|p| {
            if p.live {
                format!("{}={}", p.id, r.lag(p))
            } else {
                format!("{}=down", p.id)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn uptime_text(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

const HEADER: [&str; 12] = [
    "SERVER", "ID", "ROLE", "EPOCH", "PRIMARY", "LEASE", "IN-SYNC", "LAST", "COMMIT", "LAG",
    "CLIENTS", "UPTIME",
];

fn row(address: &str, status: &ServerStatus) -> Vec<String> {
    let Some(r) = status.report() else {
        let why = match status {
            ServerStatus::NoStatus => "no status (an original server)".to_string(),
            ServerStatus::Unreachable(e) | ServerStatus::Invalid(e) => e.clone(),
            ServerStatus::Report(_) => String::new(),
        };
        return vec![address.to_string(), "-".into(), status.state().into(), why];
    };
    let primary = if r.primary_id < 0 {
        "-".to_string()
    } else {
        r.primary_id.to_string()
    };
    if r.balancer.is_some() {
        // A balancer has no id, epoch, lease or log of its own.
        let mut cells = vec![address.to_string(), "-".into(), r.role_name().into()];
        cells.extend(["-".to_string(), primary]);
        cells.extend((0..5).map(|_| "-".to_string()));
        cells.extend([r.clients.to_string(), uptime_text(r.uptime_ms)]);
        return cells;
    }
    vec![
        address.to_string(),
        r.factory_id.to_string(),
        r.role_name().into(),
        epoch_text(r.epoch),
        primary,
        r.lease.name().into(),
        ids_text(&r.in_sync),
        r.last_index.to_string(),
        r.commit_index.to_string(),
        lag_text(r),
        r.clients.to_string(),
        uptime_text(r.uptime_ms),
    ]
}

/// One table for the whole cluster, a row per server in the order given;
/// a server without a report has its state and the reason in place of
/// the figures.
pub fn status_table(addresses: &[String], statuses: &[ServerStatus]) -> String {
    let rows: Vec<Vec<String>> = addresses
        .iter()
        .zip(statuses)
        .map(|(a, s)| row(a, s))
        .collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in rows.iter().filter(|r| r.len() == HEADER.len()) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    // Rows without a report only widen the first three columns.
    for r in rows.iter().filter(|r| r.len() != HEADER.len()) {
        for (w, cell) in widths.iter_mut().zip(r.iter().take(3)) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for (a, s) in addresses.iter().zip(statuses) {
        if let Some(b) = s.report().and_then(|r| r.balancer.as_ref()) {
            out.push_str(&balancer_line(a, b));
            out.push('\n');
        }
    }
    out
}

/// A balancer's figures, printed under the table: requests received,
/// requests each server (by id) answered, retries, failovers, the cache.
fn balancer_line(address: &str, b: &BalancerView) -> String {
    let answered: Vec<String> = b
        .servers
        .iter()
        .map(|s| format!("{}={}", s.id, s.answered))
        .collect();
    let cache = if b.cache_enabled { "on" } else { "off" };
    format!(
        "balancer {address}: requests {} answered {} retries {} failovers {} cache {cache} (capacity {}, entries {}, hits {}, misses {}, invalidations {})",
        b.requests,
        if answered.is_empty() { "-".to_string() } else { answered.join(",") },
        b.retries,
        b.failovers,
        b.cache_capacity,
        b.cache_entries,
        b.cache_hits,
        b.cache_misses,
        b.invalidations
    )
}

fn balancer_json(b: &BalancerView) -> String {
    let servers: Vec<String> = b
        .servers
        .iter()
        .map(|s| {
            format!(
                "{{\"id\":{},\"answered\":{},\"primary\":{}}}",
                s.id, s.answered, s.primary
            )
        })
        .collect();
    format!(
        "{{\"requests\":{},\"retries\":{},\"failovers\":{},\"servers\":[{}],\"cache\":{{\"enabled\":{},\"capacity\":{},\"entries\":{},\"hits\":{},\"misses\":{},\"invalidations\":{}}}}}",
        b.requests,
        b.retries,
        b.failovers,
        servers.join(","),
        b.cache_enabled,
        b.cache_capacity,
        b.cache_entries,
        b.cache_hits,
        b.cache_misses,
        b.invalidations
    )
}

fn report_json(r: &StatusReport) -> String {
    let peers: Vec<String> = r
        .peers
        .iter()
        .map(|p| {
            format!(
                "{{\"id\":{},\"matched\":{},\"lag\":{},\"live\":{},\"original\":{}}}",
                p.id,
                p.matched,
                r.lag(p),
                p.live,
                p.v1
            )
        })
        .collect();
    let in_sync: Vec<String> = r.in_sync.iter().map(i32::to_string).collect();
    let balancer = r
        .balancer
        .as_ref()
        .map(|b| format!(",\"balancer\":{}", balancer_json(b)))
        .unwrap_or_default();
    format!(
        "\"id\":{},\"role\":{},\"epoch\":{},\"epoch_text\":{},\"primary\":{},\"lease\":{},\"lease_ms\":{},\"trusted\":{},\"in_sync\":[{}],\"last_index\":{},\"commit_index\":{},\"backups\":[{}],\"clients\":{},\"uptime_ms\":{}{}",
        r.factory_id,
        json_string(r.role_name()),
        r.epoch,
        json_string(&epoch_text(r.epoch)),
        r.primary_id,
        json_string(r.lease.name()),
        r.lease_ms,
        r.trusted,
        in_sync.join(","),
        r.last_index,
        r.commit_index,
        peers.join(","),
        r.clients,
        r.uptime_ms,
        balancer
    )
}

/// The status of every server as one JSON object:
/// `{"servers":[{"address":…,"state":"ok"|"original"|"unreachable"|"invalid", …}]}`.
pub fn status_json(addresses: &[String], statuses: &[ServerStatus]) -> String {
    let servers: Vec<String> = addresses
        .iter()
        .zip(statuses)
        .map(|(a, s)| {
            let head = format!(
                "\"address\":{},\"state\":{}",
                json_string(a),
                json_string(s.state())
            );
            match s {
                ServerStatus::Report(r) => format!("{{{head},{}}}", report_json(r)),
                ServerStatus::NoStatus => format!("{{{head}}}"),
                ServerStatus::Unreachable(e) | ServerStatus::Invalid(e) => {
                    format!("{{{head},\"error\":{}}}", json_string(e))
                }
            }
        })
        .collect();
    format!("{{\"servers\":[{}]}}", servers.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::{Lease, PeerLag, Role};

    fn report() -> StatusReport {
        StatusReport {
            factory_id: 0,
            role: Role::Primary,
            epoch: 1 << 16,
            primary_id: 0,
            lease: Lease::None,
            lease_ms: 0,
            trusted: true,
            in_sync: vec![0, 1],
            last_index: 5,
            commit_index: 5,
            peers: vec![
                PeerLag {
                    id: 1,
                    matched: 5,
                    live: true,
                    v1: false,
                },
                PeerLag {
                    id: 2,
                    matched: 1,
                    live: false,
                    v1: false,
                },
            ],
            clients: 2,
            uptime_ms: 61_000,
            balancer: None,
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn the_table_has_a_row_per_server_and_keeps_going_past_failures() {
        let addresses: Vec<String> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .map(String::from)
            .to_vec();
        let statuses = [
            ServerStatus::Report(report()),
            ServerStatus::NoStatus,
            ServerStatus::Unreachable("Connection refused".into()),
        ];
        let table = status_table(&addresses, &statuses);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("SERVER"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "127.0.0.1:1",
                "0",
                "primary",
                "1",
                "0",
                "none",
                "0,1",
                "5",
                "5",
                "1=0,2=down",
                "2",
                "1m01s"
            ]
        );
        assert!(lines[2].contains("original") && lines[2].contains("no status"));
        assert!(lines[3].contains("unreachable") && lines[3].contains("refused"));
        let json = status_json(&addresses, &statuses);
        assert!(json.starts_with("{\"servers\":[{\"address\":\"127.0.0.1:1\",\"state\":\"ok\",\"id\":0,\"role\":\"primary\""), "{json}");
        assert!(
            json.contains("{\"id\":2,\"matched\":1,\"lag\":4,\"live\":false,\"original\":false}")
        );
        assert!(json.contains("{\"address\":\"127.0.0.1:2\",\"state\":\"original\"}"));
    }

    #[test]
    fn a_balancer_has_a_row_and_its_figures_under_the_table() {
        use crate::wire::status::{BalancedServer, Role};
        let servers = [(0, 7, true), (1, 3, false)].map(|(id, answered, primary)| BalancedServer {
            id,
            answered,
            primary,
        });
        let b = StatusReport {
            factory_id: -1,
            role: Role::Unknown,
            primary_id: 0,
            in_sync: vec![],
            peers: vec![],
            clients: 1,
            balancer: Some(BalancerView {
                cache_enabled: false,
                cache_capacity: 100,
                cache_entries: 0,
                cache_hits: 0,
                cache_misses: 0,
                invalidations: 0,
                requests: 10,
                retries: 2,
                failovers: 1,
                servers: servers.to_vec(),
            }),
            ..report()
        };
        let addresses = ["127.0.0.1:1", "127.0.0.1:9"].map(String::from).to_vec();
        let statuses = [ServerStatus::Report(report()), ServerStatus::Report(b)];
        let table = status_table(&addresses, &statuses);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "127.0.0.1:9",
                "-",
                "balancer",
                "-",
                "0",
                "-",
                "-",
                "-",
                "-",
                "-",
                "1",
                "1m01s"
            ]
        );
        assert_eq!(
            lines[3],
            "balancer 127.0.0.1:9: requests 10 answered 0=7,1=3 retries 2 failovers 1 cache off (capacity 100, entries 0, hits 0, misses 0, invalidations 0)"
        );
        let json = status_json(&addresses, &statuses);
        assert!(json.contains("\"role\":\"balancer\""), "{json}");
        assert!(json.contains("\"balancer\":{\"requests\":10,\"retries\":2,\"failovers\":1,\"servers\":[{\"id\":0,\"answered\":7,\"primary\":true},{\"id\":1,\"answered\":3,\"primary\":false}],\"cache\":{\"enabled\":false,"), "{json}");
    }

    #[test]
    fn stats_outputs() {
        let line = StatsLine {
            mean: 1.5,
            min: 1.0,
            max: 2.0,
            throughput: 10.0,
            percentiles: None,
        };
        let counts = RunCounts {
            ok: 4,
            failed: 0,
            failovers: 1,
        };
        assert_eq!(
            stats_human(&line, counts),
            "requests 4  failed 0  mean 1.500 us  min 1.000 us  max 2.000 us  throughput 10.000 ops/s  failovers 1"
        );
        assert_eq!(
            stats_json(&line, counts, Duration::from_millis(400)),
            "{\"requests\":4,\"failed\":0,\"failovers\":1,\"wall_s\":0.400000,\"mean_us\":1.500,\"min_us\":1.000,\"max_us\":2.000,\"throughput_ops\":10.000}"
        );
        assert_eq!(uptime_text(1500), "1.5s");
        assert_eq!(uptime_text(7_300_000), "2h01m");
    }
}

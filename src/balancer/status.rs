//! The balancer's own view, for operators: its answer to the status
//! request (`wire::status`, the balancer's section: `client --status`
//! shows it as a row of role "balancer") and its `/metrics` text
//! (`load --metrics`, written with the server's `exposition::Text`).
//! Called by `proxy` for a connection that sent the status tag, and by the
//! metrics endpoint per scrape.
//!
//! The cache's figures: whether hits are served now (a cache of
//! `CACHE_SIZE` > 0 whose commit stream is running), its capacity,
//! records held, hits, misses and invalidations, and the times its commit
//! stream started (metrics only).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;

use super::proxy::Shared;
use crate::exposition::{label_value, Text};
use crate::state::NO_PRIMARY;
use crate::wire::status::{BalancedServer, BalancerView, Lease, Role, StatusReport};

/// Sends the balancer's report to `stream` (which just sent the status tag).
pub(super) fn send(shared: &Shared, stream: &mut TcpStream, peer: SocketAddr) {
    let mut out = Vec::with_capacity(512);
    report(shared).encode(&mut out);
    match stream.write_all(&out) {
        Ok(()) => log::debug!("balancer: {peer}: sent its status"),
        Err(e) => log::debug!("balancer: {peer}: gone before taking the status ({e})"),
    }
}

/// The counters of one moment, shared by the report and the metrics.
struct Figures {
    requests: u64,
    retries: u64,
    failovers: u64,
    connects: u64,
    clients: u32,
    primary: Option<usize>,
    answered: Vec<u64>,
    cache_live: bool,
    cache_entries: usize,
    cache: crate::balancer::coherent::CacheCounts,
    cache_starts: u64,
    following: Option<usize>,
}

fn figures(shared: &Shared) -> Figures {
    let up = &shared.upstream;
    let c = up.counters();
    let (cache_entries, live, cache) = shared.observer.figures();
    let cache_live = live && shared.config.cache_size > 0;
    Figures {
        requests: shared.requests.load(Ordering::Relaxed),
        retries: c.retries.load(Ordering::Relaxed),
        failovers: c.failovers.load(Ordering::Relaxed),
        connects: c.connects.load(Ordering::Relaxed),
        clients: shared.clients.load(Ordering::Relaxed),
        primary: up.primary(),
        answered: c.served.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
        cache_live,
        cache_entries,
        cache,
        cache_starts: shared.observer.starts.load(Ordering::Relaxed),
        following: shared.observer.following(),
    }
}

fn cache_capacity(shared: &Shared) -> u32 {
    u32::try_from(shared.config.cache_size).unwrap_or(u32::MAX)
}

/// The balancer's report: no log of its own, the primary it writes to,
/// and its section.
pub(super) fn report(shared: &Shared) -> StatusReport {
    let f = figures(shared);
    let ids = &shared.config.server_ids;
    let servers = ids
        .iter()
        .zip(&f.answered)
        .enumerate()
        .map(|(i, (&id, &answered))| BalancedServer {
            id,
            answered,
            primary: f.primary == Some(i),
        })
        .collect();
    StatusReport {
        factory_id: -1,
        role: Role::Unknown,
        epoch: 0,
        primary_id: f.primary.map_or(NO_PRIMARY, |i| ids[i]),
        lease: Lease::None,
        lease_ms: 0,
        trusted: false,
        in_sync: Vec::new(),
        last_index: -1,
        commit_index: -1,
        peers: Vec::new(),
        clients: f.clients,
        uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        balancer: Some(BalancerView {
            cache_enabled: f.cache_live,
            cache_capacity: cache_capacity(shared),
            cache_entries: u32::try_from(f.cache_entries).unwrap_or(u32::MAX),
            cache_hits: f.cache.hits,
            cache_misses: f.cache.misses,
            invalidations: f.cache.invalidations,
            requests: f.requests,
            retries: f.retries,
            failovers: f.failovers,
            servers,
        }),
    }
}

/// Everything `GET /metrics` answers, as of now.
pub(super) fn render(shared: &Shared) -> String {
    let f = figures(shared);
    let mut t = Text::with_capacity(4096);
    t.single(
        "factory_balancer_requests_total",
        "counter",
        "Client requests received (writes, reads, custom orders).",
        f.requests,
    );
    server_families(&mut t, shared, &f);
    t.single(
        "factory_balancer_retries_total",
        "counter",
        "Failed attempts on a server that were sent again.",
        f.retries,
    );
    t.single(
        "factory_balancer_failovers_total",
        "counter",
        "Times the primary writes go to changed to another server.",
        f.failovers,
    );
    t.single(
        "factory_balancer_sessions_opened_total",
        "counter",
        "Client sessions opened to servers (pooled and reused).",
        f.connects,
    );
    t.single(
        "factory_balancer_client_connections",
        "gauge",
        "Client sessions open on the balancer now.",
        f.clients,
    );
    cache_families(&mut t, shared, &f);
    t.into_string()
}

fn server_families(t: &mut Text, shared: &Shared, f: &Figures) {
    let servers = shared.upstream.servers();
    let labels: Vec<String> = servers
        .iter()
        .zip(&shared.config.server_ids)
        .map(|(address, id)| format!("server=\"{}\",id=\"{id}\"", label_value(address)))
        .collect();
    t.family(
        "factory_balancer_answered_total",
        "counter",
        "Requests each server answered for this balancer (they add up to the requests received, less those that failed).",
    );
    for (l, n) in labels.iter().zip(&f.answered) {
        t.sample("factory_balancer_answered_total", l, n);
    }
    t.family(
        "factory_balancer_primary",
        "gauge",
        "1 for the server writes go to now (none while no primary is known).",
    );
    for (i, l) in labels.iter().enumerate() {
        t.sample(
            "factory_balancer_primary",
            l,
            u8::from(f.primary == Some(i)),
        );
    }
}

fn cache_families(t: &mut Text, shared: &Shared, f: &Figures) {
    t.single(
        "factory_balancer_cache_enabled",
        "gauge",
        "1 while reads may be answered from the cache (CACHE_SIZE > 0 and its commit stream from the primary running).",
        u8::from(f.cache_live),
    );
    t.single(
        "factory_balancer_cache_capacity",
        "gauge",
        "CACHE_SIZE, the records the cache may hold.",
        cache_capacity(shared),
    );
    t.single(
        "factory_balancer_cache_entries",
        "gauge",
        "Records in the cache now.",
        f.cache_entries,
    );
    for (name, help, value) in [
        ("hits", "Reads answered from the cache.", f.cache.hits),
        (
            "misses",
            "Reads looked up in the cache and sent to a server.",
            f.cache.misses,
        ),
        (
            "invalidations",
            "Cached records changed by a commit from the stream, or dropped when the stream restarted.",
            f.cache.invalidations,
        ),
        (
            "stream_starts",
            "Times the commit stream from the primary started (each start empties the cache).",
            f.cache_starts,
        ),
    ] {
        t.single(
            &format!("factory_balancer_cache_{name}_total"),
            "counter",
            help,
            value,
        );
    }
    t.family(
        "factory_balancer_cache_following",
        "gauge",
        "1 for the server whose commit stream the cache follows now.",
    );
    let servers = shared.upstream.servers();
    for (i, (address, id)) in servers.iter().zip(&shared.config.server_ids).enumerate() {
        let l = format!("server=\"{}\",id=\"{id}\"", label_value(address));
        t.sample(
            "factory_balancer_cache_following",
            &l,
            u8::from(f.following == Some(i)),
        );
    }
}

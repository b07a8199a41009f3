//! The load balancer (`load`, issue 16): one address for a whole cluster.
//! Clients speak v1 or v2 to it, exactly as to a server; it relays each request
//! to the cluster's primary, found through the status request and followed
//! across failovers, over pooled sessions. See docs/balancer.md.
//!
//! - [`cache`]: the LRU a read cache keeps its records in (pure);
//! - [`coherent`]: the read cache's rules over the commit stream (pure);
//! - [`route`]: which server a request goes to (pure);
//! - [`upstream`]: the pooled sessions to the servers and the retry loop;
//! - `observer`: the commit stream from the primary, confirmations, and
//!   the cached read and write paths;
//! - `kv` (frames: `crate::kv_frames`): the v2 client sessions (pipelined, answered in
//!   order); [`kv_retry`]: when a v2 request may be sent again (pure);
//!   `kv_upstream`, `kv_session`: the pooled v2 sessions to the servers;
//! - `proxy`: the listener and the per-connection threads;
//! - `status`: its answer to the status request and its `/metrics` text.
//!
//! Reads are spread round robin over the primary and its backups (each
//! answers under G6); with `CACHE_SIZE` > 0 a read may be answered from the
//! cache, which is never stale (docs/balancer.md, "The read cache").

pub mod cache;
pub mod coherent;
mod kv;
pub mod kv_retry;
mod kv_session;
mod kv_upstream;
mod observer;
mod proxy;
pub mod route;
mod status;
pub mod upstream;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use upstream::UpstreamOptions;

/// Everything [`Balancer::start`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerConfig {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The servers, `host:port` each.
    pub servers: Vec<String>,
    /// Their ids (from the command line), in the same order; the status
    /// report and the metrics name servers by them.
    pub server_ids: Vec<i32>,
    /// Where `load --metrics` serves `/metrics` (port 0: any free one).
    pub metrics: Option<SocketAddr>,
    /// `CACHE_SIZE`: the records the read cache holds (0: no cache).
    pub cache_size: usize,
    /// Deadlines, attempt timeout and pool size towards the servers.
    pub upstream: UpstreamOptions,
    /// A client must send its tag, and finish a request it began, within it.
    pub handshake_timeout: Duration,
    /// A client that does not take its reply within it is dropped.
    pub client_write_timeout: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
}

impl BalancerConfig {
    /// A balancer on 127.0.0.1:`port` in front of `servers`.
    pub fn loopback(port: u16, servers: Vec<String>) -> BalancerConfig {
        BalancerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            server_ids: (0..servers.len() as i32).collect(),
            servers,
            metrics: None,
            cache_size: 0,
            upstream: UpstreamOptions::default(),
            handshake_timeout: Duration::from_secs(5),
            client_write_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// A snapshot of the balancer's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerMetrics {
    /// Requests answered by each server, in list order.
    pub served: Vec<u64>,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Times the primary changed.
    pub failovers: u64,
    /// Sessions opened to servers.
    pub connects: u64,
    /// Client requests received.
    pub requests: u64,
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads looked up in the cache and sent to a server.
    pub cache_misses: u64,
    /// Cached records changed by a commit or dropped by a reset.
    pub cache_invalidations: u64,
    /// Records in the cache now.
    pub cache_entries: usize,
    /// Times the commit stream started (or started again).
    pub cache_starts: u64,
}

/// A running balancer. Dropping it stops it, as [`Balancer::stop`] does.
pub struct Balancer {
    shared: Arc<proxy::Shared>,
    local_addr: SocketAddr,
    metrics: Option<crate::exposition::Endpoint>,
    accept_thread: Option<JoinHandle<()>>,
    observer_thread: Option<JoinHandle<()>>,
}

/// Why a balancer did not start.
#[derive(Debug)]
pub enum BalancerError {
    /// The server list is empty or an entry is not `host:port`.
    Servers(String),
    /// The listening socket or a thread could not be created.
    Io(std::io::Error),
}

impl std::fmt::Display for BalancerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BalancerError::Servers(why) => write!(f, "bad server list: {why}"),
            BalancerError::Io(e) => write!(f, "cannot start the balancer: {e}"),
        }
    }
}

impl std::error::Error for BalancerError {}

impl Balancer {
    /// Listens and starts the accept thread.
    ///
    /// # Errors
    /// [`BalancerError`] for a bad server list or a socket that cannot be
    /// bound.
    pub fn start(config: BalancerConfig) -> Result<Balancer, BalancerError> {
        if config.servers.is_empty() {
            return Err(BalancerError::Servers("no servers".into()));
        }
        if config.server_ids.len() != config.servers.len() {
            return Err(BalancerError::Servers(format!(
                "{} ids for {} servers",
                config.server_ids.len(),
                config.servers.len()
            )));
        }
        for s in &config.servers {
            crate::client::connect::split_host_port(s)
                .map_err(|why| BalancerError::Servers(format!("{s}: {why}")))?;
        }
        let listener = TcpListener::bind(config.bind).map_err(BalancerError::Io)?;
        let local_addr = listener.local_addr().map_err(BalancerError::Io)?;
        let metrics_addr = config.metrics;
        let shared = Arc::new(proxy::Shared::new(config));
        let metrics = match metrics_addr {
            Some(addr) => {
                let for_scrapes = Arc::clone(&shared);
                let render = Box::new(move || status::render(&for_scrapes));
                let endpoint =
                    crate::exposition::Endpoint::start(addr, "load-metrics".into(), render)
                        .map_err(BalancerError::Io)?;
                Some(endpoint)
            }
            None => None,
        };
        // Said once nothing more can fail the start (a taken metrics
        // address does, before it).
        log::info!(
            "balancer listening on {local_addr} for {}",
            shared.config.servers.join(",")
        );
        let observer_thread = if shared.config.cache_size > 0 {
            Some(observer::spawn(Arc::clone(&shared)).map_err(BalancerError::Io)?)
        } else {
            None
        };
        let accept_thread = match proxy::spawn(Arc::clone(&shared), listener) {
            Ok(t) => t,
            Err(e) => {
                shared.close_all();
                if let Some(t) = observer_thread {
                    let _ = t.join();
                }
                return Err(BalancerError::Io(e));
            }
        };
        Ok(Balancer {
            shared,
            local_addr,
            metrics,
            accept_thread: Some(accept_thread),
            observer_thread,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(crate::exposition::Endpoint::addr)
    }

    /// Its counters now.
    pub fn metrics(&self) -> BalancerMetrics {
        let c = self.shared.upstream.counters();
        let (entries, _, counts) = self.shared.observer.figures();
        BalancerMetrics {
            cache_hits: counts.hits,
            cache_misses: counts.misses,
            cache_invalidations: counts.invalidations,
            cache_entries: entries,
            cache_starts: self.shared.observer.starts.load(Ordering::Relaxed),
            served: c.served.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
            retries: c.retries.load(Ordering::Relaxed),
            failovers: c.failovers.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
        }
    }

    /// Closes the listener and every connection and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut m) = self.metrics.take() {
            m.stop();
        }
        self.shared.close_all();
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.observer_thread.take() {
            let _ = t.join();
        }
        // A connection accepted while closing.
        self.shared.close_all();
        log::info!("balancer on {} stopped", self.local_addr);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.shutdown();
        }
    }
}

//! The load balancer (`load`, issue 16): one address for a whole cluster.
//! Clients speak v1 to it, exactly as to a server; it relays each request
//! to the cluster's primary, found through the status request and followed
//! across failovers, over pooled sessions. See docs/balancer.md.
//!
//! - [`cache`]: the LRU a read cache keeps its records in (pure);
//! - [`route`]: which server a request goes to (pure);
//! - [`upstream`]: the pooled sessions to the servers and the retry loop;
//! - `proxy`: the listener and the per-connection threads;
//! - `status`: its answer to the status request and its `/metrics` text.
//!
//! The read cache is not used yet: `CACHE_SIZE` is accepted, but a cache
//! that cannot see writes made through other paths could answer stale
//! reads, so none is served until the coherent design of docs/balancer.md
//! exists.

pub mod cache;
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
    /// `CACHE_SIZE`: accepted, not used (see the module notes).
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
}

/// A running balancer. Dropping it stops it, as [`Balancer::stop`] does.
pub struct Balancer {
    shared: Arc<proxy::Shared>,
    local_addr: SocketAddr,
    metrics: Option<crate::exposition::Endpoint>,
    accept_thread: Option<JoinHandle<()>>,
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
        if config.cache_size > 0 {
            log::warn!(
                "balancer: CACHE_SIZE {} accepted but not used: the cache is not yet coherent with writes made through other paths, so every read goes to a server",
                config.cache_size
            );
        }
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
        let accept_thread =
            proxy::spawn(Arc::clone(&shared), listener).map_err(BalancerError::Io)?;
        Ok(Balancer {
            shared,
            local_addr,
            metrics,
            accept_thread: Some(accept_thread),
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
        BalancerMetrics {
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

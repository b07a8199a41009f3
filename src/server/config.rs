//! What a server is started with: its id, address, peers and limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::storage::FsyncPolicy;
use crate::wire::kv::KvLimits;

/// Committed entries kept in the log by default, for catch-up by suffix.
pub const DEFAULT_LOG_RETAIN: usize = 100_000;

/// A peer (backup) the primary replicates to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's factory id.
    pub id: i32,
    /// Host name or IPv4/IPv6 literal.
    pub host: String,
    /// The peer's listening port.
    pub port: u16,
}

impl PeerConfig {
    /// `host:port`, for log lines.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Limits and timeouts that keep one slow, silent or hostile peer from
/// stalling anyone else. Each is a server option (`server --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once, every accepted one counted (client
    /// sessions, replication streams, probes, and connections still in
    /// their handshake). One more is accepted and closed at once (its client
    /// reads end of file, not a reset), logged at most once a second.
    pub max_connections: usize,
    /// A connection must send its 8-byte tag within this time, and a
    /// client must finish a request it began within it.
    pub handshake_timeout: Duration,
    /// A client that does not take its reply within this time is dropped.
    pub client_write_timeout: Duration,
    /// A backup must take a frame and return its ack within this time, or
    /// the primary drops it.
    pub peer_timeout: Duration,
    /// Connecting to a peer gives up after this time.
    pub connect_timeout: Duration,
    /// Length of the listening socket's queue of connections not yet
    /// accepted; `None`: the system's `net.core.somaxconn` (which also caps
    /// any larger value). A burst of connects beyond it is dropped by the
    /// kernel and retried by the clients' SYN retransmissions, seconds later.
    pub backlog: Option<u32>,
}

impl Limits {
    /// Default of [`Limits::max_connections`]: far above any cluster's
    /// needs, and at 256 KiB of stack reserved per connection thread
    /// (little of it touched) still about 1 GiB of address space.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: Limits::DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Duration::from_secs(5),
            client_write_timeout: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backlog: None,
        }
    }
}

/// Protocol v2's limits on one server (`--max-key`, `--max-value`,
/// `--max-memory`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvConfig {
    /// Longest key and value a request may carry.
    pub limits: KvLimits,
    /// Writes that would take the string store past this many bytes (as
    /// [`crate::state::kv::KvStore::memory_bytes`] counts them) are refused;
    /// `None`: no limit.
    pub max_memory: Option<usize>,
}

/// Everything [`super::Server::start`] needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This server's factory id (its `replica_id` in acks).
    pub factory_id: i32,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The backups to replicate to once this server is primary.
    pub peers: Vec<PeerConfig>,
    /// Timeouts.
    pub limits: Limits,
    /// Where the durable log lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// When the durable log is fsynced.
    pub fsync: FsyncPolicy,
    /// Take over even when unsure of holding every acknowledged write.
    pub force_primary: bool,
    /// Committed entries kept for catch-up by suffix (more: snapshot).
    pub log_retain: usize,
    /// Where to serve `GET /metrics` (Prometheus text); `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// The expert pool for custom orders (none by default).
    pub experts: super::ExpertConfig,
    /// Run the majority election (docs/failover.md): it chooses the
    /// primary and its in-sync set; `None` keeps the original's takeover
    /// on a client's write. `server --election auto` sets it for clusters
    /// of three or more.
    pub election: Option<ElectionConfig>,
    /// Protocol v2's limits.
    pub kv: KvConfig,
}

/// How the election runs: its timing and which peers are witnesses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Heartbeat, lease, grace and election timing.
    pub timing: crate::replication::lease::Timing,
    /// The peer ids that are witnesses.
    pub witnesses: Vec<i32>,
}

impl ServerConfig {
    /// A server with no peers, listening on all IPv4 interfaces at `port`
    /// (as the original does).
    pub fn new(port: u16, factory_id: i32) -> Self {
        ServerConfig {
            factory_id,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            peers: Vec::new(),
            limits: Limits::default(),
            data_dir: None,
            fsync: FsyncPolicy::Always,
            force_primary: false,
            log_retain: DEFAULT_LOG_RETAIN,
            metrics: None,
            experts: super::ExpertConfig::default(),
            election: None,
            kv: KvConfig::default(),
        }
    }

    /// A server on the loopback interface only; what tests use.
    pub fn loopback(port: u16, factory_id: i32) -> Self {
        ServerConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ..ServerConfig::new(port, factory_id)
        }
    }

    /// Adds a peer.
    pub fn with_peer(mut self, id: i32, host: impl Into<String>, port: u16) -> Self {
        self.peers.push(PeerConfig {
            id,
            host: host.into(),
            port,
        });
        self
    }
}

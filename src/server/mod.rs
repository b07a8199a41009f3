//! The factory server: an accept loop that hands each connection to its own
//! thread, which takes a role from the 8-byte handshake.
//!
//! One place per role, each role's threads in their own folder:
//! - `accept`: the accept loop and the handshake dispatch;
//! - `session`: what a client connection meets on any server: the v1
//!   session (the original's "engineer" thread), the pipelined v2 session,
//!   reads by the rule of G6, writes placed through the primary's admin or
//!   forwarded to the primary, and the expert threads for custom orders;
//! - `primary`: the primary's roles: the admin thread and the term it
//!   drives (takeover, commits, the in-sync set), one replicator per peer
//!   with its live link and progress, and the observer streams;
//! - `backup`: the backup's roles: the handler of a primary's native
//!   stream (and of a candidate's probe), and of an original's `PFA` stream;
//! - [`election`]: the majority election's I/O, what it decided and how
//!   that is carried out on the term, and the look for original peers;
//!   [`witness`] runs only that;
//! - shared by the roles: `peer` (a native connection to another
//!   server), `read_index` (a backup asking the primary for its commit
//!   point, and the primary's answer), `status`, `durable` (the
//!   `--data-dir` log), `compaction`, `registry` (every open connection)
//!   and `metrics`.
//!
//! Imports go one way: `accept` → `session` → `primary` → `election` →
//! `peer`, and `backup` → `election` and `peer`; no role's folder imports
//! another role's files except along those arrows.
//!
//! [`Server`] is the handle the binary, the tests and the C ABI hold: it
//! starts everything, and [`Server::stop`] closes the listener and every
//! connection and joins every thread before returning.

mod accept;
mod backup;
mod compaction;
mod config;
mod durable;
pub mod election;
mod error;
mod metrics;
mod peer;
mod primary;
mod read_index;
mod registry;
mod session;
mod status;
pub mod witness;

use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

pub use config::{ElectionConfig, KvConfig, Limits, PeerConfig, ServerConfig, DEFAULT_LOG_RETAIN};
pub use error::ServerError;
pub use session::experts::{ExpertConfig, ExpertGauge, DEFAULT_EXPERT_QUEUE, DEFAULT_EXPERT_WORK};
pub use witness::Witness;

use crate::replication::election::LogPos;
use crate::state::{RecordTable, Replica};
use crate::wire::Epoch;
use durable::Durable;
use election::elected;
use primary::admin::{self, AdminQueue};
use primary::progress::Replication;
use primary::term;
use registry::Registry;
use session::{experts, reads};

/// A snapshot of a server's replication indexes, for tests and operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This server's id.
    pub factory_id: i32,
    /// Index of the last log entry (-1: empty).
    pub last_index: i32,
    /// Index of the last committed entry (-1: none).
    pub committed_index: i32,
    /// The primary it follows, itself, or -1.
    pub primary_id: i32,
    /// The highest epoch it has seen.
    pub epoch: Epoch,
    /// True while it is known to hold every committed entry.
    pub trusted: bool,
    /// The in-sync set its log names (empty: none yet).
    pub in_sync: Vec<i32>,
}

/// Who is primary and whether this server is trusted, readable without the
/// replica lock (client reads consult it and must never wait for a thread
/// that holds that lock while it syncs). Published whenever the lock is
/// released, with what reads need (see [`reads`]): the applied index and
/// whether this primary has committed an entry of its own epoch.
pub(crate) struct RoleView {
    primary_id: AtomicI32,
    trusted: AtomicBool,
    /// The replica's commit point: every entry through it is applied.
    applied: AtomicI32,
    /// Primary that has applied every entry it inherited.
    established: AtomicBool,
    /// Reads waiting for a change of the above.
    changes: reads::Changes,
    /// Where the log ends and how far it is committed, for the election
    /// (which must not take the replica lock): a sequence count, odd
    /// while they are being written.
    log_seq: AtomicU64,
    log_index: AtomicI32,
    log_epoch: AtomicU64,
    commit_index: AtomicI32,
    commit_epoch: AtomicU64,
}

impl RoleView {
    fn new() -> Self {
        RoleView {
            primary_id: AtomicI32::new(crate::state::NO_PRIMARY),
            trusted: AtomicBool::new(false),
            applied: AtomicI32::new(crate::state::NO_INDEX),
            established: AtomicBool::new(false),
            changes: reads::Changes::default(),
            log_seq: AtomicU64::new(0),
            log_index: AtomicI32::new(crate::state::NO_INDEX),
            log_epoch: AtomicU64::new(0),
            commit_index: AtomicI32::new(crate::state::NO_INDEX),
            commit_epoch: AtomicU64::new(0),
        }
    }

    /// Publishes where the log ends and how far it is committed (only
    /// the replica lock's holder calls this, so writers never overlap).
    fn publish_log_ends(&self, replica: &Replica) {
        let (index, epoch) = (replica.last_index(), replica.last_epoch());
        let committed = replica.committed_index();
        // A committed entry is never replaced: the same commit index means
        // the same epoch, so the log is not looked up on every release.
        if self.log_index.load(Ordering::Relaxed) == index
            && self.log_epoch.load(Ordering::Relaxed) == epoch
            && self.commit_index.load(Ordering::Relaxed) == committed
        {
            return;
        }
        // The commit point is inside the log or at its snapshot's end.
        let committed_epoch = replica.log().epoch_at(committed).unwrap_or(0);
        self.log_seq.fetch_add(1, Ordering::AcqRel);
        self.log_index.store(index, Ordering::Release);
        self.log_epoch.store(epoch, Ordering::Release);
        self.commit_index.store(committed, Ordering::Release);
        self.commit_epoch.store(committed_epoch, Ordering::Release);
        self.log_seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Where the log ended, and where it was committed, at the last
    /// release of the replica lock.
    pub(crate) fn log_ends(&self) -> (LogPos, LogPos) {
        loop {
            let before = self.log_seq.load(Ordering::Acquire);
            let end = LogPos {
                index: self.log_index.load(Ordering::Acquire),
                epoch: self.log_epoch.load(Ordering::Acquire),
            };
            let committed = LogPos {
                index: self.commit_index.load(Ordering::Acquire),
                epoch: self.commit_epoch.load(Ordering::Acquire),
            };
            if before.is_multiple_of(2) && self.log_seq.load(Ordering::Acquire) == before {
                return (end, committed);
            }
            std::hint::spin_loop();
        }
    }

    fn publish(&self, replica: &Replica) {
        self.publish_log_ends(replica);
        let applied = replica.committed_index();
        let established =
            replica.is_primary() && crate::replication::applied_all_inherited(replica);
        // Only the holder of the replica lock publishes, so a load then a
        // store cannot race; a value is stored only when it changed.
        let changed = set_i32(&self.primary_id, replica.primary_id())
            | set_bool(&self.trusted, replica.trusted())
            | set_i32(&self.applied, applied)
            | set_bool(&self.established, established);
        if changed {
            self.changes.notify();
        }
    }

    /// The primary this server follows (itself, or -1), and whether it is
    /// trusted, as of the last release of the replica lock; with the
    /// election on, the primary is the one the election knows.
    pub(crate) fn load(&self, elected: &elected::Elected) -> (i32, bool) {
        (
            elected
                .primary()
                .unwrap_or_else(|| self.primary_id.load(Ordering::Relaxed)),
            self.trusted.load(Ordering::Relaxed),
        )
    }
}

fn set_i32(cell: &AtomicI32, value: i32) -> bool {
    let changed = cell.load(Ordering::Relaxed) != value;
    if changed {
        cell.store(value, Ordering::Release);
    }
    changed
}

fn set_bool(cell: &AtomicBool, value: bool) -> bool {
    let changed = cell.load(Ordering::Relaxed) != value;
    if changed {
        cell.store(value, Ordering::Release);
    }
    changed
}

/// The replica lock; releasing it publishes the [`RoleView`].
pub(crate) struct ReplicaGuard<'a> {
    guard: MutexGuard<'a, Replica>,
    role: &'a RoleView,
}

impl Deref for ReplicaGuard<'_> {
    type Target = Replica;
    fn deref(&self) -> &Replica {
        &self.guard
    }
}

impl DerefMut for ReplicaGuard<'_> {
    fn deref_mut(&mut self) -> &mut Replica {
        &mut self.guard
    }
}

impl Drop for ReplicaGuard<'_> {
    fn drop(&mut self) {
        self.role.publish(&self.guard);
    }
}

/// State shared by every thread of one server.
///
/// Lock order where two nest: `replica`, then `durable`, then a shard of
/// `records`; `repl` is never held while taking `replica`. Client reads
/// take only a `records` shard, so they never wait for the admin while it
/// replicates or syncs.
pub(crate) struct Shared {
    pub(crate) factory_id: i32,
    pub(crate) limits: Limits,
    /// The log and its indexes (the original's `log_lock`).
    pub(crate) replica: Mutex<Replica>,
    /// Who is primary, readable without `replica`.
    pub(crate) role: RoleView,
    /// Committed records (the original's `record_lock`, sharded).
    pub(crate) records: RecordTable,
    /// Writes waiting for the admin's step.
    pub(crate) admin_queue: AdminQueue,
    /// The primary term: held by whichever thread runs the admin's step.
    pub(crate) term: Mutex<term::Term>,
    /// Peers the primary replicates to; may grow while running.
    pub(crate) peers: Mutex<Vec<PeerConfig>>,
    /// Every open connection, so that stopping can close them all.
    pub(crate) registry: Registry,
    /// Number of the next connection (the reply's `engineer_id`).
    pub(crate) next_engineer_id: AtomicI32,
    /// The durable log, with `--data-dir`.
    pub(crate) durable: Durable,
    /// The primary's view of its backups.
    pub(crate) repl: Replication,
    /// A backup's requests for the primary's commit point, for reads.
    pub(crate) read_index: read_index::ReadIndexClient,
    /// Take over even when unsure of holding every acknowledged write.
    pub(crate) force_primary: bool,
    /// Committed entries kept in the log for catch-up by suffix.
    pub(crate) log_retain: usize,
    /// Protocol v2's limits.
    pub(crate) kv: KvConfig,
    /// Bytes v2 writes in flight may add to the string store (see
    /// `kv_session::over_memory`).
    pub(crate) kv_reserved: Arc<std::sync::atomic::AtomicUsize>,
    /// This server has followed an original (v1) primary, whose writes carry
    /// no guarantee: it then takes over as the original would.
    pub(crate) followed_v1: AtomicBool,
    /// This process may run on more than one CPU (read once at start), so
    /// a thread that waits for another without sleeping does not stop the
    /// very thread it waits for.
    pub(crate) spare_cpu: bool,
    /// Custom orders waiting for an expert.
    pub(crate) experts: experts::ExpertPool,
    /// Open client sessions and the start time, for the status report.
    pub(crate) client_sessions: AtomicU32,
    pub(crate) started: std::time::Instant,
    /// Counters and histograms for `--metrics`.
    pub(crate) metrics: metrics::Metrics,
    /// The majority election, when configured.
    pub(crate) election: Mutex<Option<election::ElectionService>>,
    /// What the election decided, for the threads that act on it.
    pub(crate) elected: elected::Elected,
}

impl Shared {
    pub(crate) fn replica(&self) -> ReplicaGuard<'_> {
        // Replica methods leave it consistent at every return, so a thread
        // that panicked while holding the lock left nothing half-done.
        ReplicaGuard {
            guard: self.replica.lock().unwrap_or_else(PoisonError::into_inner),
            role: &self.role,
        }
    }

    pub(crate) fn term(&self) -> MutexGuard<'_, term::Term> {
        // The term is left consistent between its steps.
        self.term.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True for a server alone in its cluster: its commits need no
    /// network round trip.
    pub(crate) fn has_no_peers(&self) -> bool {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    pub(crate) fn peer_list(&self) -> Vec<PeerConfig> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `server ID at HOST:PORT`, the peer's configured listening address
    /// (a connection's source port says nothing to an operator), or
    /// `server ID` for a server not among the peers.
    pub(crate) fn peer_name(&self, id: i32) -> String {
        match self.peer_list().iter().find(|p| p.id == id) {
            Some(p) => format!("server {id} at {}", p.addr()),
            None => format!("server {id}"),
        }
    }

    /// `ID at HOST:PORT` for a configured peer, else `ID (connected from
    /// ADDR)`: a server that connected to us, named for a log line.
    pub(crate) fn peer_called(&self, id: i32, from: SocketAddr) -> String {
        match self.peer_list().iter().find(|p| p.id == id) {
            Some(p) => format!("{id} at {}", p.addr()),
            None => format!("{id} (connected from {from})"),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.registry.is_closed()
    }

    /// A reader for an election connection, if an election runs here.
    pub(crate) fn election_reader(&self) -> Option<election::FrameReader> {
        self.election
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(election::ElectionService::reader)
    }

    pub(crate) fn followed_v1(&self) -> bool {
        self.followed_v1.load(Ordering::Relaxed)
    }

    /// Makes a newly adopted epoch durable (a failure is logged: the epoch
    /// is then only as durable as the process).
    pub(crate) fn persist_epoch(&self, epoch: Epoch) {
        if let Err(e) = self.durable.set_epoch(epoch) {
            log::error!(
                "cannot record epoch {} on disk: {e}",
                crate::logging::epoch(epoch)
            );
        }
    }

    /// Gives up the primary role (a higher epoch exists); `primary` is the
    /// new primary if known. Pending writes then fail and are forwarded.
    pub(crate) fn step_down(&self, epoch: Epoch, primary: i32) {
        {
            let mut replica = self.replica();
            if replica.adopt_epoch(epoch) {
                self.persist_epoch(epoch);
            }
            if replica.is_primary() {
                self.metrics.step_downs.inc();
                let by = if primary == crate::state::NO_PRIMARY {
                    "another server".to_string()
                } else {
                    format!("server {primary}")
                };
                log::info!(
                    "factory {} steps down: {by} took over in epoch {}",
                    self.factory_id,
                    crate::logging::epoch(epoch)
                );
                replica.follow(primary);
            }
        }
        self.repl.update(|p| p.epoch = 0);
        self.repl.notify();
    }
}

/// A running server. Dropping it stops it, as [`Server::stop`] does.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
    admin_thread: Option<JoinHandle<()>>,
    metrics: Option<metrics::Endpoint>,
    expert_threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listening socket and starts the accept and admin threads.
    /// Port 0 in `config.bind` picks a free port; see [`Server::local_addr`].
    ///
    /// # Errors
    /// [`ServerError::AddressInUse`] when the port is taken, other
    /// [`ServerError`]s when the socket or a thread cannot be created.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let recovered =
            durable::recover(config.factory_id, config.data_dir.as_deref(), config.fsync)
                .map_err(ServerError::Storage)?;
        let listener = accept::listen(config.bind, config.limits.backlog)
            .map_err(|e| ServerError::bind(config.bind, e))?;
        let local_addr = listener.local_addr().map_err(ServerError::Io)?;
        let shared = Arc::new(Shared {
            factory_id: config.factory_id,
            limits: config.limits,
            replica: Mutex::new(recovered.replica),
            role: RoleView::new(),
            records: recovered.records,
            admin_queue: AdminQueue::new(),
            term: Mutex::new(term::Term::default()),
            peers: Mutex::new(config.peers),
            registry: Registry::new(),
            next_engineer_id: AtomicI32::new(0),
            durable: Durable::new(recovered.disk),
            repl: Replication::default(),
            read_index: read_index::ReadIndexClient::default(),
            force_primary: config.force_primary,
            log_retain: config.log_retain,
            kv: config.kv,
            kv_reserved: Arc::default(),
            followed_v1: AtomicBool::new(false),
            spare_cpu: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            experts: experts::ExpertPool::new(config.experts),
            client_sessions: AtomicU32::new(0),
            started: std::time::Instant::now(),
            metrics: metrics::Metrics::default(),
            election: Mutex::new(None),
            elected: elected::Elected::new(
                config.election.is_some(),
                config
                    .election
                    .as_ref()
                    .map(|e| e.witnesses.clone())
                    .unwrap_or_default(),
            ),
        });
        // Publishes the recovered commit point for reads.
        drop(shared.replica());
        if let Some(settings) = &config.election {
            let service = start_election(&shared, settings, config.data_dir.clone())?;
            *shared
                .election
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(service);
        }
        if config.force_primary {
            log::warn!(
                "factory {}: --force-primary: it may take over without knowing it holds every acknowledged write",
                config.factory_id
            );
        }
        // Before the listening line, so that a server whose --metrics
        // address is taken never says it listens.
        let metrics = match config.metrics {
            Some(addr) => Some(metrics::Endpoint::start(Arc::clone(&shared), addr)?),
            None => None,
        };
        // Logged before any connection is served, so that this line comes
        // first (tools wait for it, then for what follows).
        log::info!("factory {} listening on {local_addr}", shared.factory_id);
        let admin_thread = admin::spawn(Arc::clone(&shared))?;
        let started = experts::spawn(&shared).and_then(|experts| {
            match accept::spawn(Arc::clone(&shared), listener) {
                Ok(t) => Ok((t, experts)),
                Err(e) => {
                    shared.experts.close();
                    experts.into_iter().for_each(|t| drop(t.join()));
                    Err(e)
                }
            }
        });
        let (accept_thread, expert_threads) = match started {
            Ok(threads) => threads,
            Err(e) => {
                shared.admin_queue.close();
                let _ = admin_thread.join();
                return Err(e);
            }
        };
        Ok(Server {
            shared,
            local_addr,
            accept_thread: Some(accept_thread),
            admin_thread: Some(admin_thread),
            metrics,
            expert_threads,
        })
    }

    /// The address the server listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served (with the real port if 0 was asked).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(metrics::Endpoint::addr)
    }

    /// This server's factory id.
    pub fn factory_id(&self) -> i32 {
        self.shared.factory_id
    }

    /// Adds a peer to replicate to. A peer added after this server became
    /// primary is connected before the next write is replicated.
    pub fn add_peer(&self, peer: PeerConfig) {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(peer);
    }

    /// The election's state, when an election runs here.
    pub fn election_status(&self) -> Option<election::ElectionStatus> {
        self.shared
            .election
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(election::ElectionService::status)
    }

    /// The current replication indexes.
    pub fn status(&self) -> Status {
        let replica = self.shared.replica();
        Status {
            factory_id: replica.id(),
            last_index: replica.last_index(),
            committed_index: replica.committed_index(),
            primary_id: replica.primary_id(),
            epoch: replica.epoch(),
            trusted: replica.trusted(),
            in_sync: replica
                .in_sync()
                .map(|s| s.ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The committed last order of `customer_id` (-1: none), read locally.
    pub fn last_order(&self, customer_id: i32) -> i32 {
        self.shared.records.last_order(customer_id)
    }

    /// The expert pool's counters (threads, busy, queued, answered busy).
    pub fn experts(&self) -> Arc<ExpertGauge> {
        self.shared.experts.gauge()
    }

    /// Stops the server: closes the listener and every connection, fails
    /// writes still waiting, and returns once every thread has ended.
    pub fn stop(mut self) {
        self.shutdown("");
    }

    /// As [`Server::stop`], naming why in the log line (`"on SIGTERM"`).
    pub fn stop_because(mut self, cause: &str) {
        self.shutdown(cause);
    }

    fn shutdown(&mut self, cause: &str) {
        let election = self
            .shared
            .election
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(election) = election {
            election.stop();
        }
        self.shared.registry.close_all();
        // After the connections are closed: its check of the peers uses
        // registered links, which closing ends at once.
        self.shared.elected.join();
        self.shared.role.changes.wake_all();
        self.shared.admin_queue.close();
        // Before the connections are joined: their sessions may wait for
        // an expert's answer, which closing gives them.
        self.shared.experts.close();
        self.shared.repl.notify();
        wake_acceptor(self.local_addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.admin_thread.take() {
            let _ = t.join();
        }
        for t in self.expert_threads.drain(..) {
            let _ = t.join();
        }
        if let Some(endpoint) = self.metrics.as_mut() {
            endpoint.stop();
        }
        let flushed = match self.shared.durable.close() {
            Ok(()) => "",
            Err(e) => {
                log::error!("cannot flush the data directory: {e}");
                ", the data directory NOT flushed"
            }
        };
        let cause = if cause.is_empty() {
            String::new()
        } else {
            format!(" {cause}")
        };
        log::info!(
            "factory {} stopped{cause}: no longer listening, requests in flight answered or refused{flushed}",
            self.shared.factory_id
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.shutdown("");
        }
    }
}

/// `accept()` has no timeout: a connection to ourselves makes it return so
/// the accept loop can see that the server is stopping.
fn wake_acceptor(addr: SocketAddr) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&target, std::time::Duration::from_secs(1));
}

pub(crate) fn next_engineer_id(shared: &Shared) -> i32 {
    shared.next_engineer_id.fetch_add(1, Ordering::Relaxed)
}

/// Starts the election over the configured peers (their addresses
/// resolved once, now) with the witnesses named in `settings`.
fn start_election(
    shared: &Arc<Shared>,
    settings: &ElectionConfig,
    data_dir: Option<std::path::PathBuf>,
) -> Result<election::ElectionService, ServerError> {
    use std::net::ToSocketAddrs;
    let peers = shared.peer_list();
    let mut addrs = Vec::new();
    for p in &peers {
        match (p.host.as_str(), p.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(addr)) => addrs.push((p.id, addr)),
            _ => log::warn!("election: cannot resolve peer {} at {}", p.id, p.addr()),
        }
    }
    let mut voters: Vec<i32> = peers.iter().map(|p| p.id).collect();
    voters.push(shared.factory_id);
    voters.sort_unstable();
    voters.dedup();
    let options = election::ElectionOptions {
        cluster: crate::replication::election::Cluster {
            me: shared.factory_id,
            voters,
            witnesses: settings.witnesses.clone(),
        },
        timing: settings.timing,
        peers: addrs,
        data_dir,
    };
    // Weak: the service lives inside Shared and must not keep it alive.
    let hooks = elected::ServerHooks {
        shared: Arc::downgrade(shared),
    };
    election::ElectionService::start_with(options, Box::new(hooks)).map_err(ServerError::Io)
}

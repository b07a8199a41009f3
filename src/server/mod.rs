//! The factory server: an accept loop that hands each connection to its own
//! thread, which takes a role from the 8-byte handshake.
//!
//! One file per role, as in the original's `ServerThread.cpp`:
//! - [`session`]: a client session (the original's "engineer" thread),
//!   which forwards writes to the primary when this server is a backup;
//! - [`admin`]: the admin thread, fed by a queue; as primary it appends,
//!   replicates, commits and releases the waiting sessions, driving a
//!   [`term`] (takeover, in-sync set) and its [`replicator`]s, one per peer;
//! - [`follower`]: a backup's handler of a native stream or probe;
//! - [`backup`]: a backup's handler of an original (`PFA`) stream.
//!
//! [`Server`] is the handle the binary, the tests and the C ABI hold: it
//! starts everything, and [`Server::stop`] closes the listener and every
//! connection and joins every thread before returning.

mod accept;
mod admin;
mod backup;
mod compaction;
mod config;
mod durable;
mod error;
mod follower;
mod forward;
mod kv_session;
mod live;
mod progress;
mod registry;
mod replicator;
mod replicator_v1;
mod session;
mod takeover;
mod term;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

pub use config::{KvConfig, Limits, PeerConfig, ServerConfig, DEFAULT_LOG_RETAIN};
pub use error::ServerError;

use crate::state::{RecordTable, Replica};
use crate::wire::Epoch;
use admin::AdminQueue;
use durable::Durable;
use progress::Replication;
use registry::Registry;

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
/// released.
pub(crate) struct RoleView {
    primary_id: AtomicI32,
    trusted: AtomicBool,
}

impl RoleView {
    fn new() -> Self {
        RoleView {
            primary_id: AtomicI32::new(crate::state::NO_PRIMARY),
            trusted: AtomicBool::new(false),
        }
    }

    fn publish(&self, replica: &Replica) {
        self.primary_id
            .store(replica.primary_id(), Ordering::Relaxed);
        self.trusted.store(replica.trusted(), Ordering::Relaxed);
    }

    /// The primary this server follows (itself, or -1), and whether it is
    /// trusted, as of the last release of the replica lock.
    pub(crate) fn load(&self) -> (i32, bool) {
        (
            self.primary_id.load(Ordering::Relaxed),
            self.trusted.load(Ordering::Relaxed),
        )
    }
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

    pub(crate) fn stopping(&self) -> bool {
        self.registry.is_closed()
    }

    pub(crate) fn followed_v1(&self) -> bool {
        self.followed_v1.load(Ordering::Relaxed)
    }

    /// Makes a newly adopted epoch durable (a failure is logged: the epoch
    /// is then only as durable as the process).
    pub(crate) fn persist_epoch(&self, epoch: Epoch) {
        if let Err(e) = self.durable.set_epoch(epoch) {
            log::error!("cannot record epoch {epoch}: {e}");
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
                log::info!(
                    "factory {} steps down: epoch {epoch} is newer",
                    self.factory_id
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
        let listener =
            TcpListener::bind(config.bind).map_err(|e| ServerError::bind(config.bind, e))?;
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
            force_primary: config.force_primary,
            log_retain: config.log_retain,
            kv: config.kv,
            kv_reserved: Arc::default(),
            followed_v1: AtomicBool::new(false),
            spare_cpu: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        });
        if config.force_primary {
            log::warn!(
                "factory {}: --force-primary: it may take over without knowing it holds every acknowledged write",
                config.factory_id
            );
        }
        // Logged before any connection is served, so that this line comes
        // first (tools wait for it, then for what follows).
        log::info!("factory {} listening on {local_addr}", shared.factory_id);
        let admin_thread = admin::spawn(Arc::clone(&shared))?;
        let accept_thread = match accept::spawn(Arc::clone(&shared), listener) {
            Ok(t) => t,
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
        })
    }

    /// The address the server listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

    /// Stops the server: closes the listener and every connection, fails
    /// writes still waiting, and returns once every thread has ended.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.registry.close_all();
        self.shared.admin_queue.close();
        self.shared.repl.notify();
        wake_acceptor(self.local_addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.admin_thread.take() {
            let _ = t.join();
        }
        log::info!("factory {} stopped", self.shared.factory_id);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept_thread.is_some() {
            self.shutdown();
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

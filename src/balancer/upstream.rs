//! The balancer's side towards the servers: a pool of open client sessions
//! per server, the primary it last found, and the retry loop that carries
//! one request across failures until its deadline.
//!
//! Writes go to the primary; reads round robin over the primary and the
//! backups that follow it ([`route::readers`], refreshed with the primary).
//! Sessions are taken from the pool for one request and given back after
//! it, so a few sessions per server serve every client connection. A
//! failed attempt (refused or reset connection, timeout, a session the
//! server closed, as one that cannot place a write does) drops that session,
//! forgets the primary, asks every server for its status again, and tries
//! where [`route::pick`] says, with backoff, until the deadline. Resending
//! is safe: a read changes nothing, and a write sets a customer's last
//! order, so a second copy of the same order leaves the same record.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::route::{self, Kind, Target};
use crate::client::connect::{self, Backoff};
use crate::client::status;
use crate::client::{Client, ClientError};
use crate::wire::{CustomerRecord, RobotInfo};

/// How long a status request may take while looking for the primary.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the primary found is used before the servers are asked
/// again, so that a primary replaced without the balancer seeing a failure
/// (another balancer's writes moved it) is left soon.
const PRIMARY_RECHECK: Duration = Duration::from_secs(1);

/// Timeouts and sizes of the upstream side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamOptions {
    /// The longest one request may take, retries included.
    pub deadline: Duration,
    /// The longest one attempt waits on one server.
    pub attempt_timeout: Duration,
    /// Idle sessions kept per server.
    pub pool_per_server: usize,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            pool_per_server: 64,
        }
    }
}

/// Counters, for tests and operators.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// Requests answered, per server.
    pub(super) served: Vec<AtomicU64>,
    /// Attempts that failed and were retried.
    pub(super) retries: AtomicU64,
    /// Times a new primary was found after another one.
    pub(super) failovers: AtomicU64,
    /// Sessions opened to servers.
    pub(super) connects: AtomicU64,
}

struct State {
    /// The primary last found, by index, and when.
    primary: Option<(usize, Instant)>,
    /// The primary before, to count changes.
    previous: Option<usize>,
    /// Where the next search starts.
    next: usize,
    /// The servers reads are spread over, from the same status round as
    /// `primary` ([`route::readers`]), and the next one's turn.
    readers: Vec<usize>,
    turn: usize,
    /// A request is asking the servers for their status because the
    /// primary found has aged: the others keep using it meanwhile, rather
    /// than all asking at once.
    refreshing: bool,
}

/// The servers behind a balancer.
pub struct Upstream {
    servers: Vec<String>,
    options: UpstreamOptions,
    idle: Vec<Mutex<Vec<Client>>>,
    state: Mutex<State>,
    counters: UpstreamCounters,
    stopping: AtomicBool,
}

/// Why a request was not served.
#[derive(Debug)]
pub enum UpstreamError {
    /// No server served it before the deadline; the last failure seen.
    Unavailable(Option<ClientError>),
    /// A server answered something that does not match the request.
    Protocol(ClientError),
    /// The balancer is stopping.
    Stopping,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Unavailable(Some(e)) => {
                write!(f, "no server served it in time (last error: {e})")
            }
            UpstreamError::Unavailable(None) => write!(f, "no server served it in time"),
            UpstreamError::Protocol(e) => write!(f, "{e}"),
            UpstreamError::Stopping => write!(f, "the balancer is stopping"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upstream {
    /// The servers (`host:port` each, validated by the caller).
    pub fn new(servers: Vec<String>, options: UpstreamOptions) -> Upstream {
        let n = servers.len();
        Upstream {
            idle: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            counters: UpstreamCounters {
                served: (0..n).map(|_| AtomicU64::new(0)).collect(),
                ..UpstreamCounters::default()
            },
            servers,
            options,
            state: Mutex::new(State {
                primary: None,
                previous: None,
                next: 0,
                readers: Vec::new(),
                turn: 0,
                refreshing: false,
            }),
            stopping: AtomicBool::new(false),
        }
    }

    pub(super) fn counters(&self) -> &UpstreamCounters {
        &self.counters
    }

    /// The servers, `host:port` each, in command-line order.
    pub(super) fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The server writes go to now, if one is known.
    pub(super) fn primary(&self) -> Option<usize> {
        lock(&self.state).primary.map(|(index, _)| index)
    }

    /// Deadlines, attempt timeout and pool size (the v2 side uses them too).
    pub(super) fn options(&self) -> UpstreamOptions {
        self.options
    }

    /// True once [`Self::stop`] was called.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Makes every request in progress give up at its next attempt.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for pool in &self.idle {
            lock(pool).clear();
        }
    }

    /// Places an order on the primary.
    pub fn order(&self, customer_id: i32, order_number: i32) -> Result<RobotInfo, UpstreamError> {
        self.call(Kind::Write, |c| c.order(customer_id, order_number))
    }

    /// Sends a custom order to the primary, whose experts do it (or to any
    /// server while no primary is known, as a write); its answer is
    /// relayed as is.
    pub fn custom(
        &self,
        customer_id: i32,
        order_number: i32,
    ) -> Result<crate::protocol::session::CustomStatus, UpstreamError> {
        self.call(Kind::Write, |c| c.custom(customer_id, order_number))
    }

    /// The primary, asking the servers if the one known is not fresh.
    pub(super) fn find_primary(&self, within: Duration) -> Option<usize> {
        self.target(Kind::Write, Instant::now() + within)
            .filter(|t| t.primary)
            .map(|t| t.index)
    }

    /// Reads a customer's committed record on the next server in turn
    /// among [`route::readers`] (or where [`route::pick`] allows when no
    /// primary is known).
    pub fn read(&self, customer_id: i32) -> Result<CustomerRecord, UpstreamError> {
        self.call(Kind::Read, |c| c.read(customer_id))
    }

    fn call<T>(
        &self,
        kind: Kind,
        mut request: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, UpstreamError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut backoff = Backoff::default();
        let mut last = None;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(UpstreamError::Stopping);
            }
            if let Some(target) = self.target(kind, deadline) {
                match self.attempt(target.index, deadline, &mut request) {
                    Ok(v) => {
                        self.counters.served[target.index].fetch_add(1, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(e @ ClientError::Protocol { .. }) => {
                        return Err(UpstreamError::Protocol(e))
                    }
                    Err(e) => {
                        log::debug!("balancer: {e}; looking for the primary again");
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        self.forget(target.index);
                        last = Some(e);
                    }
                }
            }
            if !backoff.sleep_until(deadline) {
                return Err(UpstreamError::Unavailable(last));
            }
        }
    }

    /// One attempt on server `index`, with a pooled or new session; the
    /// session goes back to the pool only after a success.
    fn attempt<T>(
        &self,
        index: usize,
        deadline: Instant,
        request: &mut impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let timeout = self.attempt_timeout(deadline);
        let pooled = lock(&self.idle[index]).pop();
        let mut client = match pooled {
            Some(c) => c,
            None => self.open(index, timeout)?,
        };
        client.set_timeout(Some(timeout));
        let result = request(&mut client)?;
        let mut idle = lock(&self.idle[index]);
        if idle.len() < self.options.pool_per_server && !self.stopping.load(Ordering::SeqCst) {
            idle.push(client);
        }
        Ok(result)
    }

    pub(super) fn attempt_timeout(&self, deadline: Instant) -> Duration {
        let left = deadline.saturating_duration_since(Instant::now());
        self.options
            .attempt_timeout
            .min(left)
            .max(Duration::from_millis(1))
    }

    fn open(&self, index: usize, timeout: Duration) -> Result<Client, ClientError> {
        let address = &self.servers[index];
        let (host, port) =
            connect::split_host_port(address).map_err(|reason| ClientError::Resolve {
                server: address.clone(),
                reason,
            })?;
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        Client::connect(&host, port, Some(timeout))
    }

    /// After a failure on `index`: its idle sessions are as suspect as the
    /// one that failed, and the primary must be found again.
    pub(super) fn forget(&self, index: usize) {
        lock(&self.idle[index]).clear();
        let mut state = lock(&self.state);
        if state.primary.is_some_and(|(p, _)| p == index) {
            state.primary = None;
        }
        state.next = (index + 1) % self.servers.len();
        state.readers.retain(|&r| r != index);
    }

    /// The known primary (or, for a read, the next reader in turn), or
    /// one found by asking every server.
    pub(super) fn target(&self, kind: Kind, deadline: Instant) -> Option<Target> {
        let start = {
            let mut state = lock(&self.state);
            match state.primary {
                Some((index, found)) if found.elapsed() < PRIMARY_RECHECK || state.refreshing => {
                    return Some(match kind {
                        Kind::Read if !state.readers.is_empty() => take_turn(&mut state, index),
                        _ => Target {
                            index,
                            primary: true,
                        },
                    });
                }
                Some(_) => {
                    state.refreshing = true;
                    state.next
                }
                None => state.next,
            }
        };
        let timeout = self.attempt_timeout(deadline).min(STATUS_TIMEOUT);
        let statuses = status::fetch_all(&self.servers, timeout);
        let readers = route::readers(&statuses);
        let found = route::pick(kind, &statuses, start);
        let mut state = lock(&self.state);
        state.refreshing = false;
        let found = found?;
        state.readers = readers;
        if found.primary {
            if state.previous != Some(found.index) {
                log::info!("balancer: server {} is primary", self.servers[found.index]);
                if state.previous.is_some() {
                    self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                }
                state.previous = Some(found.index);
            }
            state.primary = Some((found.index, Instant::now()));
            if kind == Kind::Read && !state.readers.is_empty() {
                return Some(take_turn(&mut state, found.index));
            }
        } else {
            state.primary = None;
        }
        Some(found)
    }
}

/// The next reader in round-robin order.
fn take_turn(state: &mut State, primary: usize) -> Target {
    let index = state.readers[state.turn % state.readers.len()];
    state.turn = state.turn.wrapping_add(1);
    Target {
        index,
        primary: index == primary,
    }
}

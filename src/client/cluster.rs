//! [`Cluster`]: a client of a list of servers. It asks them for their
//! status, sends to the primary (the reachable one with the newest epoch,
//! else any reachable server, which forwards writes to its primary), and
//! when a request fails it moves on: connection refused or reset, a
//! timeout, or a closed session (what a server that cannot place a write,
//! such as one that is no longer primary, does) send the request again to
//! the next server, with backoff, until the request's deadline.
//!
//! Which retries are safe. A read changes nothing, so resending it is
//! always safe. A write sets a customer's last order: resending the same
//! order after an unanswered attempt leaves the same record, whether the
//! first attempt was applied or not (it is idempotent). What a retry can
//! change is order *between writers*: if two clients write the same
//! customer at once, an attempt that timed out may still commit after the
//! other client's write; the factory has one writer per customer, so this
//! does not arise there. A reply that does not echo its request is a
//! protocol error and is not retried. A read sent to a backup during a
//! failover is answered from that backup's records (the server's read
//! rules, not the client's, decide how fresh that is).
//!
//! A paused or cut-off primary answers nothing and closes nothing: while a
//! reply is awaited the client asks the other servers, every 400 ms,
//! whether one is primary in a newer epoch with its lease, and if so sends
//! the request there rather than wait out its timeout. Looking for the
//! primary stops at the first leased primary that answers, so a server
//! that does not answer costs nothing either; when none is found yet, the
//! look waits for every answer (up to 300 ms), and the next look still
//! comes 400 ms after the previous one began.

use std::time::{Duration, Instant};

use super::connect::{self, Backoff};
use super::status::{self, ServerStatus};
use super::{Client, ClientError, Watch};
use crate::wire::status::Role;
use crate::wire::{CustomerRecord, RobotInfo};

/// How long a status request may take while looking for the primary.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// A reply not there after this long makes the client ask the other
/// servers whether a new primary was elected (a failover takes about
/// 0.4 s); answers slower than this under load cost one status round each.
const WATCH_EVERY: Duration = Duration::from_millis(400);

/// How long the watch's status requests may take.
const WATCH_STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// How a [`Cluster`] waits and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The longest one request may take, retries and failovers included.
    pub deadline: Duration,
    /// The longest one attempt waits on one server (connecting, or for
    /// an answer) before the request moves on to the next.
    pub attempt_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of a cluster, given several `host:port` addresses. Used by
/// one thread at a time; one session is open at a time.
pub struct Cluster {
    servers: Vec<String>,
    options: ClusterOptions,
    /// The open session and the index of its server.
    session: Option<(usize, Client)>,
    /// Where the next search starts: after the last server that failed.
    next: usize,
    failovers: u64,
}

impl Cluster {
    /// A client of `servers` (each `host:port`); connects on first use.
    ///
    /// # Errors
    /// [`ClientError::Resolve`] for an empty list or an address that is
    /// not `host:port`.
    pub fn new(servers: Vec<String>, options: ClusterOptions) -> Result<Cluster, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::Resolve {
                server: String::new(),
                reason: "the server list is empty".into(),
            });
        }
        for s in &servers {
            connect::split_host_port(s).map_err(|reason| ClientError::Resolve {
                server: s.clone(),
                reason,
            })?;
        }
        Ok(Cluster {
            servers,
            options,
            session: None,
            next: 0,
            failovers: 0,
        })
    }

    /// As [`Cluster::new`], then opens a session within the deadline.
    ///
    /// # Errors
    /// As [`Cluster::new`], or [`ClientError::Unavailable`] when no server
    /// could be reached in time.
    pub fn connect(servers: Vec<String>, options: ClusterOptions) -> Result<Cluster, ClientError> {
        let mut cluster = Cluster::new(servers, options)?;
        cluster.connect_now()?;
        Ok(cluster)
    }

    /// Opens a session now (rather than on first use), within the deadline.
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] when no server could be reached in time.
    pub fn connect_now(&mut self) -> Result<(), ClientError> {
        self.call(|_| Ok(()))
    }

    /// Places order `order_number` for `customer_id`, on whichever server
    /// serves it before the deadline.
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] when no server did;
    /// [`ClientError::Protocol`] for a reply that does not echo the order.
    pub fn order(&mut self, customer_id: i32, order_number: i32) -> Result<RobotInfo, ClientError> {
        self.call(|c| c.order(customer_id, order_number))
    }

    /// Sends a custom order (docs/protocol.md §2.5) to whichever server
    /// serves it before the deadline; its answer (done, busy, no experts)
    /// is returned as is, not retried.
    ///
    /// # Errors
    /// As [`Cluster::order`].
    pub fn custom(
        &mut self,
        customer_id: i32,
        order_number: i32,
    ) -> Result<crate::protocol::session::CustomStatus, ClientError> {
        self.call(|c| c.custom(customer_id, order_number))
    }

    /// Reads the committed record of `customer_id`.
    ///
    /// # Errors
    /// As [`Cluster::order`].
    pub fn read(&mut self, customer_id: i32) -> Result<CustomerRecord, ClientError> {
        self.call(|c| c.read(customer_id))
    }

    /// The server of the open session, if one is open.
    pub fn server(&self) -> Option<&str> {
        self.session.as_ref().map(|(_, c)| c.server())
    }

    /// How many times a failed session was given up for another.
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    /// The addresses given.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Ends the open session politely.
    pub fn close(self) {
        if let Some((_, client)) = self.session {
            client.close();
        }
    }

    fn call<T>(
        &mut self,
        mut request: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.options.deadline;
        let mut backoff = Backoff::default();
        let mut last = None;
        loop {
            if self.session.is_none() {
                if let Err(e) = self.open(deadline) {
                    last = Some(e);
                }
            }
            if let Some((index, client)) = &mut self.session {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < self.options.attempt_timeout {
                    client.set_timeout(Some(left.max(Duration::from_millis(1))));
                }
                match request(client) {
                    Ok(v) => return Ok(v),
                    Err(e) if retryable(&e) => {
                        log::debug!("{e}; trying the next server");
                        self.next = (*index + 1) % self.servers.len();
                        self.session = None;
                        self.failovers += 1;
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !backoff.sleep_until(deadline) {
                return Err(ClientError::Unavailable {
                    servers: self.servers.join(","),
                    deadline: self.options.deadline,
                    last: last.map(Box::new),
                });
            }
        }
    }

    /// One search: asks every server for its status and opens a session
    /// with the first that accepts, in [`preference`] order.
    fn open(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self
            .options
            .attempt_timeout
            .min(left)
            .max(Duration::from_millis(1));
        let statuses = status::fetch_until(
            &self.servers,
            timeout.min(STATUS_TIMEOUT),
            status::is_leased_primary,
        );
        let mut last = None;
        for index in preference(&statuses, self.next) {
            let address = &self.servers[index];
            let Ok((host, port)) = connect::split_host_port(address) else {
                continue;
            };
            match Client::connect(&host, port, Some(timeout)) {
                Ok(mut client) => {
                    let epoch = statuses[index].report().map_or(0, |r| r.epoch);
                    client.set_watch(self.watch(index, epoch));
                    self.session = Some((index, client));
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Connect {
            server: self.servers.join(","),
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "no server answered its status request",
            ),
        }))
    }
}

impl Cluster {
    /// The watch of a session with server `index`, known in `epoch`: a
    /// reply slow to come gives way once another server is primary in a
    /// newer epoch with its lease (the request is then sent there).
    fn watch(&self, index: usize, epoch: u64) -> Watch {
        let servers = self.servers.clone();
        Watch {
            every: WATCH_EVERY,
            give_up: Box::new(move || {
                let newer = |s: &ServerStatus| {
                    status::is_leased_primary(s) && s.report().is_some_and(|r| r.epoch > epoch)
                };
                status::fetch_until(&servers, WATCH_STATUS_TIMEOUT, newer)
                    .iter()
                    .enumerate()
                    .any(|(i, s)| i != index && newer(s))
            }),
        }
    }
}

/// Failures after which the request goes to another server.
fn retryable(e: &ClientError) -> bool {
    !matches!(e, ClientError::Protocol { .. })
}

/// The order in which to try the servers, from their statuses: primaries,
/// newest epoch first; then the other servers that answered, and then
/// those that sent no status (original servers), each group in rotation
/// order from `start`. Unreachable servers and invalid answers are left
/// out: a server is tried only if it answered something this round.
pub(crate) fn preference(statuses: &[ServerStatus], start: usize) -> Vec<usize> {
    let n = statuses.len();
    let rotation: Vec<usize> = (0..n).map(|i| (start + i) % n.max(1)).collect();
    let mut primaries: Vec<(u64, usize)> = rotation
        .iter()
        .filter_map(|&i| match &statuses[i] {
            ServerStatus::Report(r) if r.role == Role::Primary => Some((r.epoch, i)),
            _ => None,
        })
        .collect();
    // Stable: equal epochs keep the rotation order.
    primaries.sort_by_key(|p| std::cmp::Reverse(p.0));
    let mut order: Vec<usize> = primaries.into_iter().map(|(_, i)| i).collect();
    order.extend(
        rotation.iter().copied().filter(
            |&i| matches!(&statuses[i], ServerStatus::Report(r) if r.role != Role::Primary),
        ),
    );
    order.extend(
        rotation
            .iter()
            .copied()
            .filter(|&i| statuses[i] == ServerStatus::NoStatus),
    );
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::{Lease, StatusReport};

    fn report(id: i32, role: Role, epoch: u64) -> ServerStatus {
        ServerStatus::Report(StatusReport {
            factory_id: id,
            role,
            epoch,
            primary_id: -1,
            lease: Lease::None,
            lease_ms: 0,
            trusted: true,
            in_sync: vec![],
            last_index: -1,
            commit_index: -1,
            peers: vec![],
            clients: 0,
            uptime_ms: 0,
            balancer: None,
        })
    }

    #[test]
    fn the_newest_primary_comes_first_then_the_rotation() {
        let statuses = [
            report(0, Role::Primary, 1 << 16),
            report(1, Role::Backup, 2 << 16),
            report(2, Role::Primary, 2 << 16 | 2),
            ServerStatus::NoStatus,
            ServerStatus::Unreachable("refused".into()),
            ServerStatus::Invalid("junk".into()),
        ];
        assert_eq!(preference(&statuses, 0), [2, 0, 1, 3]);
        assert_eq!(preference(&statuses, 2), [2, 0, 1, 3]);
    }

    #[test]
    fn without_a_primary_the_rotation_starts_after_the_failed_server() {
        let statuses = [
            report(0, Role::Backup, 1),
            report(1, Role::Unknown, 1),
            report(2, Role::Backup, 1),
        ];
        assert_eq!(preference(&statuses, 1), [1, 2, 0]);
        assert_eq!(preference(&statuses, 3 % 3), [0, 1, 2]);
        let none = [
            ServerStatus::Unreachable("x".into()),
            ServerStatus::NoStatus,
        ];
        assert_eq!(preference(&none, 0), [1]);
        assert!(preference(&[], 0).is_empty());
    }

    #[test]
    fn bad_lists_are_refused() {
        let opts = ClusterOptions::default();
        assert!(Cluster::new(vec![], opts).is_err());
        assert!(Cluster::new(vec!["h:1".into(), "nope".into()], opts).is_err());
        assert!(Cluster::new(vec!["h:1".into()], opts).is_ok());
    }

    #[test]
    fn protocol_errors_are_final() {
        assert!(!retryable(&ClientError::Protocol {
            server: "s".into(),
            detail: "d".into()
        }));
        assert!(retryable(&ClientError::Closed { server: "s".into() }));
        assert!(retryable(&ClientError::Timeout { server: "s".into() }));
    }
}

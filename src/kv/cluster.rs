//! [`KvCluster`]: a v2 client of a list of servers that finds the primary
//! and follows it. The C API (`factory_kv_connect_cluster`), the bindings
//! and `client kv --servers` call it.
//!
//! A request goes to the server in use; an answer `NotPrimary` sends it to
//! the primary the answer names (any address, in the list or not), else to
//! the next server of the list; a connection that cannot be made, fails or
//! closes, and the statuses `Unavailable` and `Busy`, move it to the next
//! server after a short backoff. All of it within the deadline of the call.
//!
//! Resending is exact for reads and for a `NotPrimary` refusal (that server
//! wrote nothing). A write whose connection failed after it was sent may
//! have been committed: sent again, `put` commits it twice (a newer version
//! of the same value), while `create`, `cas`, `update` and `delete` may
//! answer the outcome of their own first commit (`Exists`, `Mismatch`,
//! `NotFound`). Callers who must tell apart read the key afterwards.

use std::thread;
use std::time::{Duration, Instant};

use super::typed::{self, Caller};
use super::{KvClient, KvClientError, KvReply};
use crate::client::connect::split_host_port;
use crate::wire::kv::{KvBody, KvItem, KvOp, KvResponse, KvStatus, Version};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// Deadlines of a [`KvCluster`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvClusterOptions {
    /// How long one call may take, every attempt and backoff included.
    pub deadline: Duration,
    /// How long one attempt on one server may wait (connect, or answer).
    pub attempt_timeout: Duration,
}

impl Default for KvClusterOptions {
    fn default() -> Self {
        KvClusterOptions {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// A v2 client of a cluster that follows the primary.
pub struct KvCluster {
    servers: Vec<String>,
    options: KvClusterOptions,
    /// The list entry tried next when the server in use fails.
    next: usize,
    /// The address a `NotPrimary` answer named, tried before the list.
    hint: Option<String>,
    client: Option<KvClient>,
}

impl KvCluster {
    /// A client of `servers` (each `host:port`); connects on first use or
    /// on [`Self::connect_now`].
    ///
    /// # Errors
    /// [`KvClientError::Protocol`] with the reason for an empty list or an
    /// entry that is not `host:port` (no server is contacted).
    pub fn new(servers: Vec<String>, options: KvClusterOptions) -> Result<Self, KvClientError> {
        if servers.is_empty() {
            return Err(bad_list("no server given"));
        }
        for s in &servers {
            split_host_port(s).map_err(|e| bad_list(&e))?;
        }
        Ok(KvCluster {
            servers,
            options,
            next: 0,
            hint: None,
            client: None,
        })
    }

    /// The address of the server in use, if connected.
    pub fn server(&self) -> Option<&str> {
        self.client.as_ref().map(KvClient::server)
    }

    /// Connects to the first server of the list that accepts, within the
    /// deadline.
    ///
    /// # Errors
    /// [`KvClientError::Unavailable`] when none did.
    pub fn connect_now(&mut self) -> Result<(), KvClientError> {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        for attempt in 0u32.. {
            let Some(left) = self.options.deadline.checked_sub(start.elapsed()) else {
                break;
            };
            if self.client.is_some() {
                return Ok(());
            }
            if let Err(e) = self.ensure_client(left) {
                last = e.to_string();
                self.backoff(attempt, start);
            }
        }
        Err(self.unavailable(last))
    }

    /// Sends `op` to the primary (found and followed as the module says)
    /// and returns its answer; never one with status `NotPrimary`, `Busy`
    /// or `Unavailable` (those are retried until the deadline).
    ///
    /// # Errors
    /// [`KvClientError::Unavailable`] when no server gave an answer before
    /// the deadline, [`KvClientError::Protocol`] for an answer that does
    /// not match the request.
    pub fn call(&mut self, op: KvOp) -> Result<KvResponse, KvClientError> {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        for attempt in 0u32.. {
            let Some(left) = self.options.deadline.checked_sub(start.elapsed()) else {
                break;
            };
            if let Err(e) = self.ensure_client(left) {
                last = e.to_string();
                self.backoff(attempt, start);
                continue;
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            match client.call(op.clone()) {
                Ok(answer) if answer.status == KvStatus::NotPrimary => {
                    last = format!("{} is not the primary", client.server());
                    self.hint = primary_named(&answer);
                    self.drop_client();
                    if self.hint.is_none() {
                        self.backoff(attempt, start);
                    }
                }
                Ok(answer) if matches!(answer.status, KvStatus::Busy | KvStatus::Unavailable) => {
                    last = format!("{} answered {:?}", client.server(), answer.status);
                    self.drop_client();
                    self.backoff(attempt, start);
                }
                Ok(answer) => return Ok(answer),
                // A refusal made before sending (a key or value over what
                // the protocol carries) would be refused by every server.
                Err(e @ KvClientError::Status { .. }) => return Err(e),
                Err(e @ KvClientError::Protocol { .. }) => {
                    self.drop_client();
                    return Err(e);
                }
                Err(e) => {
                    last = e.to_string();
                    self.drop_client();
                    self.backoff(attempt, start);
                }
            }
        }
        Err(self.unavailable(last))
    }

    /// Closes the connection in use; the next call connects again.
    pub fn close(&mut self) {
        self.client = None;
    }

    fn ensure_client(&mut self, left: Duration) -> Result<(), KvClientError> {
        if self.client.is_some() {
            return Ok(());
        }
        let address = match self.hint.take() {
            Some(h) => h,
            None => {
                let a = self.servers[self.next % self.servers.len()].clone();
                self.next = (self.next + 1) % self.servers.len();
                a
            }
        };
        let timeout = self.options.attempt_timeout.min(left).max(MIN_ATTEMPT);
        self.client = Some(KvClient::connect(address.as_str(), Some(timeout))?);
        Ok(())
    }

    fn drop_client(&mut self) {
        self.client = None;
    }

    /// Waits a little longer after each failed attempt, never past the
    /// deadline.
    fn backoff(&self, attempt: u32, start: Instant) {
        let wait = Duration::from_millis(10 * u64::from(attempt.min(20) + 1)).min(MAX_BACKOFF);
        let left = self.options.deadline.saturating_sub(start.elapsed());
        thread::sleep(wait.min(left));
    }

    fn unavailable(&self, last: String) -> KvClientError {
        KvClientError::Unavailable {
            servers: self.servers.join(","),
            last,
        }
    }
}

impl Caller for KvCluster {
    fn call_op(&mut self, op: KvOp) -> Result<KvResponse, KvClientError> {
        self.call(op)
    }

    fn name(&self) -> String {
        self.server()
            .map_or_else(|| self.servers.join(","), str::to_owned)
    }
}

/// The typed calls, as [`KvClient`]'s, on the primary.
impl KvCluster {
    /// The key's version and value, `None` if absent.
    ///
    /// # Errors
    /// As [`Self::call`], and [`KvClientError::Status`] for a refusal
    /// (`TooLarge`, `NoMemory`, `BadRequest`).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, KvClientError> {
        typed::get(self, key)
    }

    /// Sets the key's value; returns its version.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Version, KvClientError> {
        typed::put(self, key, value)
    }

    /// Sets the value only if the key is absent.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn create(&mut self, key: &[u8], value: &[u8]) -> Result<KvReply, KvClientError> {
        typed::create(self, key, value)
    }

    /// Sets the value only if the key is present.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn update(&mut self, key: &[u8], value: &[u8]) -> Result<KvReply, KvClientError> {
        typed::update(self, key, value)
    }

    /// Removes the key.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn delete(&mut self, key: &[u8]) -> Result<KvReply, KvClientError> {
        typed::delete(self, key)
    }

    /// Sets the value only if the key's version is `expected`.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: Version,
        value: &[u8],
    ) -> Result<KvReply, KvClientError> {
        typed::cas(self, key, expected, value)
    }

    /// Up to `limit` keys from `start` in byte order, and whether more
    /// follow.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn scan(&mut self, start: &[u8], limit: u32) -> Result<(Vec<KvItem>, bool), KvClientError> {
        typed::scan(self, start, limit)
    }
}

/// Shortest timeout of one attempt, so that a deadline about to pass still
/// gets a real try.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// The `host:port` a `NotPrimary` answer names, if it names one.
fn primary_named(answer: &KvResponse) -> Option<String> {
    match &answer.body {
        KvBody::Text(t) => {
            let text = std::str::from_utf8(t).ok()?;
            split_host_port(text).ok().map(|_| text.to_owned())
        }
        _ => None,
    }
}

fn bad_list(detail: &str) -> KvClientError {
    KvClientError::Protocol {
        server: "(server list)".into(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_checked_before_anything_is_contacted() {
        assert!(KvCluster::new(vec![], KvClusterOptions::default()).is_err());
        assert!(KvCluster::new(vec!["no-port".into()], KvClusterOptions::default()).is_err());
        assert!(KvCluster::new(vec!["a:1".into()], KvClusterOptions::default()).is_ok());
    }

    #[test]
    fn a_refusal_names_the_primary_only_as_host_port() {
        let answer = |t: &[u8]| KvResponse {
            id: 1,
            op: 2,
            status: KvStatus::NotPrimary,
            body: KvBody::Text(t.to_vec()),
        };
        assert_eq!(
            primary_named(&answer(b"127.0.0.1:5000")).as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(primary_named(&answer(b"")), None);
        assert_eq!(primary_named(&answer(b"\xff:1")), None);
    }

    #[test]
    fn what_no_server_takes_is_refused_at_once_and_the_rest_goes_through() {
        use crate::server::{Server, ServerConfig};
        use crate::wire::kv::KEY_CEILING;
        let server = Server::start(ServerConfig::loopback(0, 0)).expect("server");
        let options = KvClusterOptions {
            deadline: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        };
        let mut c = KvCluster::new(vec![server.local_addr().to_string()], options).unwrap();
        let started = Instant::now();
        let huge = vec![b'k'; KEY_CEILING + 1];
        assert!(matches!(
            c.put(&huge, b"v"),
            Err(KvClientError::Status {
                status: KvStatus::TooLarge,
                ..
            })
        ));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused without waiting for the deadline"
        );
        let version = c.put(b"k", b"v").unwrap();
        assert_eq!(c.get(b"k").unwrap(), Some((version, b"v".to_vec())));
        assert_eq!(c.create(b"k", b"w").unwrap(), KvReply::Exists(version));
        drop(c);
        server.stop();
    }

    #[test]
    fn nothing_reachable_is_unavailable_at_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let options = KvClusterOptions {
            deadline: Duration::from_millis(300),
            attempt_timeout: Duration::from_millis(100),
        };
        let mut c = KvCluster::new(vec![format!("127.0.0.1:{port}")], options).unwrap();
        let started = Instant::now();
        assert!(matches!(
            c.call(KvOp::Get { key: b"k".to_vec() }),
            Err(KvClientError::Unavailable { .. })
        ));
        assert!(matches!(
            c.connect_now(),
            Err(KvClientError::Unavailable { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

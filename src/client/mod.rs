//! The client side: [`Client`], a blocking stub for one session (the
//! original's `ClientStub`); [`Cluster`], a client of a list of servers
//! that finds the primary and rides through failovers; [`status`], the
//! cluster status request; and [`load`], the multi-threaded load generator
//! behind the `client` binary (the original's `ClientThread`).

pub mod cluster;
pub mod connect;
pub mod kv_command;
pub mod kv_load;
pub mod load;
pub mod output;
mod stats;
pub mod status;

pub use cluster::{Cluster, ClusterOptions};
pub use stats::{Percentiles, Stats, StatsLine};

use std::fmt;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::conn::{read_frame, write_frame, ConnError};
use crate::wire::{CustomerRecord, RobotInfo, RobotOrder, CLIENT_TAG};

/// How a client call failed. Every variant names the server.
#[derive(Debug)]
pub enum ClientError {
    /// The host name did not resolve.
    Resolve { server: String, reason: String },
    /// No connection could be made.
    Connect {
        server: String,
        source: std::io::Error,
    },
    /// The server closed the session.
    Closed { server: String },
    /// The server did not answer within the timeout.
    Timeout { server: String },
    /// Another socket error.
    Io { server: String, source: ConnError },
    /// The server answered with a frame that does not match the request.
    Protocol { server: String, detail: String },
    /// No server of a cluster's list served the request before the
    /// deadline; `last` is the last failure seen.
    Unavailable {
        servers: String,
        deadline: Duration,
        last: Option<Box<ClientError>>,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { server, reason } => {
                write!(f, "cannot resolve server {server}: {reason}")
            }
            ClientError::Connect { server, source } => {
                write!(f, "cannot reach server {server}: {source}")
            }
            ClientError::Closed { server } => {
                write!(f, "server {server} closed the connection")
            }
            ClientError::Timeout { server } => write!(f, "server {server} did not answer in time"),
            ClientError::Io { server, source } => write!(f, "server {server}: {source}"),
            ClientError::Protocol { server, detail } => {
                write!(f, "server {server} sent an unexpected reply: {detail}")
            }
            ClientError::Unavailable {
                servers,
                deadline,
                last,
            } => {
                write!(f, "no server of {servers} answered within {deadline:?}")?;
                match last {
                    Some(e) => write!(f, " (last error: {e})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// One client session with a server. Used by one thread at a time.
pub struct Client {
    stream: TcpStream,
    server: String,
    watch: Option<Watch>,
}

/// While a reply is awaited, `give_up` is asked every `every` whether to
/// stop waiting: a cluster client's test for "another primary was
/// elected" (a paused or cut-off server answers nothing, and would hold
/// the request for the whole timeout).
pub(crate) struct Watch {
    pub(crate) every: Duration,
    pub(crate) give_up: Box<dyn FnMut() -> bool + Send>,
}

/// When a watch's checks are due: every `every` from the start of the
/// wait, however long each check took (a check that waits for a cut-off
/// server's status does not push the next one back).
struct Cadence {
    next: Instant,
    every: Duration,
}

impl Cadence {
    fn new(start: Instant, every: Duration) -> Self {
        Cadence {
            next: start + every,
            every,
        }
    }

    /// How long to wait for the reply before looking again: until the next
    /// check or the deadline, at least a millisecond.
    fn slice(&self, now: Instant, deadline: Option<Instant>) -> Duration {
        let until = deadline.map_or(self.next, |d| d.min(self.next));
        until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// True if a check is due at `now`; the next is then one period on
    /// (periods missed while a check ran are skipped, not made up).
    fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        while self.next <= now {
            self.next += self.every;
        }
        true
    }
}

impl Client {
    /// Connects to `host:port`, sends the `CLIENT` handshake, and uses
    /// `timeout` (if any) for connecting and for every later read and write.
    ///
    /// # Errors
    /// [`ClientError::Resolve`] or [`ClientError::Connect`] when no session
    /// could be opened.
    pub fn connect(
        host: &str,
        port: u16,
        timeout: Option<Duration>,
    ) -> Result<Client, ClientError> {
        Self::connect_retrying(host, port, timeout, Duration::ZERO)
    }

    /// As [`Client::connect`], but a refused or reset connect is retried
    /// with backoff ([`connect::Backoff`]) until `budget` has passed.
    ///
    /// # Errors
    /// As [`Client::connect`], once the budget is spent.
    pub fn connect_retrying(
        host: &str,
        port: u16,
        timeout: Option<Duration>,
        budget: Duration,
    ) -> Result<Client, ClientError> {
        let server = format!("{host}:{port}");
        let addrs = connect::resolve(host, port).map_err(|e| ClientError::Resolve {
            server: server.clone(),
            reason: e.to_string(),
        })?;
        let stream =
            connect::connect(&addrs, timeout, budget).map_err(|source| ClientError::Connect {
                server: server.clone(),
                source,
            })?;
        let mut client = Client {
            stream,
            server,
            watch: None,
        };
        client.configure(timeout)?;
        client
            .stream
            .write_all(&CLIENT_TAG)
            .map_err(|e| client.io(e.into()))?;
        Ok(client)
    }

    fn configure(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        let s = &self.stream;
        s.set_nodelay(true)
            .and_then(|()| s.set_read_timeout(timeout))
            .and_then(|()| s.set_write_timeout(timeout))
            .map_err(|e| self.io(e.into()))
    }

    /// Changes the timeout of every later read and write (`None`: none).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        let _ = self.configure(timeout);
    }

    /// The server this client talks to, as `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Places order `order_number` for `customer_id` and waits until the
    /// server has committed it.
    ///
    /// # Errors
    /// The connection failed, or the reply did not echo the request.
    pub fn order(&mut self, customer_id: i32, order_number: i32) -> Result<RobotInfo, ClientError> {
        let order = RobotOrder::write(customer_id, order_number);
        let info: RobotInfo = self.call(&order)?;
        if !info.answers(&order) {
            return Err(self.protocol(format!("{info:?} does not answer {order:?}")));
        }
        Ok(info)
    }

    /// Sends a custom order (docs/protocol.md §2.5) and returns how the
    /// server answered: done (an expert did it and it is committed), busy
    /// (nothing written) or no experts (nothing written).
    ///
    /// # Errors
    /// The connection failed, or the reply did not echo the order or
    /// carries an undocumented status.
    pub fn custom(
        &mut self,
        customer_id: i32,
        order_number: i32,
    ) -> Result<crate::protocol::session::CustomStatus, ClientError> {
        let order = RobotOrder::custom(customer_id, order_number);
        let info: RobotInfo = self.call(&order)?;
        if !info.answers(&order) {
            return Err(self.protocol(format!("{info:?} does not answer {order:?}")));
        }
        crate::protocol::session::CustomStatus::from_code(info.admin_id).ok_or_else(|| {
            self.protocol(format!(
                "custom order status {} is none of 0, -1, -2",
                info.admin_id
            ))
        })
    }

    /// Reads the committed record of `customer_id` (`last_order` -1: none).
    ///
    /// # Errors
    /// The connection failed, or the reply is for another customer.
    pub fn read(&mut self, customer_id: i32) -> Result<CustomerRecord, ClientError> {
        let record: CustomerRecord = self.call(&RobotOrder::read(customer_id))?;
        if record.customer_id != customer_id {
            return Err(self.protocol(format!(
                "record of customer {} for a read of customer {customer_id}",
                record.customer_id
            )));
        }
        Ok(record)
    }

    fn call<R: crate::wire::Frame>(&mut self, request: &RobotOrder) -> Result<R, ClientError> {
        let reply = write_frame(&mut self.stream, request)
            .map_err(|e| self.io(e))
            .and_then(|()| self.await_reply())
            .and_then(|()| read_frame(&mut self.stream).map_err(|e| self.io(e)));
        if let Err(ClientError::Timeout { .. }) = &reply {
            self.abandon();
        }
        reply
    }

    /// The request that timed out is given up: the connection will close
    /// with a reset, so that the kernel drops what it has not delivered
    /// yet (a cut link would otherwise deliver the write after the heal,
    /// on top of newer ones; v1 requests carry no id to tell it by).
    fn abandon(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
    }

    /// Watches the session while a reply is awaited (see [`Watch`]).
    pub(crate) fn set_watch(&mut self, watch: Watch) {
        self.watch = Some(watch);
    }

    /// With a watch: waits until the reply's first byte (or the close) is
    /// there, in slices of `every`, giving up when the watch says so or the
    /// session's timeout passes. Nothing is consumed (`peek`), so the
    /// frame is then read whole.
    fn await_reply(&mut self) -> Result<(), ClientError> {
        let Some(watch) = self.watch.as_mut() else {
            return Ok(());
        };
        let timeout = self.stream.read_timeout().ok().flatten();
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let mut checks = Cadence::new(start, watch.every);
        let mut byte = [0u8; 1];
        let outcome = loop {
            let slice = checks.slice(Instant::now(), deadline);
            if self.stream.set_read_timeout(Some(slice)).is_err() {
                break Ok(());
            }
            match self.stream.peek(&mut byte) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        break Err(());
                    }
                    if checks.due(now) && (watch.give_up)() {
                        break Err(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Data, the close, or an error that the read will report.
                _ => break Ok(()),
            }
        };
        let _ = self.stream.set_read_timeout(timeout);
        outcome.map_err(|()| ClientError::Timeout {
            server: self.server.clone(),
        })
    }

    /// Ends the session politely (the server sends no reply) and closes.
    pub fn close(mut self) {
        let _ = write_frame(&mut self.stream, &RobotOrder::end_of_session());
    }

    fn io(&self, e: ConnError) -> ClientError {
        let server = self.server.clone();
        match e {
            ConnError::Closed | ConnError::Truncated { .. } => ClientError::Closed { server },
            ConnError::Timeout => ClientError::Timeout { server },
            source => ClientError::Io { server, source },
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            server: self.server.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn watch_checks_keep_their_cadence_however_long_a_check_takes() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut checks = Cadence::new(start, ms(400));
        assert_eq!(checks.slice(start, None), ms(400));
        assert!(!checks.due(start + ms(399)), "not before its period");
        assert!(checks.due(start + ms(400)));
        // The check took 300 ms: the next one is 100 ms away, not 400.
        assert_eq!(checks.slice(start + ms(700), None), ms(100));
        assert!(!checks.due(start + ms(700)));
        assert!(checks.due(start + ms(800)));
        // A check that overran whole periods: one check is due, and the
        // next falls on the cadence after it, not once per missed period.
        assert!(checks.due(start + ms(2_100)));
        assert!(
            !checks.due(start + ms(2_150)),
            "one check for the missed periods"
        );
        assert_eq!(checks.slice(start + ms(2_150), None), ms(250));
        assert_eq!(
            checks.slice(start + ms(2_300), Some(start + ms(2_350))),
            ms(50)
        );
        assert_eq!(
            checks.slice(start + ms(2_400), Some(start + ms(2_350))),
            ms(1)
        );
    }

    use super::*;
    use std::io::Read;

    /// A request that timed out is given up for good: the connection ends
    /// with a reset, so that a cut link cannot deliver it after its heal.
    #[test]
    fn a_timed_out_request_resets_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = Client::connect("127.0.0.1", port, Some(Duration::from_millis(100))).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        server_side
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(matches!(c.read(7), Err(ClientError::Timeout { .. })));
        drop(c);
        let mut buf = [0u8; 64];
        let mut end = None;
        for _ in 0..10 {
            match server_side.read(&mut buf) {
                Ok(0) => end = Some("an orderly close"),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => end = Some("a reset"),
                Err(e) => panic!("{e}"),
            }
            break;
        }
        assert_eq!(end, Some("a reset"));
    }
}

//! A client session (the original's "engineer" thread): reads 12-byte
//! requests and answers each. Writes go through the admin thread and are
//! answered once committed; on a backup they are forwarded to the primary
//! (G2), never applied here first. Reads follow the rule of G6
//! ([`super::reads`]); one that cannot be answered up to date in time
//! closes the session.
//!
//! What to do with the bytes received is decided by
//! [`crate::protocol::session`] (no I/O there, so that property tests and
//! fuzzers run the very same decisions); this file does the socket I/O,
//! the waiting and the logging. Departures from the original, which trusts
//! its clients: hostile input closes the session with a warning naming the
//! client (see the protocol module); a client that begins a request must
//! finish it within the handshake timeout; one that stops taking its
//! replies is dropped after the client write timeout.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use std::time::{Duration, Instant};

use super::experts::Refusal;
use super::forward::Forwarder;
use crate::protocol::session::{
    custom_reply, read_reply, write_reply, Action, ClientSession, CustomStatus, Violation,
    REQUEST_LEN,
};
use crate::server::metrics::Fault;
use crate::server::primary::admin::Completion;
use crate::server::primary::WriteError;
use crate::server::status::CountedSession;
use crate::server::Shared;

/// Bytes read from the socket at once: a pipelining client's requests are
/// taken 21 at a time, and the buffer lives on the connection's small stack.
const READ_CHUNK: usize = 256;

/// Why a session ended.
enum SessionEnd {
    /// The client closed between requests, or sent customer id -1.
    Closed,
    /// The client closed after `got` bytes of a request.
    Truncated { got: usize },
    /// The client sent `got` bytes of a request, then nothing in time.
    Stalled { got: usize },
    /// The client did not take a reply within the write timeout.
    ReplyTimeout,
    /// The client went away (reset) before taking its reply.
    Gone(io::Error),
    /// Any other socket error.
    Io(io::Error),
    /// The write could not be placed.
    Write(WriteError),
    /// The input makes no sense on a client session.
    Violation(Violation),
    /// A read could not be answered with up-to-date records (G6).
    Read(super::reads::ReadError),
}

impl SessionEnd {
    /// The `factory_errors_total` kind, for the ends that are errors.
    fn error_kind(&self) -> Option<Fault> {
        match self {
            SessionEnd::Closed | SessionEnd::Truncated { .. } | SessionEnd::Gone(_) => None,
            SessionEnd::Stalled { .. } => Some(Fault::ClientStalled),
            SessionEnd::ReplyTimeout => Some(Fault::ClientReplyTimeout),
            SessionEnd::Io(_) => Some(Fault::ClientIo),
            SessionEnd::Write(_) => Some(Fault::WriteRefused),
            SessionEnd::Violation(_) => Some(Fault::ClientProtocol),
            SessionEnd::Read(_) => Some(Fault::ReadRefused),
        }
    }
}

pub(crate) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr, engineer_id: i32) {
    let _counted = CountedSession::new(shared);
    // A client may stay idle as long as it likes, but must take its replies.
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(shared.limits.client_write_timeout));
    let mut conn = Conn {
        stream,
        read_timeout: None,
        frame_timeout: shared.limits.handshake_timeout,
        request_deadline: None,
    };
    let end = serve(shared, &mut conn, engineer_id);
    if let Some(kind) = end.error_kind() {
        shared.metrics.error(kind);
    }
    let limits = &shared.limits;
    match end {
        SessionEnd::Closed => {
            log::debug!("client {peer} (engineer {engineer_id}) ended its session")
        }
        SessionEnd::Truncated { got } => log::debug!(
            "client {peer}: connection closed after {got} of {REQUEST_LEN} bytes of a request"
        ),
        SessionEnd::Gone(e) => log::debug!("client {peer}: gone before taking its reply ({e})"),
        SessionEnd::Stalled { got } => log::warn!(
            "client {peer}: sent {got} of {REQUEST_LEN} bytes of a request, then nothing for {:?}; closing",
            limits.handshake_timeout
        ),
        SessionEnd::ReplyTimeout => log::warn!(
            "client {peer}: did not take its reply within {:?} (it stopped reading); closing",
            limits.client_write_timeout
        ),
        SessionEnd::Io(e) => log::warn!("client {peer}: {e}; closing"),
        SessionEnd::Write(e) => log::warn!("client {peer}: write failed: {e}; closing"),
        SessionEnd::Violation(v) => log::warn!("client {peer}: {v}; closing"),
        SessionEnd::Read(e) => log::warn!("client {peer}: read not answered: {e}; closing"),
    }
}

/// The socket, with the read timeout it currently has.
struct Conn {
    stream: TcpStream,
    /// The read timeout set on the socket (`None`: waits forever).
    read_timeout: Option<Duration>,
    /// How long a request may take to arrive once begun.
    frame_timeout: Duration,
    /// When the request begun must be complete.
    request_deadline: Option<Instant>,
}

impl Conn {
    /// Reads what the client sent into `buf`. Between requests it waits as
    /// long as the client likes; a request begun (`partial` bytes held) must
    /// be complete within `frame_timeout`, however slowly its bytes come.
    /// The timeout is changed only when a request is cut across reads, so a
    /// client sending whole requests costs no extra system call.
    fn fill(&mut self, buf: &mut [u8], partial: usize) -> Result<usize, SessionEnd> {
        let wanted = if partial == 0 {
            self.request_deadline = None;
            None
        } else {
            let timeout = self.frame_timeout;
            let deadline = *self
                .request_deadline
                .get_or_insert_with(|| Instant::now() + timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SessionEnd::Stalled { got: partial });
            }
            Some(left)
        };
        if wanted != self.read_timeout {
            self.stream
                .set_read_timeout(wanted)
                .map_err(SessionEnd::Io)?;
            self.read_timeout = wanted;
        }
        loop {
            return match self.stream.read(buf) {
                Ok(0) if partial == 0 => Err(SessionEnd::Closed),
                Ok(0) => Err(SessionEnd::Truncated { got: partial }),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => Err(SessionEnd::Stalled { got: partial }),
                Err(e) if is_gone(&e) => Err(SessionEnd::Gone(e)),
                Err(e) => Err(SessionEnd::Io(e)),
            };
        }
    }

    /// Sends a reply; a client that does not take it within the write
    /// timeout is dropped.
    fn reply(&mut self, bytes: &[u8]) -> Result<(), SessionEnd> {
        self.stream.write_all(bytes).map_err(|e| match e {
            e if is_timeout(&e) => SessionEnd::ReplyTimeout,
            e if is_gone(&e) => SessionEnd::Gone(e),
            e => SessionEnd::Io(e),
        })
    }
}

impl Conn {
    /// True if the client closed its end (or reset it) with nothing more
    /// to read: it gave up on the request it sent last.
    fn client_hung_up(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let gone = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => is_gone(&e),
        };
        let _ = self.stream.set_nonblocking(false);
        gone
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

fn serve(shared: &Shared, conn: &mut Conn, engineer_id: i32) -> SessionEnd {
    let done = Arc::new(Completion::new());
    let mut forwarder = Forwarder::default();
    let mut session = ClientSession::new();
    let mut buf = [0u8; READ_CHUNK];
    let (mut at, mut len) = (0, 0);
    loop {
        let (used, action) = session.receive(&buf[at..len]);
        at += used;
        let step = match action {
            Action::NeedInput => match conn.fill(&mut buf, session.partial()) {
                Ok(n) => {
                    (at, len) = (0, n);
                    Ok(())
                }
                Err(end) => Err(end),
            },
            Action::Write {
                customer_id,
                order_number,
            } => super::write::place_while(
                shared,
                customer_id,
                order_number,
                &done,
                &mut forwarder,
                &|| !conn.client_hung_up(),
            )
            .map_err(SessionEnd::Write)
            .and_then(|()| conn.reply(&write_reply(customer_id, order_number, engineer_id)))
            .map(|()| shared.metrics.writes.inc()),
            Action::Read { customer_id } => super::reads::read(shared, customer_id, &mut forwarder)
                .map_err(SessionEnd::Read)
                .and_then(|last_order| conn.reply(&read_reply(customer_id, last_order)))
                .map(|()| shared.metrics.reads.inc()),
            Action::Custom {
                customer_id,
                order_number,
            } => custom(shared, customer_id, order_number)
                .map_err(SessionEnd::Write)
                .and_then(|status| {
                    conn.reply(&custom_reply(
                        customer_id,
                        order_number,
                        engineer_id,
                        status,
                    ))
                }),
            Action::End => return SessionEnd::Closed,
            Action::Close(v) => return SessionEnd::Violation(v),
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// Hands a custom order to an expert and waits for it to be written; a
/// full queue or a server without experts is answered at once.
fn custom(
    shared: &Shared,
    customer_id: i32,
    order_number: i32,
) -> Result<CustomStatus, WriteError> {
    match shared.experts.submit(customer_id, order_number) {
        Ok(job) => job.wait().map(|()| CustomStatus::Done),
        Err(Refusal::Busy) => Ok(CustomStatus::Busy),
        Err(Refusal::NoExperts) => Ok(CustomStatus::NoExperts),
        Err(Refusal::Stopping) => Err(WriteError::Stopping),
    }
}

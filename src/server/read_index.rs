//! Read-index (G6): a backup learns the primary's commit point before it
//! answers a read from its own records.
//!
//! Backup side, [`ReadIndexClient`]: one native connection per server to
//! the primary, shared by every session. A read needs the answer to a
//! request sent after it began; reads that arrive while a request is in
//! flight wait for the next one, so one round trip serves every read that
//! waited for it, however many sessions read at once. A read may also take
//! a [`Ticket`] when it begins and ask later (a v2 connection's pipelined
//! reads): any answer to a request numbered at or past it will do.
//!
//! Primary side, [`answer`] (called by `follower` for a connection whose
//! first frame is a `ReadIndex`): its commit point if it is an established
//! primary ([`crate::replication::commit_point_for_asker`]), and a push of
//! that point to the backups, so that they apply it now rather than with
//! the next heartbeat.

use std::fmt;
use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Shared;
use crate::conn::{read_native, write_native, ConnError, NativeError};
use crate::replication::commit_point_for_asker;
use crate::wire::native::{Body, NativeFrame, NATIVE_TAG};

/// Longest wait of a new primary for its first commit before it answers a
/// read-index request (a takeover commits within milliseconds).
const ESTABLISH_WAIT: Duration = Duration::from_millis(500);

/// Why no commit point was learned.
#[derive(Clone, Debug)]
pub(crate) enum AskError {
    /// The primary is not a configured peer, or cannot be reached.
    Unreachable(String),
    /// It answered that it cannot give one (not primary, or not yet).
    NotServing(String),
    /// The connection failed or timed out.
    Link(String),
    /// The read's deadline passed while waiting.
    Deadline,
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Unreachable(why) => write!(f, "cannot reach it: {why}"),
            AskError::NotServing(who) => {
                write!(f, "it gives no commit point (it names primary {who})")
            }
            AskError::Link(why) => write!(f, "{why}"),
            AskError::Deadline => write!(f, "no answer in time"),
        }
    }
}

/// The connection to the primary last asked.
struct Link {
    primary: i32,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    scratch: Vec<u8>,
}

#[derive(Default)]
struct Asking {
    /// Requests begun so far; the last one is in flight while `busy`.
    begun: u64,
    busy: bool,
    /// Number of the last request answered, and its answer.
    answered: u64,
    answer: Option<Result<i32, AskError>>,
    link: Option<Link>,
}

/// The number of a read-index request not begun yet, taken when a read
/// began ([`ReadIndexClient::ticket`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// A backup's requests for the primary's commit point, shared by sessions.
#[derive(Default)]
pub(crate) struct ReadIndexClient {
    state: Mutex<Asking>,
    done: Condvar,
}

impl ReadIndexClient {
    fn lock(&self) -> MutexGuard<'_, Asking> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first request that will begin after this call: its answer, or
    /// any later one, covers every write acknowledged before the call.
    /// A read takes one when it begins and asks later with it, so that the
    /// reads a pipelined connection holds share one request.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().begun + 1)
    }

    /// The commit point of `primary` as of a moment after `since` was
    /// taken (`None`: after this call began).
    pub(crate) fn commit_point(
        &self,
        shared: &Shared,
        primary: i32,
        deadline: Instant,
        since: Option<Ticket>,
    ) -> Result<i32, AskError> {
        let mut state = self.lock();
        // A request already in flight may have been sent before we began.
        let needed = since.map_or(state.begun + 1, |t| t.0);
        loop {
            if state.answered >= needed {
                if let Some(answer) = &state.answer {
                    return answer.clone();
                }
            }
            if !state.busy {
                state.busy = true;
                state.begun += 1;
                let mine = state.begun;
                let link = state.link.take();
                drop(state);
                let (answer, link) = ask(shared, primary, link, deadline);
                state = self.lock();
                state.busy = false;
                state.answered = mine;
                state.answer = Some(answer);
                state.link = link;
                self.done.notify_all();
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AskError::Deadline);
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One request on `link` (or a new connection), and the link to keep.
fn ask(
    shared: &Shared,
    primary: i32,
    link: Option<Link>,
    deadline: Instant,
) -> (Result<i32, AskError>, Option<Link>) {
    let mut link = match link {
        Some(l) if l.primary == primary => l,
        _ => match connect(shared, primary, deadline) {
            Ok(l) => l,
            Err(e) => return (Err(e), None),
        },
    };
    match request(shared, &mut link, deadline) {
        Ok(point) => (Ok(point), Some(link)),
        // After a rejection or an error the connection is closed.
        Err(e) => (Err(e), None),
    }
}

fn request(shared: &Shared, link: &mut Link, deadline: Instant) -> Result<i32, AskError> {
    // Registered while in use, so that stopping the server wakes us.
    let _registered = shared
        .registry
        .register(&link.stream)
        .ok_or_else(|| AskError::Link("server stopping".into()))?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(AskError::Deadline);
    }
    let link_err = |e: ConnError| AskError::Link(e.to_string());
    link.stream
        .set_read_timeout(Some(left))
        .map_err(|e| link_err(e.into()))?;
    let epoch = shared.replica().epoch();
    let frame = NativeFrame::new(
        epoch,
        Body::ReadIndex {
            replica_id: shared.factory_id,
        },
    );
    write_native(&mut link.stream, &frame, &mut link.scratch).map_err(link_err)?;
    let reply = read_native(&mut link.reader, &mut link.scratch).map_err(|e| match e {
        NativeError::Conn(ConnError::Timeout) => AskError::Deadline,
        e => AskError::Link(e.to_string()),
    })?;
    match reply.body {
        Body::ReadIndexReply { commit_index } => Ok(commit_index),
        Body::Reject { reason, .. } => Err(AskError::NotServing(reason)),
        other => Err(AskError::Link(format!(
            "expected a read-index reply, got {}",
            other.name()
        ))),
    }
}

fn connect(shared: &Shared, primary: i32, deadline: Instant) -> Result<Link, AskError> {
    let peer = shared
        .peer_list()
        .into_iter()
        .find(|p| p.id == primary)
        .ok_or_else(|| AskError::Unreachable("not a configured peer".into()))?;
    let addrs = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| AskError::Unreachable(e.to_string()))?;
    let mut last = AskError::Unreachable(format!("{} has no address", peer.addr()));
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AskError::Deadline);
        }
        let wait = left.min(shared.limits.connect_timeout);
        match TcpStream::connect_timeout(&addr, wait).and_then(|s| open(s, shared)) {
            Ok(stream) => {
                let reader = BufReader::new(
                    stream
                        .try_clone()
                        .map_err(|e| AskError::Link(e.to_string()))?,
                );
                return Ok(Link {
                    primary,
                    stream,
                    reader,
                    scratch: Vec::new(),
                });
            }
            Err(e) => last = AskError::Unreachable(format!("{}: {e}", peer.addr())),
        }
    }
    Err(last)
}

fn open(mut stream: TcpStream, shared: &Shared) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(shared.limits.peer_timeout))?;
    stream.write_all(&NATIVE_TAG)?;
    Ok(stream)
}

/// Primary side: the commit point to give a backup that asked, waiting
/// briefly for a takeover's first commit; `Err` names the primary this
/// server knows instead (or -1), for the rejection.
pub(crate) fn answer(shared: &Shared) -> Result<i32, String> {
    let role = &shared.role;
    let deadline = Instant::now() + ESTABLISH_WAIT;
    role.wait_until(shared, deadline, |v| {
        v.primary != v.me || commit_point_for_asker(v).is_some()
    });
    let view = role.read_view(shared);
    match commit_point_for_asker(&view) {
        Some(point) => {
            shared.repl.push_commit(point);
            Ok(point)
        }
        None => Err(view.primary.to_string()),
    }
}

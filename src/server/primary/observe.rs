//! The primary's side of an observer stream (`wire::observe`, issue 16.3):
//! a balancer that caches reads subscribes with the index it has applied,
//! and this connection's thread sends it every committed entry after that,
//! in order, from the in-memory log, and answers its confirmation requests
//! with the commit point. Called by `accept` for a connection that sent
//! the observer tag.
//!
//! Nothing here is on the commit path: the thread sleeps on the role
//! view's change notification, which every release of the replica lock
//! already gives when the commit point moves, and reads the log under
//! that lock only to clone the new committed entries. An observer never
//! votes and is never waited for; a slow one only falls behind, and one
//! whose next entry was compacted away is told to start again.
//!
//! A second thread per connection reads the observer's confirmation
//! requests and answers each itself (sending first any committed entry not
//! sent yet), so that a confirmation costs no extra thread hop; the two
//! share the socket's sending side behind one lock.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::server::read_index;
use crate::server::registry::CONNECTION_STACK;
use crate::server::Shared;
use crate::wire::observe::{observe_batch_len, read_observe, ObserveFrame};
use crate::wire::{Entry, Epoch};

/// A stream idle this long gets a heartbeat, so the observer can tell a
/// quiet primary from a lost one.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);

/// Where a new observer's stream starts: after `applied` when the log
/// still holds the entry after it and it is not past the commit point,
/// else (`reset`) after the commit point, the observer forgetting all.
pub(crate) fn start_point(applied: Option<i32>, first_index: i32, commit: i32) -> (bool, i32) {
    match applied {
        Some(a) if a >= first_index - 1 && a <= commit => (false, a),
        _ => (true, commit),
    }
}

/// What the two threads of one connection share.
struct Connection<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    sender: Mutex<Sender>,
    /// Every entry through it has been sent (a copy of the sender's, read
    /// without its lock by the streaming thread's wait).
    sent: AtomicI32,
    /// The connection is over (the observer left, sent something wrong,
    /// or this server may no longer serve it).
    ended: AtomicBool,
}

impl Connection<'_> {
    fn sender(&self) -> MutexGuard<'_, Sender> {
        // The sender is consistent between its calls.
        self.sender.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        let _ = self.sender().stream.shutdown(Shutdown::Both);
        self.shared.role.changes.notify();
    }
}

/// Serves one observer connection until it ends or the server stops.
pub(crate) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_write_timeout(Some(shared.limits.peer_timeout));
    let sender = match Sender::open(shared, stream, peer) {
        Ok(s) => s,
        Err(why) => return log::info!("observer {peer}: {why}; closing"),
    };
    let reader_stream = match sender.stream.try_clone() {
        Ok(r) => r,
        Err(e) => return log::warn!("observer {peer}: cannot share the socket ({e}); closing"),
    };
    let both = Connection {
        shared,
        peer,
        sent: AtomicI32::new(sender.sent),
        sender: Mutex::new(sender),
        ended: AtomicBool::new(false),
    };
    thread::scope(|scope| {
        let reader = thread::Builder::new()
            .name("observe-requests".into())
            .stack_size(CONNECTION_STACK)
            .spawn_scoped(scope, || read_requests(&both, reader_stream));
        let end = match reader {
            Ok(_) => stream_commits(&both),
            Err(e) => format!("cannot start its request reader ({e})"),
        };
        log::info!(
            "observer {peer}: {end}; closing (sent through {})",
            both.sent.load(Ordering::Acquire)
        );
        // Ends the reader, which the scope then joins.
        both.end();
    });
}

/// Sends each commit as it happens, and a heartbeat when idle, until the
/// connection ends or the server stops; says why it ended.
fn stream_commits(both: &Connection<'_>) -> String {
    let shared = both.shared;
    let mut quiet_since = Instant::now();
    loop {
        let sent = both.sent.load(Ordering::Acquire);
        shared
            .role
            .wait_until(shared, Instant::now() + HEARTBEAT, |v| {
                v.applied > sent || v.primary != v.me || both.ended.load(Ordering::Acquire)
            });
        if shared.stopping() {
            return "the server is stopping".into();
        }
        if both.ended.load(Ordering::Acquire) {
            return "the observer left, or a confirmation was refused".into();
        }
        let mut sender = both.sender();
        let pushed = sender.push(shared);
        both.sent.store(sender.sent, Ordering::Release);
        match pushed {
            Ok(0) if quiet_since.elapsed() >= HEARTBEAT => {
                let beat = ObserveFrame::Heartbeat {
                    commit: sender.sent,
                };
                if let Err(e) = sender.send(&beat) {
                    return e;
                }
                quiet_since = Instant::now();
            }
            Ok(0) => {}
            Ok(_) => quiet_since = Instant::now(),
            Err(end) => return end,
        }
    }
}

/// Reads the observer's confirmation requests and answers each, until it
/// leaves or one is refused.
fn read_requests(both: &Connection<'_>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(None);
    let mut scratch = Vec::new();
    let peer = both.peer;
    loop {
        match read_observe(&mut stream, &mut scratch) {
            Ok(ObserveFrame::Confirm { seq }) => {
                let mut sender = both.sender();
                let answered = sender.confirm(both.shared, seq);
                both.sent.store(sender.sent, Ordering::Release);
                drop(sender);
                if let Err(why) = answered {
                    log::info!("observer {peer}: {why}");
                    break;
                }
            }
            Ok(other) => {
                log::warn!(
                    "observer {peer}: unexpected {} frame; closing",
                    other.name()
                );
                break;
            }
            Err(e) => {
                log::debug!("observer {peer}: {e}");
                break;
            }
        }
    }
    both.end();
}

/// The sending side of one observer connection.
struct Sender {
    stream: TcpStream,
    epoch: Epoch,
    /// Every entry through it has been sent.
    sent: i32,
    out: Vec<u8>,
}

impl Sender {
    fn open(shared: &Shared, mut stream: TcpStream, peer: SocketAddr) -> Result<Self, String> {
        let _ = stream.set_read_timeout(Some(shared.limits.handshake_timeout));
        let mut scratch = Vec::new();
        let applied = match read_observe(&mut stream, &mut scratch) {
            Ok(ObserveFrame::Subscribe { applied }) => applied,
            Ok(other) => return Err(format!("expected subscribe, got {}", other.name())),
            Err(e) => return Err(format!("no subscribe ({e})")),
        };
        let mut sender = Sender {
            stream,
            epoch: 0,
            sent: -1,
            out: Vec::with_capacity(256),
        };
        if let Err(primary) = read_index::answer(shared) {
            let primary = primary.parse().unwrap_or(-1);
            let _ = sender.send(&ObserveFrame::Refused { primary });
            return Err(format!("not a serving primary (it names {primary})"));
        }
        let (reset, from) = {
            let replica = shared.replica();
            sender.epoch = replica.epoch();
            start_point(
                applied,
                replica.log().first_index(),
                replica.committed_index(),
            )
        };
        sender.sent = from;
        let start = ObserveFrame::Start {
            epoch: sender.epoch,
            reset,
            applied: from,
        };
        sender.send(&start)?;
        log::info!(
            "observer {peer} subscribed (applied {applied:?}): streaming commits after {from}{}",
            if reset { ", it resets" } else { "" }
        );
        Ok(sender)
    }

    fn send(&mut self, frame: &ObserveFrame) -> Result<(), String> {
        use std::io::Write;
        self.out.clear();
        frame.encode(&mut self.out);
        self.stream
            .write_all(&self.out)
            .map_err(|e| format!("cannot send a {} frame ({e})", frame.name()))
    }

    /// Answers confirmation `seq`: the commit point if this is still a
    /// primary that may serve reads, sent after every entry through it.
    fn confirm(&mut self, shared: &Shared, seq: u64) -> Result<(), String> {
        match read_index::answer(shared) {
            Ok(commit) => {
                while self.sent < commit {
                    if self.push(shared)? == 0 {
                        return Err(format!("commit point {commit} not in the log"));
                    }
                }
                self.send(&ObserveFrame::Confirmed { seq, commit })
            }
            Err(primary) => {
                let primary = primary.parse().unwrap_or(-1);
                let _ = self.send(&ObserveFrame::Refused { primary });
                Err(format!("no longer a serving primary (it names {primary})"))
            }
        }
    }

    /// Sends the committed entries not sent yet (one frame's worth);
    /// returns how many.
    fn push(&mut self, shared: &Shared) -> Result<usize, String> {
        let (frame, count) = match self.next_frame(shared)? {
            Some(next) => next,
            None => return Ok(0),
        };
        self.send(&frame)?;
        Ok(count)
    }

    /// The next frame to send, cloned under the replica lock: entries, or a
    /// reset when the next entry was compacted away.
    fn next_frame(&mut self, shared: &Shared) -> Result<Option<(ObserveFrame, usize)>, String> {
        let replica = shared.replica();
        if !replica.is_primary() || replica.epoch() != self.epoch {
            let primary = replica.primary_id();
            drop(replica);
            let _ = self.send(&ObserveFrame::Refused { primary });
            return Err(format!(
                "no longer primary of its epoch (it names {primary})"
            ));
        }
        let commit = replica.committed_index();
        if commit <= self.sent {
            return Ok(None);
        }
        let first = self.sent + 1;
        if first < replica.log().first_index() {
            self.sent = commit;
            let reset = ObserveFrame::Start {
                epoch: self.epoch,
                reset: true,
                applied: commit,
            };
            return Ok(Some((reset, 1)));
        }
        let held = replica.log().range(first, commit);
        let take = observe_batch_len(held);
        let entries: Vec<Entry> = held[..take].to_vec();
        drop(replica);
        self.sent += take as i32;
        Ok(Some((ObserveFrame::Entries { first, entries }, take)))
    }
}

#[cfg(test)]
mod tests {
    use super::start_point;

    #[test]
    fn an_observer_resumes_only_from_what_the_log_still_holds() {
        // Log holds 10..=20, committed through 18.
        assert_eq!(start_point(Some(12), 10, 18), (false, 12));
        assert_eq!(
            start_point(Some(9), 10, 18),
            (false, 9),
            "the entry after it is held"
        );
        assert_eq!(start_point(Some(18), 10, 18), (false, 18));
        assert_eq!(start_point(Some(8), 10, 18), (true, 18), "compacted");
        assert_eq!(
            start_point(Some(19), 10, 18),
            (true, 18),
            "past the commit point"
        );
        assert_eq!(start_point(None, 10, 18), (true, 18), "nothing applied");
        assert_eq!(start_point(Some(-1), 0, -1), (false, -1), "a fresh cluster");
    }
}

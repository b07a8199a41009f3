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
//! A second thread per connection reads the observer's requests, so that a
//! confirmation is answered at once whatever the commits do.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::Shared;
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

/// What the request reader shares with the streaming thread.
#[derive(Default)]
struct Requests {
    /// The newest confirmation asked for (0: none).
    wanted: AtomicU64,
    /// The reader ended (the observer left or sent something wrong).
    ended: AtomicBool,
}

/// Serves one observer connection until it ends or the server stops.
pub(super) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_write_timeout(Some(shared.limits.peer_timeout));
    let mut s = match Stream::open(shared, stream, peer) {
        Ok(s) => s,
        Err(why) => return log::info!("observer {peer}: {why}; closing"),
    };
    let reader_stream = match s.stream.try_clone() {
        Ok(r) => r,
        Err(e) => return log::warn!("observer {peer}: cannot share the socket ({e}); closing"),
    };
    let requests = Arc::clone(&s.requests);
    thread::scope(|scope| {
        let reader = thread::Builder::new()
            .name("observe-requests".into())
            .stack_size(super::accept::CONNECTION_STACK)
            .spawn_scoped(scope, move || {
                read_requests(shared, reader_stream, peer, &requests)
            });
        let end = match reader {
            Ok(_) => s.serve(),
            Err(e) => format!("cannot start its request reader ({e})"),
        };
        log::info!("observer {peer}: {end}; closing (sent through {})", s.sent);
        // Ends the reader, which the scope then joins.
        let _ = s.stream.shutdown(Shutdown::Both);
    });
}

struct Stream<'a> {
    shared: &'a Shared,
    stream: TcpStream,
    epoch: Epoch,
    /// Every entry through it has been sent.
    sent: i32,
    answered: u64,
    requests: Arc<Requests>,
    out: Vec<u8>,
}

impl<'a> Stream<'a> {
    fn open(shared: &'a Shared, mut stream: TcpStream, peer: SocketAddr) -> Result<Self, String> {
        let _ = stream.set_read_timeout(Some(shared.limits.handshake_timeout));
        let mut scratch = Vec::new();
        let applied = match read_observe(&mut stream, &mut scratch) {
            Ok(ObserveFrame::Subscribe { applied }) => applied,
            Ok(other) => return Err(format!("expected subscribe, got {}", other.name())),
            Err(e) => return Err(format!("no subscribe ({e})")),
        };
        let mut out = Vec::with_capacity(256);
        if let Err(primary) = super::read_index::answer(shared) {
            send(
                &mut stream,
                &ObserveFrame::Refused {
                    primary: primary.parse().unwrap_or(-1),
                },
                &mut out,
            )?;
            return Err(format!("not a serving primary (it names {primary})"));
        }
        let (epoch, reset, from) = {
            let replica = shared.replica();
            let (reset, from) = start_point(
                applied,
                replica.log().first_index(),
                replica.committed_index(),
            );
            (replica.epoch(), reset, from)
        };
        let start = ObserveFrame::Start {
            epoch,
            reset,
            applied: from,
        };
        send(&mut stream, &start, &mut out)?;
        log::info!(
            "observer {peer} subscribed (applied {applied:?}): streaming commits after {from}{}",
            if reset { ", it resets" } else { "" }
        );
        Ok(Stream {
            shared,
            stream,
            epoch,
            sent: from,
            answered: 0,
            requests: Arc::default(),
            out,
        })
    }

    /// Streams until the observer leaves, this server stops being the
    /// primary of its epoch, or the server stops; says why.
    fn serve(&mut self) -> String {
        let mut quiet_since = Instant::now();
        loop {
            let sent = self.sent;
            let answered = self.answered;
            let requests = Arc::clone(&self.requests);
            let wake = Instant::now() + HEARTBEAT;
            self.shared.role.wait_until(self.shared, wake, |v| {
                v.applied > sent
                    || v.primary != v.me
                    || requests.wanted.load(Ordering::Acquire) > answered
                    || requests.ended.load(Ordering::Acquire)
            });
            if self.shared.stopping() {
                return "the server is stopping".into();
            }
            if self.requests.ended.load(Ordering::Acquire) {
                return "the observer left".into();
            }
            let result = match self.requests.wanted.load(Ordering::Acquire) {
                wanted if wanted > self.answered => self.confirm(wanted),
                _ => self.push().map(|n| n > 0),
            };
            match result {
                Ok(true) => quiet_since = Instant::now(),
                Ok(false) if quiet_since.elapsed() >= HEARTBEAT => {
                    let beat = ObserveFrame::Heartbeat { commit: self.sent };
                    if let Err(e) = send(&mut self.stream, &beat, &mut self.out) {
                        return e;
                    }
                    quiet_since = Instant::now();
                }
                Ok(false) => {}
                Err(end) => return end,
            }
        }
    }

    /// Answers confirmation `seq`: the commit point if this is still a
    /// primary that may serve reads, sent after every entry through it.
    fn confirm(&mut self, seq: u64) -> Result<bool, String> {
        self.answered = seq;
        match super::read_index::answer(self.shared) {
            Ok(commit) => {
                while self.sent < commit {
                    if self.push()? == 0 {
                        return Err(format!("commit point {commit} not in the log"));
                    }
                }
                let frame = ObserveFrame::Confirmed { seq, commit };
                send(&mut self.stream, &frame, &mut self.out)?;
                Ok(true)
            }
            Err(primary) => {
                let primary = primary.parse().unwrap_or(-1);
                let _ = send(
                    &mut self.stream,
                    &ObserveFrame::Refused { primary },
                    &mut self.out,
                );
                Err(format!("no longer a serving primary (it names {primary})"))
            }
        }
    }

    /// Sends the committed entries not sent yet (one frame's worth);
    /// returns how many.
    fn push(&mut self) -> Result<usize, String> {
        let (frame, count) = match self.next_frame()? {
            Some(next) => next,
            None => return Ok(0),
        };
        send(&mut self.stream, &frame, &mut self.out)?;
        Ok(count)
    }

    /// The next frame to send, cloned under the replica lock: entries, or a
    /// reset when the next entry was compacted away.
    fn next_frame(&mut self) -> Result<Option<(ObserveFrame, usize)>, String> {
        let replica = self.shared.replica();
        if !replica.is_primary() || replica.epoch() != self.epoch {
            let primary = replica.primary_id();
            drop(replica);
            let _ = send(
                &mut self.stream,
                &ObserveFrame::Refused { primary },
                &mut self.out,
            );
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

fn send(stream: &mut TcpStream, frame: &ObserveFrame, out: &mut Vec<u8>) -> Result<(), String> {
    use std::io::Write;
    out.clear();
    frame.encode(out);
    stream
        .write_all(out)
        .map_err(|e| format!("cannot send a {} frame ({e})", frame.name()))
}

/// Reads the observer's confirmation requests until it leaves, and
/// wakes the streaming thread for each.
fn read_requests(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, requests: &Requests) {
    let _ = stream.set_read_timeout(None);
    let mut scratch = Vec::new();
    loop {
        match read_observe(&mut stream, &mut scratch) {
            Ok(ObserveFrame::Confirm { seq }) => {
                requests.wanted.fetch_max(seq, Ordering::AcqRel);
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
        shared.role.changes.notify();
    }
    requests.ended.store(true, Ordering::Release);
    shared.role.changes.notify();
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

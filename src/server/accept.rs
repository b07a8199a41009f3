//! The accept loop (the original's `ServerMain` loop) and the handshake
//! dispatch of each new connection (the start of `EngineerThread`).
//! [`Server::start`](super::Server::start), which the C ABI's
//! `factory_server_start` calls too, binds through [`listen()`] (a backlog
//! sized for bursts); [`refusal`] turns connections away.
//!
//! The loop does only what cannot wait: accept, count, start the
//! connection's thread; everything else (peer address, registration,
//! options, handshake) happens on that thread.
//!
//! Departures from the original, which has neither limit: at most
//! [`Limits::max_connections`](super::Limits) connections are served at
//! once (one more is accepted and closed at once, so that it does not wait
//! in the backlog, and its client reads end of file, not a reset; logged at
//! most once a second with the count of the others), and the 8-byte
//! handshake must arrive within the handshake timeout, counted from the
//! accept, however slowly its bytes trickle in.

mod listen;
mod refusal;

use super::metrics::Fault;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::backup::{follower, original};
use super::session::{kv, v1};
use super::{next_engineer_id, status, ServerError, Shared};
use crate::conn::ConnError;
use crate::wire::kv::KV_TAG;
use crate::wire::observe::OBSERVE_TAG;
use crate::wire::{Tag, HANDSHAKE_LEN};
pub(super) use listen::listen;
use refusal::{others, refuse, Handoff, Throttle};

/// Pause after a failed `accept()` (typically out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

pub(super) fn spawn(
    shared: Arc<Shared>,
    listener: TcpListener,
) -> Result<JoinHandle<()>, ServerError> {
    thread::Builder::new()
        .name(format!("accept-{}", shared.factory_id))
        .spawn(move || run(shared, listener))
        .map_err(ServerError::Io)
}

fn run(shared: Arc<Shared>, listener: TcpListener) {
    let mut workers = Workers::default();
    let live = Arc::new(AtomicUsize::new(0));
    let limit = shared.limits.max_connections;
    let (mut refusals, mut no_thread, mut failed_accepts) = Default::default();
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        match conn {
            // Only this thread adds connections, so the count cannot pass
            // the limit between this check and the spawn.
            Ok(stream) if live.load(Ordering::Acquire) >= limit => {
                shared.metrics.error(Fault::ConnectionLimit);
                refuse(&mut refusals, stream, limit)
            }
            Ok(stream) => match spawn_connection(&shared, stream, Slot::take(&live)) {
                Ok(worker) => workers.add(worker),
                Err(e) => {
                    if let Some(more) = Throttle::due(&mut no_thread) {
                        log::warn!(
                            "cannot start a thread for a new connection: {e}; closed at once{}",
                            others(more, "closed")
                        );
                    }
                }
            },
            Err(e) => {
                if let Some(more) = Throttle::due(&mut failed_accepts) {
                    log::warn!("accept failed: {e}{}", others(more, "failed"));
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    drop(listener);
    workers.join_all();
}

/// Fewest connection threads held before finished ones are joined.
const REAP_FLOOR: usize = 64;

/// The connection threads not joined yet. Joining the finished ones at
/// every accept walks every open connection per accept, quadratic in a
/// burst of thousands; they are joined instead when the list has doubled
/// since the last time, which costs O(1) per accept on average and holds at
/// most as many finished threads as live ones (or [`REAP_FLOOR`]).
struct Workers {
    threads: Vec<JoinHandle<()>>,
    reap_at: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            threads: Vec::new(),
            reap_at: REAP_FLOOR,
        }
    }
}

impl Workers {
    fn add(&mut self, worker: JoinHandle<()>) {
        self.threads.push(worker);
        if self.threads.len() >= self.reap_at {
            self.reap();
            self.reap_at = (2 * self.threads.len()).max(REAP_FLOOR);
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.threads.len() {
            if self.threads[i].is_finished() {
                let _ = self.threads.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
    }

    fn join_all(self) {
        for worker in self.threads {
            let _ = worker.join();
        }
    }
}

/// One connection counted against the limit, until it is dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(live: &Arc<AtomicUsize>) -> Slot {
        live.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(live))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn spawn_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    slot: Slot,
) -> std::io::Result<JoinHandle<()>> {
    let engineer_id = next_engineer_id(shared);
    let shared = Arc::clone(shared);
    let mut handoff = Handoff(Some(stream));
    thread::Builder::new()
        .name(format!("conn-{engineer_id}"))
        .stack_size(super::registry::CONNECTION_STACK)
        .spawn(move || {
            if let Some(stream) = handoff.take() {
                serve(&shared, stream, engineer_id);
            }
            drop(slot);
        })
}

fn serve(shared: &Shared, mut stream: TcpStream, engineer_id: i32) {
    let peer = match stream.peer_addr() {
        Ok(addr) => addr,
        Err(_) => return, // already gone
    };
    let Some(_registered) = shared.registry.register(&stream) else {
        return;
    };
    shared.metrics.accepted.inc();
    let _open = shared.metrics.connections.hold();
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    match read_tag(&mut stream, deadline) {
        Ok(raw) if raw == KV_TAG => kv::run(shared, stream, peer),
        Ok(raw) if raw == OBSERVE_TAG => super::primary::observe::run(shared, stream, peer),
        Ok(raw) => match Tag::decode(&raw) {
            Some(Tag::Client) => v1::run(shared, stream, peer, engineer_id),
            Some(Tag::Pfa) => original::run(shared, stream, peer),
            Some(Tag::Native) => follower::run(shared, stream, peer),
            Some(Tag::Status) => status::run(shared, stream, peer),
            Some(Tag::Election) => match shared.election_reader() {
                Some(reader) => reader.run(stream, &peer.to_string()),
                None => {
                    log::warn!("{peer}: an election connection, but no election runs here; closing")
                }
            },
            None => {
                shared.metrics.error(Fault::Handshake);
                log::warn!(
                    "{peer}: unknown handshake tag {raw:02x?}, expected CLIENT, PFA, FREP, FSTA or FELE; closing"
                )
            }
        },
        Err(e) => log_handshake_failure(shared, peer, &e),
    }
}

/// Reads the 8-byte tag, all of it before `deadline`.
fn read_tag(stream: &mut TcpStream, deadline: Instant) -> Result<[u8; HANDSHAKE_LEN], ConnError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut got = 0;
    while got < HANDSHAKE_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::Timeout);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(ConnError::Closed),
            Ok(0) => {
                return Err(ConnError::Truncated {
                    got,
                    want: HANDSHAKE_LEN,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf)
}

fn log_handshake_failure(shared: &Shared, peer: SocketAddr, e: &ConnError) {
    if matches!(e, ConnError::Timeout | ConnError::Truncated { .. }) {
        shared.metrics.error(Fault::Handshake);
    }
    match e {
        ConnError::Timeout => log::warn!(
            "{peer}: no handshake within {:?}; closing",
            shared.limits.handshake_timeout
        ),
        ConnError::Truncated { .. } => log::warn!("{peer}: short handshake tag ({e}); closing"),
        _ => log::debug!("{peer}: closed before its handshake ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that has ended, as the accept loop would hold it.
    fn finished_thread() -> JoinHandle<()> {
        let t = thread::spawn(|| {});
        let end = Instant::now() + Duration::from_secs(20);
        while !t.is_finished() && Instant::now() < end {
            thread::yield_now();
        }
        assert!(t.is_finished());
        t
    }

    #[test]
    fn finished_connection_threads_are_joined_as_the_list_grows() {
        let mut workers = Workers::default();
        for _ in 0..300 {
            workers.add(finished_thread());
            assert!(workers.threads.len() < REAP_FLOOR, "never joined");
        }
    }

    #[test]
    fn running_connection_threads_are_kept_until_the_end() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let ended = Arc::new(AtomicUsize::new(0));
        let mut workers = Workers::default();
        for _ in 0..(3 * REAP_FLOOR) {
            let (gate, ended) = (Arc::clone(&gate), Arc::clone(&ended));
            workers.add(thread::spawn(move || {
                let (open, changed) = &*gate;
                let open = open.lock().unwrap();
                let _ = changed.wait_timeout_while(open, Duration::from_secs(20), |o| !*o);
                ended.fetch_add(1, Ordering::SeqCst);
            }));
        }
        assert_eq!(workers.threads.len(), 3 * REAP_FLOOR);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        workers.join_all();
        assert_eq!(ended.load(Ordering::SeqCst), 3 * REAP_FLOOR);
    }
}

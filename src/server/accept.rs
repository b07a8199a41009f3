//! The accept loop (the original's `ServerMain` loop) and the handshake
//! dispatch of each new connection (the start of `EngineerThread`).
//!
//! Departures from the original, which has neither limit: at most
//! [`Limits::max_connections`](super::Limits) connections are served at
//! once (one more is accepted, logged and closed at once, so that it does
//! not wait in the backlog), and the 8-byte handshake must arrive within
//! the handshake timeout, counted from the accept, however slowly its bytes
//! trickle in.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{backup, follower, kv_session, next_engineer_id, session, ServerError, Shared};
use crate::conn::ConnError;
use crate::wire::kv::KV_TAG;
use crate::wire::{Tag, HANDSHAKE_LEN};

/// Stack size of a connection thread: the roles keep their buffers small
/// and on the stack, and thousands of idle clients must stay cheap.
pub(crate) const CONNECTION_STACK: usize = 256 * 1024;

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

/// Refusals beyond the connection limit are logged at most this often (a
/// flood would otherwise turn into a flood of log lines).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

fn run(shared: Arc<Shared>, listener: TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let live = Arc::new(AtomicUsize::new(0));
    let mut refusals = Refusals::default();
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        match conn {
            Ok(stream) => {
                reap_finished(&mut workers);
                // Only this thread adds connections, so the count cannot
                // pass the limit between this check and the spawn.
                if live.load(Ordering::Acquire) >= shared.limits.max_connections {
                    refusals.refuse(stream, shared.limits.max_connections);
                    continue;
                }
                let slot = Slot::take(&live);
                match spawn_connection(&shared, stream, slot) {
                    Ok(worker) => workers.push(worker),
                    Err(e) => log::warn!("cannot start a thread for a new connection: {e}"),
                }
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    drop(listener);
    for worker in workers {
        let _ = worker.join();
    }
}

fn reap_finished(workers: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < workers.len() {
        if workers[i].is_finished() {
            let _ = workers.swap_remove(i).join();
        } else {
            i += 1;
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

/// Connections refused beyond the limit, and when that was last logged.
#[derive(Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    /// Closes `stream` at once and logs it (or counts it for the next line).
    fn refuse(&mut self, stream: TcpStream, limit: usize) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "a client".to_string(), |a| a.to_string());
        drop(stream);
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut self.unlogged);
        let also = if more > 0 {
            format!(" ({more} more refused since the last report)")
        } else {
            String::new()
        };
        log::warn!(
            "{peer}: {limit} connections already open (--max-connections); closed at once{also}"
        );
        self.last_logged = Some(now);
    }
}

fn spawn_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    slot: Slot,
) -> std::io::Result<JoinHandle<()>> {
    let engineer_id = next_engineer_id(shared);
    let shared = Arc::clone(shared);
    thread::Builder::new()
        .name(format!("conn-{engineer_id}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            serve(&shared, stream, engineer_id);
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
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    match read_tag(&mut stream, deadline) {
        Ok(raw) if raw == KV_TAG => kv_session::run(shared, stream, peer),
        Ok(raw) => match Tag::decode(&raw) {
            Some(Tag::Client) => session::run(shared, stream, peer, engineer_id),
            Some(Tag::Pfa) => backup::run(shared, stream, peer),
            Some(Tag::Native) => follower::run(shared, stream, peer),
            None => log::warn!(
                "{peer}: unknown handshake tag {raw:02x?}, expected CLIENT, PFA or FREP; closing"
            ),
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
    match e {
        ConnError::Timeout => log::warn!(
            "{peer}: no handshake within {:?}; closing",
            shared.limits.handshake_timeout
        ),
        ConnError::Truncated { .. } => log::warn!("{peer}: short handshake tag ({e}); closing"),
        _ => log::debug!("{peer}: closed before its handshake ({e})"),
    }
}

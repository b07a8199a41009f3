//! The accept loop (the original's `ServerMain` loop) and the handshake
//! dispatch of each new connection (the start of `EngineerThread`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{backup, follower, next_engineer_id, session, ServerError, Shared};
use crate::conn::{self, ConnError};
use crate::wire::Tag;

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

fn run(shared: Arc<Shared>, listener: TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if shared.stopping() {
            break;
        }
        match conn {
            Ok(stream) => {
                reap_finished(&mut workers);
                match spawn_connection(&shared, stream) {
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

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream) -> std::io::Result<JoinHandle<()>> {
    let engineer_id = next_engineer_id(shared);
    let shared = Arc::clone(shared);
    thread::Builder::new()
        .name(format!("conn-{engineer_id}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || serve(&shared, stream, engineer_id))
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
    let _ = stream.set_read_timeout(Some(shared.limits.handshake_timeout));
    match conn::read_tag(&mut stream) {
        Ok((Some(Tag::Client), _)) => session::run(shared, stream, peer, engineer_id),
        Ok((Some(Tag::Pfa), _)) => backup::run(shared, stream, peer),
        Ok((Some(Tag::Native), _)) => follower::run(shared, stream, peer),
        Ok((None, raw)) => {
            log::warn!(
                "{peer}: unknown handshake tag {raw:02x?}, expected CLIENT, PFA or FREP; closing"
            )
        }
        Err(e) => log_handshake_failure(shared, peer, &e),
    }
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

//! A witness (`server --witness`): a vote-only member of a cluster. It runs
//! the majority election and nothing else: it grants votes and leases and
//! keeps its epoch, its vote and the latest in-sync set it accepted (in
//! `DIR/election` with `--data-dir`), but holds no log and never becomes
//! primary, so that two servers and a witness form a majority of three
//! and fail over without a third copy of the data (docs/failover.md).
//!
//! On its client port it answers the status request (role witness), hands
//! election connections (`FELE`) to its [`ElectionService`], and turns
//! clients away as "not primary": a v2 request is answered `NotPrimary`
//! with the primary's `host:port` when it knows one; a v1 session, whose
//! protocol has no such answer, is closed once its first request arrived
//! (what every factory server does with a request it cannot place, and what
//! the cluster client takes as "try the next server"). Started by the
//! `server` binary in place of a [`super::Server`].

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::election::{ElectionOptions, ElectionService, ElectionStatus};
use super::{PeerConfig, ServerConfig, ServerError};
use crate::replication::election::{Cluster, LogPos};
use crate::wire::kv::{KvBody, KvLimits, KvResponse, KvStatus, KV_TAG};
use crate::wire::status::{Lease, Role, StatusReport};
use crate::wire::{Tag, HANDSHAKE_LEN};

/// Bytes of a v2 request after its length that name it (id u64, op u8).
const KV_HEAD: usize = 9;

/// Bytes of a v1 request (customer, order, type: three i32).
const V1_REQUEST: usize = 12;

/// A running witness; [`Witness::stop`] (or drop) ends every thread.
pub struct Witness {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

struct Inner {
    factory_id: i32,
    peers: Vec<PeerConfig>,
    election: ElectionService,
    handshake_timeout: Duration,
    max_connections: usize,
    stopping: AtomicBool,
    clients: AtomicU32,
    started: Instant,
    conns: Mutex<Conns>,
}

/// Connections being served, so that a stop can shut them down and join
/// their threads.
#[derive(Default)]
struct Conns {
    next: u64,
    open: Vec<(u64, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Witness {
    /// Starts a witness with `config`'s id, address, peers, limits, data
    /// directory and election settings (this server is added to the
    /// witnesses); its log is empty for ever.
    ///
    /// # Errors
    /// The port in use, an unusable data directory, or bad election
    /// settings (as [`ServerError::Io`] naming them).
    pub fn start(config: &ServerConfig) -> Result<Witness, ServerError> {
        if let Some(dir) = &config.data_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                ServerError::Io(io::Error::new(
                    e.kind(),
                    format!("cannot create the data directory {}: {e}", dir.display()),
                ))
            })?;
        }
        let listener =
            TcpListener::bind(config.bind).map_err(|e| ServerError::bind(config.bind, e))?;
        let local_addr = listener.local_addr().map_err(ServerError::Io)?;
        let election = ElectionService::start(election_options(config), || LogPos::EMPTY)
            .map_err(ServerError::Io)?;
        let inner = Arc::new(Inner {
            factory_id: config.factory_id,
            peers: config.peers.clone(),
            election,
            handshake_timeout: config.limits.handshake_timeout,
            max_connections: config.limits.max_connections,
            stopping: AtomicBool::new(false),
            clients: AtomicU32::new(0),
            started: Instant::now(),
            conns: Mutex::default(),
        });
        log::info!(
            "factory {} (witness) listening on {local_addr}",
            config.factory_id
        );
        let inner2 = Arc::clone(&inner);
        let accept = thread::Builder::new()
            .name("witness-accept".into())
            .spawn(move || accept_loop(&inner2, &listener))
            .map_err(ServerError::Io)?;
        Ok(Witness {
            inner,
            local_addr,
            accept: Some(accept),
        })
    }

    /// The address it listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The election's state as last published.
    pub fn election_status(&self) -> ElectionStatus {
        self.inner.election.status()
    }

    /// This witness's status report (what a status request gets).
    pub fn report(&self) -> StatusReport {
        report(&self.inner)
    }

    /// Stops accepting, closes every connection and ends the election.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = {
            let mut conns = lock(&self.inner.conns);
            for (_, s) in conns.open.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut conns.threads)
        };
        for t in threads {
            let _ = t.join();
        }
        log::info!("factory {} (witness) stopped", self.inner.factory_id);
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.shutdown();
        // The election service stops when the last Arc<Inner> goes.
    }
}

/// The election over every peer, this server a witness (and any peer
/// that `config` names as one).
fn election_options(config: &ServerConfig) -> ElectionOptions {
    let settings = config.election.clone().unwrap_or_default();
    let mut witnesses = settings.witnesses;
    witnesses.push(config.factory_id);
    witnesses.sort_unstable();
    witnesses.dedup();
    let mut voters: Vec<i32> = config.peers.iter().map(|p| p.id).collect();
    voters.push(config.factory_id);
    voters.sort_unstable();
    let peers = config
        .peers
        .iter()
        .filter_map(|p| match (p.host.as_str(), p.port).to_socket_addrs() {
            Ok(mut addrs) => addrs.next().map(|a| (p.id, a)),
            Err(e) => {
                log::warn!(
                    "witness: cannot resolve peer {} at {} ({e}); it gets no election messages",
                    p.id,
                    p.addr()
                );
                None
            }
        })
        .collect();
    ElectionOptions {
        cluster: Cluster {
            me: config.factory_id,
            voters,
            witnesses,
        },
        timing: settings.timing,
        peers,
        data_dir: config.data_dir.clone(),
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: &TcpListener) {
    // Bounded by the stop flag: a stop connects once to wake this accept.
    for stream in listener.incoming() {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::debug!("witness: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        spawn_connection(inner, stream);
    }
}

/// Serves `stream` on a thread of its own, unless too many are open.
fn spawn_connection(inner: &Arc<Inner>, stream: TcpStream) {
    let serial = {
        let mut conns = lock(&inner.conns);
        conns.threads.retain(|t| !t.is_finished());
        if conns.open.len() >= inner.max_connections {
            drop(conns);
            log::warn!("witness: --max-connections reached; closing a connection at once");
            return;
        }
        let Ok(clone) = stream.try_clone() else {
            return;
        };
        conns.next += 1;
        let serial = conns.next;
        conns.open.push((serial, clone));
        serial
    };
    let inner2 = Arc::clone(inner);
    let spawned = thread::Builder::new()
        .name("witness-conn".into())
        .spawn(move || {
            serve(&inner2, stream);
            lock(&inner2.conns).open.retain(|(n, _)| *n != serial);
        });
    match spawned {
        Ok(handle) => lock(&inner.conns).threads.push(handle),
        Err(e) => {
            log::warn!("witness: cannot start a connection thread: {e}");
            lock(&inner.conns).open.retain(|(n, _)| *n != serial);
        }
    }
}

fn serve(inner: &Inner, mut stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(inner.handshake_timeout));
    let _ = stream.set_write_timeout(Some(inner.handshake_timeout));
    let mut tag = [0u8; HANDSHAKE_LEN];
    if let Err(e) = stream.read_exact(&mut tag) {
        log::debug!("witness: {peer}: no handshake ({e}); closing");
        return;
    }
    if tag == KV_TAG {
        inner.clients.fetch_add(1, Ordering::Relaxed);
        kv_session(inner, &mut stream, &peer);
        inner.clients.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    match Tag::decode(&tag) {
        Some(Tag::Election) => {
            let _ = stream.set_write_timeout(None);
            inner.election.reader().run(stream, &peer);
        }
        Some(Tag::Status) => {
            let mut out = Vec::with_capacity(128);
            report(inner).encode(&mut out);
            if let Err(e) = stream.write_all(&out) {
                log::debug!("witness: {peer}: gone before taking the status ({e})");
            }
        }
        Some(Tag::Client) => {
            inner.clients.fetch_add(1, Ordering::Relaxed);
            v1_session(inner, stream, &peer);
            inner.clients.fetch_sub(1, Ordering::Relaxed);
        }
        Some(Tag::Native | Tag::Pfa) => log::warn!(
            "witness {}: {peer} opened a replication stream, but this is a witness (it holds no log); \
             give the other servers --witnesses {}; closing",
            inner.factory_id,
            inner.factory_id
        ),
        None => log::warn!(
            "witness {}: {peer}: unknown handshake tag {tag:02x?}; closing",
            inner.factory_id
        ),
    }
}

/// The primary this witness follows, if it knows one.
fn primary(inner: &Inner) -> Option<i32> {
    inner.election.status().primary
}

/// The primary's `host:port` from the peer list, or empty when unknown.
fn primary_addr(inner: &Inner) -> String {
    primary(inner)
        .and_then(|id| inner.peers.iter().find(|p| p.id == id))
        .map(PeerConfig::addr)
        .unwrap_or_default()
}

/// A v1 session: the protocol has no "not primary" answer, so the
/// session is closed once its first request has arrived (or the client
/// went quiet); the client reads end of file and tries another server.
fn v1_session(inner: &Inner, mut stream: TcpStream, peer: &str) {
    let mut request = [0u8; V1_REQUEST];
    let got = stream.read_exact(&mut request).is_ok();
    let _ = stream.shutdown(Shutdown::Write);
    // What arrives after the FIN is read and dropped for a moment, so the
    // close is seen as end of file rather than a reset.
    drain(&mut stream, 4096);
    log::debug!(
        "witness {}: {peer}: a client {}; not primary (primary: {}); closed",
        inner.factory_id,
        if got { "request" } else { "session" },
        primary(inner).map_or_else(|| "unknown".into(), |p| p.to_string())
    );
}

fn drain(stream: &mut TcpStream, limit: u64) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = io::copy(&mut stream.take(limit), &mut io::sink());
}

/// A v2 session: every request is answered `NotPrimary` with the
/// primary's address (or nothing), until the client closes or sends a
/// frame that is not one; no frame's bytes are kept.
fn kv_session(inner: &Inner, stream: &mut TcpStream, peer: &str) {
    let limits = KvLimits::default();
    let mut out = Vec::with_capacity(64);
    // Bounded by the read timeout and the connection's end: each round
    // consumes one whole frame.
    loop {
        let mut prefix = [0u8; 4];
        match stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return,
            Err(e) => {
                log::debug!("witness: {peer}: v2 session ends ({e})");
                return;
            }
        }
        let len = match limits.check_length(prefix) {
            Ok(len) if len >= KV_HEAD => len,
            Ok(len) => {
                log::warn!(
                    "witness: {peer}: a v2 frame of {len} bytes, shorter than its header; closing"
                );
                return;
            }
            Err(e) => {
                log::warn!("witness: {peer}: {e}; closing");
                return;
            }
        };
        let mut head = [0u8; KV_HEAD];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let rest = (len - KV_HEAD) as u64;
        match io::copy(&mut (&mut *stream).take(rest), &mut io::sink()) {
            Ok(n) if n == rest => {}
            _ => return,
        }
        let response = KvResponse {
            id: u64::from_be_bytes(head[..8].try_into().unwrap_or_default()),
            op: head[8],
            status: KvStatus::NotPrimary,
            body: KvBody::Text(primary_addr(inner).into_bytes()),
        };
        out.clear();
        response.encode(&mut out);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The status report: role witness, its epoch, the primary it knows and
/// the latest in-sync set it accepted; no log (indexes -1).
fn report(inner: &Inner) -> StatusReport {
    let status = inner.election.status();
    StatusReport {
        factory_id: inner.factory_id,
        role: Role::Witness,
        epoch: status.epoch,
        primary_id: status.primary.unwrap_or(-1),
        lease: Lease::None,
        lease_ms: 0,
        trusted: false,
        in_sync: status.config.members.ids().to_vec(),
        last_index: -1,
        commit_index: -1,
        peers: Vec::new(),
        clients: inner.clients.load(Ordering::Relaxed),
        uptime_ms: u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        balancer: None,
    }
}

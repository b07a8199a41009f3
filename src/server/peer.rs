//! The primary's outgoing replication links, one per backup (the original's
//! `FactoryStub` on the primary side).
//!
//! Each batch is written to every backup first, then every backup's acks
//! are read: backups work on a batch at the same time instead of one after
//! another. A backup that fails, times out or acks the wrong entry is
//! dropped, as in the original; issue-4 work adds reconnection.

use std::fmt;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use super::registry::Registered;
use super::{PeerConfig, Shared};
use crate::conn::{read_frame, write_frame, ConnError};
use crate::wire::{ReplicationAck, ReplicationRequest, PFA_TAG};

/// Why a link to a backup was dropped.
#[derive(Debug)]
enum PeerError {
    Resolve(String),
    Conn(ConnError),
    WrongAck { expected: i32, got: ReplicationAck },
    Stopping,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Resolve(e) => write!(f, "cannot resolve address: {e}"),
            PeerError::Conn(e) => write!(f, "{e}"),
            PeerError::WrongAck { expected, got } => write!(
                f,
                "expected an ack for entry {expected}, got replica {} index {}",
                got.replica_id, got.last_index
            ),
            PeerError::Stopping => write!(f, "server stopping"),
        }
    }
}

impl From<ConnError> for PeerError {
    fn from(e: ConnError) -> Self {
        PeerError::Conn(e)
    }
}

impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError::Conn(e.into())
    }
}

struct Link<'a> {
    stream: TcpStream,
    writer: BufWriter<TcpStream>,
    _registered: Registered<'a>,
}

struct Peer<'a> {
    config: PeerConfig,
    link: Option<Link<'a>>,
}

/// The links of one primary.
pub(super) struct PeerLinks<'a> {
    shared: &'a Shared,
    peers: Vec<Peer<'a>>,
}

impl<'a> PeerLinks<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        PeerLinks {
            shared,
            peers: Vec::new(),
        }
    }

    /// Forgets every link; the next [`Self::connect_new`] reconnects all.
    pub(super) fn reset(&mut self) {
        self.peers.clear();
    }

    /// Connects to the configured peers not tried yet. A peer that cannot be
    /// reached is skipped from then on, as in the original.
    pub(super) fn connect_new(&mut self, configured: &[PeerConfig]) {
        for config in configured.iter().skip(self.peers.len()) {
            let link = match connect(self.shared, config) {
                Ok(link) => {
                    log::info!("connected to peer {} at {}", config.id, config.addr());
                    Some(link)
                }
                Err(e) => {
                    log::warn!("cannot reach peer {} at {}: {e}", config.id, config.addr());
                    None
                }
            };
            self.peers.push(Peer {
                config: config.clone(),
                link,
            });
        }
    }

    /// Sends `frames` to every connected backup, then waits for each
    /// backup's acks; a backup that fails is dropped with a log line.
    pub(super) fn replicate(&mut self, frames: &[ReplicationRequest]) {
        for peer in &mut self.peers {
            peer.attempt(|link| send_all(link, frames));
        }
        for peer in &mut self.peers {
            peer.attempt(|link| await_acks(link, frames));
        }
    }
}

impl Peer<'_> {
    fn attempt(&mut self, step: impl FnOnce(&mut Link<'_>) -> Result<(), PeerError>) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if let Err(e) = step(link) {
            log::warn!(
                "lost peer {} at {}: {e}; no longer replicating to it",
                self.config.id,
                self.config.addr()
            );
            self.link = None;
        }
    }
}

fn connect<'a>(shared: &'a Shared, config: &PeerConfig) -> Result<Link<'a>, PeerError> {
    let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| PeerError::Resolve(e.to_string()))?
        .collect();
    let mut last_error = PeerError::Resolve("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, shared.limits.connect_timeout) {
            Ok(stream) => return open_link(shared, stream),
            Err(e) => last_error = e.into(),
        }
    }
    Err(last_error)
}

fn open_link<'a>(shared: &'a Shared, mut stream: TcpStream) -> Result<Link<'a>, PeerError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(shared.limits.peer_timeout))?;
    stream.set_write_timeout(Some(shared.limits.peer_timeout))?;
    let registered = shared
        .registry
        .register(&stream)
        .ok_or(PeerError::Stopping)?;
    stream.write_all(&PFA_TAG)?;
    Ok(Link {
        writer: BufWriter::new(stream.try_clone()?),
        stream,
        _registered: registered,
    })
}

fn send_all(link: &mut Link<'_>, frames: &[ReplicationRequest]) -> Result<(), PeerError> {
    for frame in frames {
        write_frame(&mut link.writer, frame)?;
    }
    link.writer.flush()?;
    Ok(())
}

fn await_acks(link: &mut Link<'_>, frames: &[ReplicationRequest]) -> Result<(), PeerError> {
    for frame in frames {
        let ack: ReplicationAck = read_frame(&mut link.stream)?;
        if ack.last_index != frame.last_index {
            return Err(PeerError::WrongAck {
                expected: frame.last_index,
                got: ack,
            });
        }
    }
    Ok(())
}

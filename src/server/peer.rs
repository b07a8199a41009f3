//! A native connection to another server, as every thread that talks to
//! one opens it: the primary's replicators, the takeover's probes and the
//! look for original peers. [`connect`] sends the tag on a registered
//! stream (so that stopping closes it), [`handshake`] tells an original
//! server (which closes any connection whose tag it does not know) from a
//! factory server, and [`PeerError`] says why a session with a peer ended.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::registry::Registered;
use super::{PeerConfig, Shared};
use crate::conn::{read_native, write_native, ConnError, NativeError};
use crate::wire::native::{NativeFrame, RejectCode};

/// Longest silence on a live link: a heartbeat goes out after this.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(50);
/// Why a replication session with a peer ended.
#[derive(Debug)]
pub(crate) enum PeerError {
    Resolve(String),
    Conn(ConnError),
    Frame(String),
    Rejected(RejectCode, String),
    WrongAck {
        expected: i32,
        got: i32,
    },
    /// The peer closed the connection on the native tag: an original server.
    SpeaksV1,
    /// The peer closed the native handshake, but the election is on and it
    /// is not shown to be an original (`election/originals.rs`): a factory server
    /// that crashed or a link that was cut.
    HandshakeDropped,
    Stopping,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Resolve(e) => write!(f, "cannot resolve address: {e}"),
            PeerError::Conn(e) => write!(f, "{e}"),
            PeerError::Frame(e) => write!(f, "{e}"),
            PeerError::Rejected(code, why) => write!(f, "rejected ({code:?}): {why}"),
            PeerError::WrongAck { expected, got } => {
                write!(f, "expected an ack for entry {expected}, got one for {got}")
            }
            PeerError::SpeaksV1 => write!(f, "closed the native handshake (an original server)"),
            PeerError::HandshakeDropped => write!(
                f,
                "closed the native handshake (not shown to be an original server)"
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

impl From<NativeError> for PeerError {
    fn from(e: NativeError) -> Self {
        match e {
            NativeError::Conn(c) => PeerError::Conn(c),
            NativeError::Frame(f) => PeerError::Frame(f.to_string()),
        }
    }
}

/// A connected stream to a peer, registered so that stopping closes it.
pub(crate) struct Link<'a> {
    pub stream: TcpStream,
    pub writer: BufWriter<TcpStream>,
    pub scratch: Vec<u8>,
    _registered: Registered<'a>,
}

/// Connects to `peer` and sends `tag`.
pub(crate) fn connect<'a>(
    shared: &'a Shared,
    peer: &PeerConfig,
    tag: &[u8; 8],
) -> Result<Link<'a>, PeerError> {
    let addrs: Vec<SocketAddr> = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| PeerError::Resolve(e.to_string()))?
        .collect();
    let mut last = PeerError::Resolve("no address".into());
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, shared.limits.connect_timeout) {
            Ok(stream) => return open(shared, stream, tag),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

fn open<'a>(
    shared: &'a Shared,
    mut stream: TcpStream,
    tag: &[u8; 8],
) -> Result<Link<'a>, PeerError> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(shared.limits.peer_timeout))?;
    stream.set_write_timeout(Some(shared.limits.peer_timeout))?;
    let registered = shared
        .registry
        .register(&stream)
        .ok_or(PeerError::Stopping)?;
    stream.write_all(tag)?;
    Ok(Link {
        writer: BufWriter::new(stream.try_clone()?),
        stream,
        scratch: Vec::new(),
        _registered: registered,
    })
}

impl Link<'_> {
    pub(crate) fn send(&mut self, frame: &NativeFrame) -> Result<(), PeerError> {
        write_native(&mut self.writer, frame, &mut self.scratch)?;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), PeerError> {
        self.writer.flush()?;
        Ok(())
    }

    pub(crate) fn receive(&mut self) -> Result<NativeFrame, PeerError> {
        Ok(read_native(&mut self.stream, &mut self.scratch)?)
    }
}

/// Sends the first frame of a native connection and reads the answer. A
/// peer that drops the connection instead is an original server, which
/// closes any connection whose tag it does not know.
pub(crate) fn handshake(
    link: &mut Link<'_>,
    first: &NativeFrame,
) -> Result<NativeFrame, PeerError> {
    let sent = link.send(first).and_then(|()| link.flush());
    match sent.and_then(|()| link.receive()) {
        Ok(reply) => Ok(reply),
        Err(PeerError::Conn(ConnError::Closed | ConnError::Truncated { .. })) => {
            Err(PeerError::SpeaksV1)
        }
        Err(PeerError::Conn(ConnError::Io(e))) if dropped(&e) => Err(PeerError::SpeaksV1),
        Err(e) => Err(e),
    }
}

fn dropped(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted)
}

//! Protocol v2 frames on a socket (docs/protocol.md §9.1, §9.2), for the
//! server's v2 session (`server::session::kv`) and the balancer's
//! (`balancer::kv`): request frames read whole, a client that waits
//! between frames as long as it likes but must finish one it began within
//! the frame timeout, the length prefix checked
//! ([`KvLimits::check_length`]) before a byte of the frame is read or
//! allocated; answers written out; and, on the sessions the balancer and
//! the load client open to servers, answers read within their bound.

use std::fmt::Display;
use std::io::Write;
use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::wire::kv::{KvError, KvLimits, KvResponse};

/// Why no frame was read.
pub(crate) enum FrameEnd {
    /// The client closed between frames.
    Closed,
    /// The length prefix is out of bounds.
    BadLength(KvError),
    /// A frame was begun and not finished in time (or the client closed
    /// in the middle of one).
    Stalled,
    /// A socket error.
    Io(io::Error),
}

/// Reads whole frames: waits as long as the client likes for a frame to
/// begin, then gives the rest of it the frame timeout. The socket's read
/// timeout is changed only when a frame is cut across reads.
pub(crate) struct FrameReader<'a> {
    inner: BufReader<&'a TcpStream>,
    frame_timeout: Duration,
    /// The read timeout set on the socket now.
    timeout: Option<Duration>,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl<'a> FrameReader<'a> {
    pub(crate) fn new(stream: &'a TcpStream, frame_timeout: Duration) -> io::Result<Self> {
        stream.set_read_timeout(None)?;
        Ok(FrameReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            frame_timeout,
            timeout: None,
        })
    }

    /// True when the next frame is buffered whole: reading it waits for
    /// nothing.
    pub(crate) fn frame_at_hand(&self) -> bool {
        match self.inner.buffer() {
            [a, b, c, d, rest @ ..] => {
                rest.len() as u64 >= u64::from(u32::from_be_bytes([*a, *b, *c, *d]))
            }
            _ => false,
        }
    }

    /// Reads the next frame's bytes after its length prefix into `buf`.
    pub(crate) fn next_frame(
        &mut self,
        buf: &mut Vec<u8>,
        limits: &KvLimits,
    ) -> Result<(), FrameEnd> {
        if self.inner.buffer().is_empty() {
            self.set_timeout(None)?;
            match self.inner.fill_buf() {
                Ok([]) => return Err(FrameEnd::Closed),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(FrameEnd::Stalled),
                Err(e) => return Err(FrameEnd::Io(e)),
            }
        }
        let deadline = Instant::now() + self.frame_timeout;
        let mut prefix = [0u8; 4];
        self.read_by(&mut prefix, deadline)?;
        let len = limits.check_length(prefix).map_err(FrameEnd::BadLength)?;
        buf.clear();
        buf.resize(len, 0);
        self.read_by(buf, deadline)
    }

    fn read_by(&mut self, out: &mut [u8], deadline: Instant) -> Result<(), FrameEnd> {
        let mut got = 0;
        while got < out.len() {
            if self.inner.buffer().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(FrameEnd::Stalled);
                }
                self.set_timeout(Some(left))?;
            }
            match self.inner.read(&mut out[got..]) {
                Ok(0) => return Err(FrameEnd::Stalled),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(FrameEnd::Stalled),
                Err(e) => return Err(FrameEnd::Io(e)),
            }
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), FrameEnd> {
        // Most frames arrive whole: the timeout costs a system call only
        // when one is cut across reads, and once more after it.
        if timeout != self.timeout {
            self.inner
                .get_ref()
                .set_read_timeout(timeout)
                .map_err(FrameEnd::Io)?;
            self.timeout = timeout;
        }
        Ok(())
    }
}

/// Writes out what is buffered (cleared either way); false when the client
/// is gone, with a log line naming `client` (a timeout is a warning: the
/// client did not take its answers).
pub(crate) fn send_buffered(mut sink: &TcpStream, out: &mut Vec<u8>, client: &dyn Display) -> bool {
    if out.is_empty() {
        return true;
    }
    let result = sink.write_all(out);
    out.clear();
    match result {
        Ok(()) => true,
        Err(e) => {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                log::warn!("{client}: did not take its answers in time; closing");
            } else {
                log::debug!("{client}: gone before taking its answers ({e})");
            }
            false
        }
    }
}

/// Reads one answer from a server, its length checked against the largest
/// answer `limits` allow before `buf` (scratch, reused) grows for it.
pub(crate) fn read_response(
    r: &mut impl Read,
    limits: &KvLimits,
    buf: &mut Vec<u8>,
) -> io::Result<KvResponse> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limits.max_response() {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("answer of {len} bytes is over the bound"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    KvResponse::decode(buf, limits)
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))
}

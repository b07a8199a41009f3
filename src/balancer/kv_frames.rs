//! Reads whole protocol v2 request frames from a client of the balancer:
//! it may wait as long as it likes before a frame begins (the balancer's
//! stop shuts the socket down), then must finish it within the handshake
//! timeout. The length prefix is checked ([`KvLimits::check_length`])
//! before a byte of the frame is read or allocated. Used by `kv`.

use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::wire::kv::{KvError, KvLimits};

/// Why no frame was read.
pub(super) enum FrameEnd {
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

pub(super) struct FrameReader<'a> {
    inner: BufReader<&'a TcpStream>,
    frame_timeout: Duration,
    /// The read timeout set on the socket now.
    timeout: Option<Duration>,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl<'a> FrameReader<'a> {
    pub(super) fn new(stream: &'a TcpStream, frame_timeout: Duration) -> io::Result<Self> {
        stream.set_read_timeout(None)?;
        Ok(FrameReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            frame_timeout,
            timeout: None,
        })
    }

    /// Reads the next frame's bytes after its length prefix into `buf`.
    pub(super) fn next_frame(
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

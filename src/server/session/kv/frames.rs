//! Reading a v2 connection's frames whole, with the timeouts of
//! docs/protocol.md §9.2, for the reader ([`super::burst`]).

use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::End;
use crate::wire::kv::KvLimits;

/// Reads whole frames: waits as long as the client likes for a frame to
/// begin, then gives the rest of it the handshake timeout. The socket's
/// read timeout is changed only when a frame is cut across reads.
pub(super) struct FrameReader<'a> {
    inner: BufReader<&'a TcpStream>,
    frame_timeout: Duration,
    timeout: Option<Duration>,
}

impl<'a> FrameReader<'a> {
    pub(super) fn new(stream: &'a TcpStream, frame_timeout: Duration) -> Self {
        let _ = stream.set_read_timeout(None);
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, stream),
            frame_timeout,
            timeout: None,
        }
    }

    /// True when the next frame is buffered whole: reading it waits for
    /// nothing.
    pub(super) fn frame_at_hand(&self) -> bool {
        match self.inner.buffer() {
            [a, b, c, d, rest @ ..] => {
                rest.len() as u64 >= u64::from(u32::from_be_bytes([*a, *b, *c, *d]))
            }
            _ => false,
        }
    }

    /// Reads the next frame's bytes after its length prefix into `buf`,
    /// the length checked against `limits` before anything is allocated.
    pub(super) fn next_frame(&mut self, buf: &mut Vec<u8>, limits: &KvLimits) -> Result<(), End> {
        if self.inner.buffer().is_empty() {
            self.set_timeout(None)?;
            match self.inner.fill_buf() {
                Ok([]) => return Err(End::Closed),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(End::Stalled),
                Err(e) => return Err(End::Io(e)),
            }
        }
        let deadline = Instant::now() + self.frame_timeout;
        let mut prefix = [0u8; 4];
        self.read_by(&mut prefix, deadline)?;
        let len = limits.check_length(prefix).map_err(End::BadLength)?;
        buf.clear();
        buf.resize(len, 0);
        self.read_by(buf, deadline)
    }

    /// Fills `out` before `deadline`.
    fn read_by(&mut self, out: &mut [u8], deadline: Instant) -> Result<(), End> {
        let mut got = 0;
        while got < out.len() {
            if self.inner.buffer().is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(End::Stalled);
                }
                self.set_timeout(Some(left))?;
            }
            match self.inner.read(&mut out[got..]) {
                Ok(0) => return Err(End::Stalled),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(End::Stalled),
                Err(e) => return Err(End::Io(e)),
            }
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), End> {
        // Between frames the timeout is only lifted if it was set: most
        // frames arrive whole and cost no system call for it.
        if timeout != self.timeout && (timeout.is_some() || self.timeout.is_some()) {
            self.inner
                .get_ref()
                .set_read_timeout(timeout)
                .map_err(End::Io)?;
            self.timeout = timeout;
        }
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

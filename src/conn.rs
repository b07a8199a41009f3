//! Blocking frame I/O over a byte stream, shared by the server roles and the
//! client stub. Turns the many ways a socket read ends into the few that
//! callers act on: a clean close between frames, a frame cut short, a
//! timeout, or another I/O error.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};

use crate::wire::native::{check_length, FrameError, NativeFrame};
use crate::wire::{Frame, Tag, HANDSHAKE_LEN, MAX_FRAME_SIZE};

/// How reading or writing a frame failed.
#[derive(Debug)]
pub enum ConnError {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection after `got` of `want` bytes.
    Truncated {
        /// Bytes received of the frame.
        got: usize,
        /// The frame's size.
        want: usize,
    },
    /// A read or write timeout expired.
    Timeout,
    /// Any other socket error.
    Io(io::Error),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Closed => write!(f, "connection closed"),
            ConnError::Truncated { got, want } => {
                write!(
                    f,
                    "connection closed after {got} of {want} bytes of a frame"
                )
            }
            ConnError::Timeout => write!(f, "timed out"),
            ConnError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ConnError::Timeout,
            ErrorKind::UnexpectedEof => ConnError::Closed,
            _ => ConnError::Io(e),
        }
    }
}

/// Fills `buf` completely, telling a clean close before the first byte
/// apart from one in the middle.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ConnError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(ConnError::Closed),
            Ok(0) => {
                return Err(ConnError::Truncated {
                    got,
                    want: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one fixed-size frame.
pub fn read_frame<F: Frame>(r: &mut impl Read) -> Result<F, ConnError> {
    let mut buf = [0u8; MAX_FRAME_SIZE];
    read_full(r, &mut buf[..F::SIZE])?;
    Ok(F::decode(&buf[..F::SIZE]))
}

/// Writes one frame (into a buffered writer, or straight to a socket).
pub fn write_frame<F: Frame>(w: &mut impl Write, frame: &F) -> Result<(), ConnError> {
    let mut buf = [0u8; MAX_FRAME_SIZE];
    frame.encode(&mut buf[..F::SIZE]);
    w.write_all(&buf[..F::SIZE])?;
    Ok(())
}

/// How reading a native frame failed.
#[derive(Debug)]
pub enum NativeError {
    /// The connection failed or closed.
    Conn(ConnError),
    /// The bytes are not a valid frame (the connection must be closed).
    Frame(FrameError),
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeError::Conn(e) => write!(f, "{e}"),
            NativeError::Frame(e) => write!(f, "invalid frame: {e}"),
        }
    }
}

impl std::error::Error for NativeError {}

impl From<ConnError> for NativeError {
    fn from(e: ConnError) -> Self {
        NativeError::Conn(e)
    }
}

/// Reads one native frame, using `buf` as scratch space. The length prefix
/// is checked against its bound, and the buffer then grows only with the
/// bytes that actually arrive: a peer that announces a large frame and
/// sends little makes us hold little.
pub fn read_native(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<NativeFrame, NativeError> {
    let mut prefix = [0u8; 4];
    read_full(r, &mut prefix)?;
    let len = check_length(prefix).map_err(NativeError::Frame)?;
    read_body(r, buf, len)?;
    NativeFrame::decode(buf).map_err(NativeError::Frame)
}

/// Reads exactly `len` bytes into `buf` (cleared first), in chunks.
fn read_body(r: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> Result<(), ConnError> {
    let mut chunk = [0u8; 4096];
    buf.clear();
    while buf.len() < len {
        let want = (len - buf.len()).min(chunk.len());
        match r.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(ConnError::Truncated {
                    got: 4 + buf.len(),
                    want: 4 + len,
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Encodes `frame` into `buf` (cleared first) and writes it.
pub fn write_native(
    w: &mut impl Write,
    frame: &NativeFrame,
    buf: &mut Vec<u8>,
) -> Result<(), ConnError> {
    buf.clear();
    frame.encode(buf);
    w.write_all(buf)?;
    Ok(())
}

/// True when a read of `stream` would not block: bytes are waiting, or it
/// is closed or failed (which the read then reports). Never blocks.
pub fn data_waiting(stream: &std::net::TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, flags) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Gives the CPU away, without sleeping, until `ready` holds or `limit`
/// passes. A peer on this machine usually answers within tens of
/// microseconds, and sleeping then being woken from the other CPU costs
/// about 40 µs more on a small virtual machine; yielding lets the peer run
/// here meanwhile.
pub fn yield_until(limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ready() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Reads the 8-byte handshake; `Ok(None)` for a tag no role answers to.
pub fn read_tag(r: &mut impl Read) -> Result<(Option<Tag>, [u8; HANDSHAKE_LEN]), ConnError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    read_full(r, &mut buf)?;
    Ok((Tag::decode(&buf), buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RobotOrder, CLIENT_TAG};

    #[test]
    fn reads_frames_across_short_reads() {
        let bytes = RobotOrder::write(7, 42).to_vec();
        // A reader that hands out one byte at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let order: RobotOrder = read_frame(&mut Trickle(&bytes)).unwrap();
        assert_eq!(order, RobotOrder::write(7, 42));
    }

    #[test]
    fn clean_close_and_truncation_differ() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<RobotOrder>(&mut &*empty),
            Err(ConnError::Closed)
        ));
        let short: &[u8] = &[0, 0, 0, 7, 0];
        assert!(matches!(
            read_frame::<RobotOrder>(&mut &*short),
            Err(ConnError::Truncated { got: 5, want: 12 })
        ));
    }

    #[test]
    fn tag_recognition() {
        let (tag, raw) = read_tag(&mut &CLIENT_TAG[..]).unwrap();
        assert_eq!(tag, Some(Tag::Client));
        assert_eq!(raw, CLIENT_TAG);
        let (tag, _) = read_tag(&mut &b"HELLO!!!"[..]).unwrap();
        assert_eq!(tag, None);
    }

    #[test]
    fn native_frames_round_trip_and_lengths_are_bounded() {
        use crate::wire::native::Body;
        let frame = NativeFrame::new(3, Body::Heartbeat { commit_index: 4 });
        let mut out = Vec::new();
        write_native(&mut out, &frame, &mut Vec::new()).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(read_native(&mut &out[..], &mut scratch).unwrap(), frame);
        let huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(
            read_native(&mut &*huge, &mut scratch),
            Err(NativeError::Frame(FrameError::BadLength(_)))
        ));
        assert!(
            scratch.capacity() < 1 << 16,
            "nothing allocated from the bad length"
        );
        let cut = &out[..out.len() - 1];
        assert!(matches!(
            read_native(&mut &*cut, &mut scratch),
            Err(NativeError::Conn(ConnError::Truncated { .. }))
        ));
    }

    #[test]
    fn write_then_read_round_trip() {
        let mut out = Vec::new();
        write_frame(&mut out, &RobotOrder::read(3)).unwrap();
        assert_eq!(out.len(), 12);
        let back: RobotOrder = read_frame(&mut &out[..]).unwrap();
        assert_eq!(back, RobotOrder::read(3));
    }
}

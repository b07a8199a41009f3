//! The observer stream (issue 16.3): a balancer's connection to the primary,
//! opened with [`OBSERVE_TAG`], over which the primary streams every
//! committed entry in log order and confirms its commit point on request.
//! The balancer's read cache applies the stream; `server::primary::observe` serves
//! it. The observer never votes and is never waited for.
//!
//! Every frame is length-prefixed:
//!
//! ```text
//! offset  field    type  order
//! 0       length   u32   BE    (bytes after this field, 1..=MAX_FRAME_LEN)
//! 4       kind     u8
//! 5       body     ...         (per kind, below)
//! ```
//!
//! | kind | frame       | from     | body                                        |
//! |------|-------------|----------|---------------------------------------------|
//! | 1    | Subscribe   | observer | flag u8 (1: applied follows), applied i32   |
//! | 2    | Confirm     | observer | seq u64                                     |
//! | 10   | Start       | server   | epoch u64, reset u8, applied i32            |
//! | 11   | Entries     | server   | first i32, count u32, count × entry         |
//! | 12   | Confirmed   | server   | seq u64, commit i32                         |
//! | 13   | Refused     | server   | primary i32 (the one it knows, or -1)       |
//! | 14   | Heartbeat   | server   | commit i32                                  |
//!
//! Entries are encoded as in the native stream ([`Entry::encode`]). A
//! `Confirmed` is sent only after every entry through its `commit`, so an
//! observer that reads it has applied at least that far.

use byteorder::{BigEndian, ByteOrder};
use std::io::{ErrorKind, Read};

use super::entry::{Entry, EntryError, Epoch};
use super::native::MAX_FRAME_LEN;
use super::HANDSHAKE_LEN;

/// The handshake tag of an observer connection. It matches no original
/// tag or prefix (`CLIENT`, `PFA`) and no other Rust one.
pub const OBSERVE_TAG: [u8; HANDSHAKE_LEN] = *b"FOBS\0\0\0\x01";

/// Most entries one `Entries` frame carries.
pub const MAX_OBSERVE_ENTRIES: usize = 8192;

/// Most bytes of entries one `Entries` frame carries (the frame stays
/// within [`MAX_FRAME_LEN`]; one entry of the largest size always fits).
pub const MAX_OBSERVE_BYTES: usize = MAX_FRAME_LEN - 16;

const _: () = assert!(super::entry::MAX_ENTRY_LEN <= MAX_OBSERVE_BYTES);

const SUBSCRIBE: u8 = 1;
const CONFIRM: u8 = 2;
const START: u8 = 10;
const ENTRIES: u8 = 11;
const CONFIRMED: u8 = 12;
const REFUSED: u8 = 13;
const HEARTBEAT: u8 = 14;

/// One frame of the observer stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObserveFrame {
    /// The observer's first frame: the index through which it has applied
    /// the log, or `None` for an observer with nothing (it starts now).
    Subscribe { applied: Option<i32> },
    /// Asks for the commit point as of now; `seq` is echoed.
    Confirm { seq: u64 },
    /// The server's answer to `Subscribe`: entries follow from
    /// `applied + 1`; `reset` says the observer must forget what it holds.
    Start {
        epoch: Epoch,
        reset: bool,
        applied: i32,
    },
    /// Committed entries `first..first + entries.len()`.
    Entries { first: i32, entries: Vec<Entry> },
    /// The commit point asked for by `Confirm { seq }`; every entry through
    /// it has been sent before.
    Confirmed { seq: u64, commit: i32 },
    /// This server is not a primary that may serve reads; it closes.
    Refused { primary: i32 },
    /// Sent while idle, so that a silent link is noticed.
    Heartbeat { commit: i32 },
}

/// Why bytes are not an observer frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObserveError {
    /// The declared length is 0 or over [`MAX_FRAME_LEN`].
    BadLength(u32),
    /// The kind byte names no frame.
    UnknownKind(u8),
    /// The body is shorter or longer than its kind requires.
    BadBody(&'static str),
    /// An entry is malformed.
    Entry(EntryError),
    /// More entries than [`MAX_OBSERVE_ENTRIES`].
    TooMany(u32),
    /// The connection failed or ended (its message).
    Io(String),
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObserveError::BadLength(n) => {
                write!(f, "observer frame length {n} outside 1..={MAX_FRAME_LEN}")
            }
            ObserveError::UnknownKind(k) => write!(f, "unknown observer frame kind {k}"),
            ObserveError::BadBody(kind) => write!(f, "malformed {kind} frame"),
            ObserveError::Entry(e) => write!(f, "malformed entry: {e}"),
            ObserveError::TooMany(n) => {
                write!(f, "{n} entries in one frame, over {MAX_OBSERVE_ENTRIES}")
            }
            ObserveError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ObserveError {}

impl ObserveFrame {
    /// Appends the frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            ObserveFrame::Subscribe { applied } => {
                out.push(SUBSCRIBE);
                out.push(u8::from(applied.is_some()));
                put_i32(out, applied.unwrap_or(-1));
            }
            ObserveFrame::Confirm { seq } => {
                out.push(CONFIRM);
                out.extend_from_slice(&seq.to_be_bytes());
            }
            ObserveFrame::Start {
                epoch,
                reset,
                applied,
            } => {
                out.push(START);
                out.extend_from_slice(&epoch.to_be_bytes());
                out.push(u8::from(*reset));
                put_i32(out, *applied);
            }
            ObserveFrame::Entries { first, entries } => {
                out.push(ENTRIES);
                put_i32(out, *first);
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for e in entries {
                    e.encode(out);
                }
            }
            ObserveFrame::Confirmed { seq, commit } => {
                out.push(CONFIRMED);
                out.extend_from_slice(&seq.to_be_bytes());
                put_i32(out, *commit);
            }
            ObserveFrame::Refused { primary } => {
                out.push(REFUSED);
                put_i32(out, *primary);
            }
            ObserveFrame::Heartbeat { commit } => {
                out.push(HEARTBEAT);
                put_i32(out, *commit);
            }
        }
        let len = (out.len() - at - 4) as u32;
        BigEndian::write_u32(&mut out[at..at + 4], len);
    }

    /// Decodes a frame's bytes after its length prefix.
    ///
    /// # Errors
    /// [`ObserveError`] for an unknown kind or a body that does not fit it.
    pub fn decode(buf: &[u8]) -> Result<ObserveFrame, ObserveError> {
        let (&kind, body) = buf.split_first().ok_or(ObserveError::BadBody("empty"))?;
        let mut r = Body { buf: body };
        let frame = match kind {
            SUBSCRIBE => {
                let name = "subscribe";
                let has = r.flag(name)?;
                let applied = r.i32(name)?;
                ObserveFrame::Subscribe {
                    applied: has.then_some(applied),
                }
            }
            CONFIRM => ObserveFrame::Confirm {
                seq: r.u64("confirm")?,
            },
            START => ObserveFrame::Start {
                epoch: r.u64("start")?,
                reset: r.flag("start")?,
                applied: r.i32("start")?,
            },
            ENTRIES => decode_entries(&mut r)?,
            CONFIRMED => ObserveFrame::Confirmed {
                seq: r.u64("confirmed")?,
                commit: r.i32("confirmed")?,
            },
            REFUSED => ObserveFrame::Refused {
                primary: r.i32("refused")?,
            },
            HEARTBEAT => ObserveFrame::Heartbeat {
                commit: r.i32("heartbeat")?,
            },
            k => return Err(ObserveError::UnknownKind(k)),
        };
        if !r.buf.is_empty() {
            return Err(ObserveError::BadBody(frame.name()));
        }
        Ok(frame)
    }

    /// The frame's name, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            ObserveFrame::Subscribe { .. } => "subscribe",
            ObserveFrame::Confirm { .. } => "confirm",
            ObserveFrame::Start { .. } => "start",
            ObserveFrame::Entries { .. } => "entries",
            ObserveFrame::Confirmed { .. } => "confirmed",
            ObserveFrame::Refused { .. } => "refused",
            ObserveFrame::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// How many of `entries` (at least one, when there is any) one `Entries`
/// frame carries.
pub fn observe_batch_len(entries: &[Entry]) -> usize {
    let mut bytes = 0;
    for (n, entry) in entries.iter().take(MAX_OBSERVE_ENTRIES).enumerate() {
        bytes += entry.encoded_len();
        if bytes > MAX_OBSERVE_BYTES {
            return n.max(1);
        }
    }
    entries.len().min(MAX_OBSERVE_ENTRIES)
}

fn decode_entries(r: &mut Body<'_>) -> Result<ObserveFrame, ObserveError> {
    let first = r.i32("entries")?;
    let count = r.u32("entries")?;
    if count as usize > MAX_OBSERVE_ENTRIES {
        return Err(ObserveError::TooMany(count));
    }
    // Each entry is at least 9 bytes: a count the body cannot hold is
    // refused before anything is allocated for it.
    if (count as usize).saturating_mul(9) > r.buf.len() {
        return Err(ObserveError::BadBody("entries"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (entry, used) = Entry::decode(r.buf).map_err(ObserveError::Entry)?;
        r.buf = &r.buf[used..];
        entries.push(entry);
    }
    Ok(ObserveFrame::Entries { first, entries })
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

struct Body<'a> {
    buf: &'a [u8],
}

impl Body<'_> {
    fn take(&mut self, n: usize, name: &'static str) -> Result<&[u8], ObserveError> {
        if self.buf.len() < n {
            return Err(ObserveError::BadBody(name));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn flag(&mut self, name: &'static str) -> Result<bool, ObserveError> {
        match self.take(1, name)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ObserveError::BadBody(name)),
        }
    }
    fn i32(&mut self, name: &'static str) -> Result<i32, ObserveError> {
        Ok(BigEndian::read_i32(self.take(4, name)?))
    }
    fn u32(&mut self, name: &'static str) -> Result<u32, ObserveError> {
        Ok(BigEndian::read_u32(self.take(4, name)?))
    }
    fn u64(&mut self, name: &'static str) -> Result<u64, ObserveError> {
        Ok(BigEndian::read_u64(self.take(8, name)?))
    }
}

/// Reads one frame from `r` into `scratch`. The length is checked against
/// its bound before anything is read, and the buffer grows only with the
/// bytes that arrive, so a peer announcing a large frame makes us hold
/// little. (The one read helper of this codec, shared by both ends.)
///
/// # Errors
/// [`ObserveError::Io`] when the connection fails or ends, else the
/// frame's own error.
pub fn read_observe(
    r: &mut impl Read,
    scratch: &mut Vec<u8>,
) -> Result<ObserveFrame, ObserveError> {
    let mut prefix = [0u8; 4];
    fill(r, &mut prefix)?;
    let len = u32::from_be_bytes(prefix);
    if len == 0 || len as usize > MAX_FRAME_LEN {
        return Err(ObserveError::BadLength(len));
    }
    scratch.clear();
    let mut chunk = [0u8; 4096];
    while scratch.len() < len as usize {
        let want = (len as usize - scratch.len()).min(chunk.len());
        fill(r, &mut chunk[..want])?;
        scratch.extend_from_slice(&chunk[..want]);
    }
    ObserveFrame::decode(scratch)
}

fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ObserveError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(ObserveError::Io("connection closed".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ObserveError::Io("timed out".into()))
            }
            Err(e) => return Err(ObserveError::Io(e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Tag;

    fn round_trip(frame: ObserveFrame) {
        let mut out = Vec::new();
        frame.encode(&mut out);
        let len = BigEndian::read_u32(&out[..4]) as usize;
        assert_eq!(len, out.len() - 4);
        let mut cursor = &out[..];
        let mut scratch = Vec::new();
        assert_eq!(read_observe(&mut cursor, &mut scratch), Ok(frame));
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(ObserveFrame::Subscribe { applied: None });
        round_trip(ObserveFrame::Subscribe { applied: Some(-1) });
        round_trip(ObserveFrame::Subscribe { applied: Some(77) });
        round_trip(ObserveFrame::Confirm { seq: u64::MAX });
        round_trip(ObserveFrame::Start {
            epoch: 3 << 16 | 2,
            reset: true,
            applied: 41,
        });
        round_trip(ObserveFrame::Entries {
            first: 5,
            entries: vec![
                Entry::set(9, 1, 2),
                Entry {
                    epoch: 9,
                    op: crate::wire::Op::Noop,
                },
            ],
        });
        round_trip(ObserveFrame::Entries {
            first: 0,
            entries: vec![],
        });
        round_trip(ObserveFrame::Confirmed { seq: 4, commit: 8 });
        round_trip(ObserveFrame::Refused { primary: -1 });
        round_trip(ObserveFrame::Heartbeat { commit: 12 });
    }

    #[test]
    fn the_tag_is_its_own() {
        assert_eq!(Tag::decode(&OBSERVE_TAG), None, "no v1 or native role");
        assert!(!OBSERVE_TAG.starts_with(b"PFA") && !OBSERVE_TAG.starts_with(b"CLIENT"));
        assert_ne!(OBSERVE_TAG, crate::wire::kv::KV_TAG);
    }

    #[test]
    fn hostile_bytes_are_refused_without_allocating() {
        let mut scratch = Vec::new();
        let mut huge = &[0xff, 0xff, 0xff, 0xff, ENTRIES][..];
        assert!(matches!(
            read_observe(&mut huge, &mut scratch),
            Err(ObserveError::BadLength(_))
        ));
        let mut zero = &[0, 0, 0, 0][..];
        assert!(matches!(
            read_observe(&mut zero, &mut scratch),
            Err(ObserveError::BadLength(0))
        ));
        // A count far past what the body holds.
        let many = [ENTRIES, 0, 0, 0, 0, 0, 0, 0x20, 0];
        assert_eq!(
            ObserveFrame::decode(&many),
            Err(ObserveError::BadBody("entries"))
        );
        let too_many = [ENTRIES, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            ObserveFrame::decode(&too_many),
            Err(ObserveError::TooMany(_))
        ));
        assert_eq!(
            ObserveFrame::decode(&[99]),
            Err(ObserveError::UnknownKind(99))
        );
        assert_eq!(
            ObserveFrame::decode(&[CONFIRM, 1, 2]),
            Err(ObserveError::BadBody("confirm"))
        );
        assert_eq!(
            ObserveFrame::decode(&[HEARTBEAT, 0, 0, 0, 1, 9]),
            Err(ObserveError::BadBody("heartbeat"))
        );
        assert_eq!(
            ObserveFrame::decode(&[SUBSCRIBE, 2, 0, 0, 0, 0]),
            Err(ObserveError::BadBody("subscribe"))
        );
        // Cut short: the announced length never arrives.
        let mut short = &[0, 0, 0, 9, CONFIRM, 0][..];
        assert!(matches!(
            read_observe(&mut short, &mut scratch),
            Err(ObserveError::Io(_))
        ));
    }

    #[test]
    fn batches_stay_within_a_frame() {
        let small = vec![Entry::set(1, 1, 1); MAX_OBSERVE_ENTRIES + 5];
        assert_eq!(observe_batch_len(&small), MAX_OBSERVE_ENTRIES);
        assert_eq!(observe_batch_len(&small[..3]), 3);
        assert_eq!(observe_batch_len(&[]), 0);
    }
}

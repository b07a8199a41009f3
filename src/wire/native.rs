//! The native replication protocol between Rust servers, behind its own
//! handshake tag (`FREP`, which an original server rejects, so a Rust
//! primary can tell an original peer and fall back to v1 `PFA` frames).
//!
//! Every frame is length-prefixed and versioned and carries the sender's
//! epoch:
//!
//! ```text
//! offset  field     type  order
//! 0       length    u32   BE    (bytes after this field, ≤ MAX_FRAME_LEN)
//! 4       version   u8          (NATIVE_VERSION)
//! 5       kind      u8
//! 6       epoch     u64   BE    (the sender's current epoch)
//! 14      body      ...         (per kind, below)
//! ```
//!
//! A replication stream opens with the primary's [`Body::Hello`]; the backup
//! answers [`Body::CatchUp`] with the position of its log, and the primary
//! sends a [`Body::Snapshot`] (in chunks) and/or [`Body::Append`] batches
//! from there, then [`Body::Heartbeat`]s while idle. The backup acks every
//! append and heartbeat. A candidate for primary sends [`Body::Probe`] on a
//! short-lived connection and gets a [`Body::ProbeReply`]. A backup about
//! to answer a read asks the primary [`Body::ReadIndex`] on a connection of
//! its own and gets a [`Body::ReadIndexReply`]. Anything a peer
//! cannot accept is answered with a [`Body::Reject`] and the connection is
//! closed.

use byteorder::{BigEndian, ByteOrder};

use super::cursor::{Reader, Writer};
use super::entry::{Entry, EntryError, Epoch, MemberSet, MAX_ENTRY_LEN, MAX_VALUE_LEN};
use super::kv::{KvItem, KvResponse};
use super::HANDSHAKE_LEN;

/// The handshake tag of a native replication connection.
pub const NATIVE_TAG: [u8; HANDSHAKE_LEN] = *b"FREP\0\0\0\x01";

/// The frame format version this build speaks.
pub const NATIVE_VERSION: u8 = 1;

/// Largest `length` a frame may declare; a longer one is refused unread.
/// It holds an append of one entry of the largest size
/// ([`MAX_ENTRY_LEN`], a string write of a 1 MiB value) with room to spare.
pub const MAX_FRAME_LEN: usize = 2 << 20;

/// Size of the part of every frame after `length`: version, kind, epoch.
const HEADER_LEN: usize = 10;

/// An append's body before its entries: prev index and epoch, commit
/// index, count.
const APPEND_HEAD_LEN: usize = 4 + 8 + 4 + 4;

/// Most bytes of entries one append may carry, so that its frame stays
/// within [`MAX_FRAME_LEN`]; a batch stops adding entries before passing it.
pub const MAX_APPEND_BYTES: usize = MAX_FRAME_LEN - HEADER_LEN - APPEND_HEAD_LEN;

const _: () = assert!(
    MAX_ENTRY_LEN <= MAX_APPEND_BYTES,
    "one entry must fit a frame"
);

/// How many of `entries` (at least one, when there is any) one append
/// carries: at most [`MAX_BATCH_ENTRIES`] and [`MAX_APPEND_BYTES`].
pub fn batch_len(entries: &[Entry]) -> usize {
    let mut bytes = 0;
    for (n, entry) in entries.iter().take(MAX_BATCH_ENTRIES).enumerate() {
        bytes += entry.encoded_len();
        if bytes > MAX_APPEND_BYTES {
            return n.max(1);
        }
    }
    entries.len().min(MAX_BATCH_ENTRIES)
}

/// Bytes of string keys one snapshot chunk is filled to; a single larger
/// key (at most [`MAX_ENTRY_LEN`]) goes alone. Either way the frame stays
/// within [`MAX_FRAME_LEN`].
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(MAX_CHUNK_BYTES + 1024 <= MAX_FRAME_LEN);

/// How many of `items` the next snapshot chunk carries: within
/// [`MAX_CHUNK_BYTES`], and at least one when any is left.
pub fn chunk_len(items: &[KvItem]) -> usize {
    let mut bytes = 0;
    for (n, item) in items.iter().enumerate() {
        bytes += KvResponse::item_len(item);
        if bytes > MAX_CHUNK_BYTES {
            return n.max(1);
        }
    }
    items.len()
}

/// Most entries in one append, and most records in one snapshot chunk;
/// both keep frames far below [`MAX_FRAME_LEN`].
pub const MAX_BATCH_ENTRIES: usize = 8192;
/// See [`MAX_BATCH_ENTRIES`].
pub const MAX_CHUNK_RECORDS: usize = 65536;

/// Most bytes of text in a rejection.
pub const MAX_REASON_LEN: usize = 512;

/// One native frame: the sender's epoch and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeFrame {
    /// The sender's current epoch.
    pub epoch: Epoch,
    /// The message.
    pub body: Body,
}

/// Why a peer refuses what it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    /// The frame's epoch is older than the receiver's (the frame header
    /// carries the receiver's epoch).
    StaleEpoch = 1,
    /// The receiver follows a live primary (named in the reason).
    HasPrimary = 2,
    /// An append does not continue the receiver's log.
    LogMismatch = 3,
    /// The frame is invalid here (wrong kind, bad index, bad version).
    Protocol = 4,
    /// The receiver cannot store entries (disk failure).
    Storage = 5,
}

impl RejectCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => RejectCode::StaleEpoch,
            2 => RejectCode::HasPrimary,
            3 => RejectCode::LogMismatch,
            4 => RejectCode::Protocol,
            5 => RejectCode::Storage,
            _ => return None,
        })
    }
}

/// The message of a native frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Primary → backup, first frame of a stream: "I am primary".
    Hello { primary_id: i32, commit_index: i32 },
    /// Backup → primary: where the backup's log ends.
    CatchUp {
        replica_id: i32,
        last_index: i32,
        last_epoch: Epoch,
    },
    /// Primary → backup: entries following `prev_index` (whose entry has
    /// `prev_epoch`), and the primary's commit index.
    Append {
        prev_index: i32,
        prev_epoch: Epoch,
        commit_index: i32,
        entries: Vec<Entry>,
    },
    /// Primary → backup while idle: the commit index.
    Heartbeat { commit_index: i32 },
    /// Backup → primary: its log ends at `last_index`, durably.
    Ack { replica_id: i32, last_index: i32 },
    /// Primary → backup: the record map and the string store as of
    /// `last_index`, in chunks; the backup replaces its state when `done`.
    /// String keys follow the records only when there are any (a chunk
    /// without them is byte for byte what a build without string keys
    /// sends), and a chunk stops adding them before [`MAX_CHUNK_BYTES`].
    Snapshot {
        last_index: i32,
        last_epoch: Epoch,
        in_sync: MemberSet,
        records: Vec<(i32, i32)>,
        kv: Vec<KvItem>,
        done: bool,
    },
    /// Candidate → peer: "I want to take over; where is your log?"
    Probe { candidate_id: i32 },
    /// Peer → candidate.
    ProbeReply {
        replica_id: i32,
        last_index: i32,
        last_epoch: Epoch,
        /// The peer has held every committed entry since it last was in sync.
        trusted: bool,
        /// The in-sync set its log names.
        in_sync: MemberSet,
        /// A live primary it follows, or -1.
        primary_id: i32,
    },
    /// Either way: the receiver refuses; the connection closes after it.
    Reject { code: RejectCode, reason: String },
    /// Backup → primary, on a connection of its own: "what is your commit
    /// point?", asked before a read (read-index). Repeated on the same
    /// connection for later reads.
    ReadIndex { replica_id: i32 },
    /// Primary → backup: its commit point, which covers every write it
    /// has acknowledged. Only a primary that has committed an entry of its
    /// own epoch answers; any other server sends a `Reject` (code 2, the
    /// primary it follows or -1).
    ReadIndexReply { commit_index: i32 },
}

/// Why bytes are not a valid native frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length exceeds [`MAX_FRAME_LEN`] or is below the header.
    BadLength(u32),
    /// The version byte is not [`NATIVE_VERSION`].
    Version(u8),
    /// The kind byte names no frame.
    UnknownKind(u8),
    /// The body is shorter or longer than its kind requires.
    BadBody(&'static str),
    /// An entry in an append is malformed.
    Entry(EntryError),
    /// A count exceeds its bound.
    TooMany(&'static str, u32),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadLength(n) => {
                write!(f, "frame length {n} outside {HEADER_LEN}..={MAX_FRAME_LEN}")
            }
            FrameError::Version(v) => {
                write!(f, "frame version {v}, expected {NATIVE_VERSION}")
            }
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadBody(kind) => write!(f, "malformed {kind} frame"),
            FrameError::Entry(e) => write!(f, "malformed entry: {e}"),
            FrameError::TooMany(what, n) => write!(f, "{n} {what} is over the bound"),
        }
    }
}

impl std::error::Error for FrameError {}

const KIND_HELLO: u8 = 1;
const KIND_CATCH_UP: u8 = 2;
const KIND_APPEND: u8 = 3;
const KIND_HEARTBEAT: u8 = 4;
const KIND_ACK: u8 = 5;
const KIND_SNAPSHOT: u8 = 6;
const KIND_PROBE: u8 = 7;
const KIND_PROBE_REPLY: u8 = 8;
const KIND_REJECT: u8 = 9;
const KIND_READ_INDEX: u8 = 10;
const KIND_READ_INDEX_REPLY: u8 = 11;

/// Checks the 4-byte length prefix before anything is read or allocated.
///
/// # Errors
/// [`FrameError::BadLength`] for a length below the header or over the bound.
pub fn check_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if (len as usize) < HEADER_LEN || len as usize > MAX_FRAME_LEN {
        return Err(FrameError::BadLength(len));
    }
    Ok(len as usize)
}

impl NativeFrame {
    /// A frame from `epoch` saying `body`.
    pub fn new(epoch: Epoch, body: Body) -> Self {
        NativeFrame { epoch, body }
    }

    /// Appends the whole frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(NATIVE_VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        self.body.encode(out);
        let len = (out.len() - start - 4) as u32;
        BigEndian::write_u32(&mut out[start..start + 4], len);
    }

    /// Decodes a frame from the bytes after its length prefix.
    ///
    /// # Errors
    /// [`FrameError`] for any byte sequence that is not exactly one frame.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() < HEADER_LEN || buf.len() > MAX_FRAME_LEN {
            return Err(FrameError::BadLength(buf.len() as u32));
        }
        if buf[0] != NATIVE_VERSION {
            return Err(FrameError::Version(buf[0]));
        }
        let epoch = BigEndian::read_u64(&buf[2..10]);
        let body = Body::decode(buf[1], &buf[HEADER_LEN..])?;
        Ok(NativeFrame { epoch, body })
    }
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Hello { .. } => KIND_HELLO,
            Body::CatchUp { .. } => KIND_CATCH_UP,
            Body::Append { .. } => KIND_APPEND,
            Body::Heartbeat { .. } => KIND_HEARTBEAT,
            Body::Ack { .. } => KIND_ACK,
            Body::Snapshot { .. } => KIND_SNAPSHOT,
            Body::Probe { .. } => KIND_PROBE,
            Body::ProbeReply { .. } => KIND_PROBE_REPLY,
            Body::Reject { .. } => KIND_REJECT,
            Body::ReadIndex { .. } => KIND_READ_INDEX,
            Body::ReadIndexReply { .. } => KIND_READ_INDEX_REPLY,
        }
    }

    /// The frame kind's name, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Hello { .. } => "hello",
            Body::CatchUp { .. } => "catch-up",
            Body::Append { .. } => "append",
            Body::Heartbeat { .. } => "heartbeat",
            Body::Ack { .. } => "ack",
            Body::Snapshot { .. } => "snapshot",
            Body::Probe { .. } => "probe",
            Body::ProbeReply { .. } => "probe reply",
            Body::Reject { .. } => "reject",
            Body::ReadIndex { .. } => "read-index request",
            Body::ReadIndexReply { .. } => "read-index reply",
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        match self {
            Body::Hello {
                primary_id,
                commit_index,
            } => {
                w.i32(*primary_id);
                w.i32(*commit_index);
            }
            Body::CatchUp {
                replica_id,
                last_index,
                last_epoch,
            } => {
                w.i32(*replica_id);
                w.i32(*last_index);
                w.u64(*last_epoch);
            }
            Body::Append {
                prev_index,
                prev_epoch,
                commit_index,
                entries,
            } => {
                w.i32(*prev_index);
                w.u64(*prev_epoch);
                w.i32(*commit_index);
                w.u32(entries.len() as u32);
                for entry in entries {
                    entry.encode(w.0);
                }
            }
            Body::Heartbeat { commit_index } => w.i32(*commit_index),
            Body::Ack {
                replica_id,
                last_index,
            } => {
                w.i32(*replica_id);
                w.i32(*last_index);
            }
            Body::Snapshot {
                last_index,
                last_epoch,
                in_sync,
                records,
                kv,
                done,
            } => {
                w.i32(*last_index);
                w.u64(*last_epoch);
                w.members(in_sync);
                w.0.push(u8::from(*done));
                w.u32(records.len() as u32);
                for (customer, order) in records {
                    w.i32(*customer);
                    w.i32(*order);
                }
                if !kv.is_empty() {
                    w.u32(kv.len() as u32);
                    for item in kv {
                        w.0.extend_from_slice(&(item.key.len() as u16).to_be_bytes());
                        w.0.extend_from_slice(&item.key);
                        w.u64(item.version);
                        w.u32(item.value.len() as u32);
                        w.0.extend_from_slice(&item.value);
                    }
                }
            }
            Body::Probe { candidate_id } => w.i32(*candidate_id),
            Body::ProbeReply {
                replica_id,
                last_index,
                last_epoch,
                trusted,
                in_sync,
                primary_id,
            } => {
                w.i32(*replica_id);
                w.i32(*last_index);
                w.u64(*last_epoch);
                w.0.push(u8::from(*trusted));
                w.members(in_sync);
                w.i32(*primary_id);
            }
            Body::Reject { code, reason } => {
                w.0.push(*code as u8);
                let text = truncate_utf8(reason, MAX_REASON_LEN);
                w.u32(text.len() as u32);
                w.0.extend_from_slice(text.as_bytes());
            }
            Body::ReadIndex { replica_id } => w.i32(*replica_id),
            Body::ReadIndexReply { commit_index } => w.i32(*commit_index),
        }
    }

    fn decode(kind: u8, buf: &[u8]) -> Result<Body, FrameError> {
        let mut r = Reader { buf, name: "" };
        let body = match kind {
            KIND_HELLO => {
                r.name = "hello";
                Body::Hello {
                    primary_id: r.i32()?,
                    commit_index: r.i32()?,
                }
            }
            KIND_CATCH_UP => {
                r.name = "catch-up";
                Body::CatchUp {
                    replica_id: r.i32()?,
                    last_index: r.i32()?,
                    last_epoch: r.u64()?,
                }
            }
            KIND_APPEND => {
                r.name = "append";
                decode_append(&mut r)?
            }
            KIND_HEARTBEAT => {
                r.name = "heartbeat";
                Body::Heartbeat {
                    commit_index: r.i32()?,
                }
            }
            KIND_ACK => {
                r.name = "ack";
                Body::Ack {
                    replica_id: r.i32()?,
                    last_index: r.i32()?,
                }
            }
            KIND_SNAPSHOT => {
                r.name = "snapshot";
                decode_snapshot(&mut r)?
            }
            KIND_PROBE => {
                r.name = "probe";
                Body::Probe {
                    candidate_id: r.i32()?,
                }
            }
            KIND_PROBE_REPLY => {
                r.name = "probe reply";
                Body::ProbeReply {
                    replica_id: r.i32()?,
                    last_index: r.i32()?,
                    last_epoch: r.u64()?,
                    trusted: r.flag()?,
                    in_sync: r.members()?,
                    primary_id: r.i32()?,
                }
            }
            KIND_REJECT => {
                r.name = "reject";
                decode_reject(&mut r)?
            }
            KIND_READ_INDEX => {
                r.name = "read-index request";
                Body::ReadIndex {
                    replica_id: r.i32()?,
                }
            }
            KIND_READ_INDEX_REPLY => {
                r.name = "read-index reply";
                Body::ReadIndexReply {
                    commit_index: r.i32()?,
                }
            }
            other => return Err(FrameError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(body)
    }
}

fn decode_append(r: &mut Reader<'_>) -> Result<Body, FrameError> {
    let prev_index = r.i32()?;
    let prev_epoch = r.u64()?;
    let commit_index = r.i32()?;
    let count = r.u32()?;
    if count as usize > MAX_BATCH_ENTRIES {
        return Err(FrameError::TooMany("entries", count));
    }
    // Each entry takes at least 9 bytes, so `count` is also bounded by the
    // bytes actually present before anything is reserved.
    if count as usize > r.buf.len() / 9 {
        return Err(FrameError::BadBody("append"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (entry, used) = Entry::decode(r.buf).map_err(FrameError::Entry)?;
        entries.push(entry);
        r.buf = &r.buf[used..];
    }
    Ok(Body::Append {
        prev_index,
        prev_epoch,
        commit_index,
        entries,
    })
}

fn decode_snapshot(r: &mut Reader<'_>) -> Result<Body, FrameError> {
    let last_index = r.i32()?;
    let last_epoch = r.u64()?;
    let in_sync = r.members()?;
    let done = r.flag()?;
    let count = r.u32()?;
    if count as usize > MAX_CHUNK_RECORDS {
        return Err(FrameError::TooMany("snapshot records", count));
    }
    let bytes = r.take(count as usize * 8)?;
    let records = bytes
        .chunks_exact(8)
        .map(|c| (BigEndian::read_i32(&c[..4]), BigEndian::read_i32(&c[4..])))
        .collect();
    let kv = if r.buf.is_empty() {
        Vec::new()
    } else {
        decode_kv_items(r)?
    };
    Ok(Body::Snapshot {
        last_index,
        last_epoch,
        in_sync,
        records,
        kv,
        done,
    })
}

/// The string keys of a snapshot chunk; each length is checked against
/// the bytes present (and the bounds) before anything is copied.
fn decode_kv_items(r: &mut Reader<'_>) -> Result<Vec<KvItem>, FrameError> {
    let count = r.u32()?;
    // An item takes at least 14 bytes; an empty list is never sent.
    if count == 0 || count as usize > r.buf.len() / 14 {
        return Err(FrameError::BadBody("snapshot"));
    }
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key_len = BigEndian::read_u16(r.take(2)?) as usize;
        let key = r.take(key_len)?.to_vec();
        let version = r.u64()?;
        let value_len = r.u32()?;
        if value_len as usize > MAX_VALUE_LEN {
            return Err(FrameError::TooMany("snapshot value bytes", value_len));
        }
        let value = r.take(value_len as usize)?.to_vec();
        items.push(KvItem {
            key,
            version,
            value,
        });
    }
    Ok(items)
}

fn decode_reject(r: &mut Reader<'_>) -> Result<Body, FrameError> {
    let code = RejectCode::from_u8(r.u8()?).ok_or(FrameError::BadBody("reject"))?;
    let len = r.u32()? as usize;
    if len > MAX_REASON_LEN {
        return Err(FrameError::TooMany("reason bytes", len as u32));
    }
    let text = r.take(len)?;
    // Refused rather than decoded lossily: a lossy decode replaces each bad
    // byte with a 3-byte U+FFFD, so the frame would grow and not round-trip.
    // Every sender of a Reject encodes a Rust `String`, so a bad reason is a
    // malformed frame.
    let reason = std::str::from_utf8(text)
        .map_err(|_| FrameError::BadBody("reject"))?
        .to_owned();
    Ok(Body::Reject { code, reason })
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

//! Protocol v2 on the client port: string keys and values, pipelined.
//!
//! A connection that opens with [`KV_TAG`] speaks length-prefixed frames
//! that each carry a request id, so a client may send many requests before
//! reading any answer; answers may come back in any order and are matched
//! by id. Keys and values are arbitrary bytes. This module is the codec
//! only (no I/O): the server's v2 session reads a frame's 4-byte length,
//! checks it with [`KvLimits::check_length`] before reading or allocating
//! anything, and hands the bytes after it to [`KvRequest::decode`]; clients
//! do the same with [`KvResponse::decode`]. `docs/protocol.md` §9 has the
//! byte layouts with worked examples.
//!
//! ```text
//! request                              response
//! 0   length  u32 BE (bytes after it)  0   length  u32 BE
//! 4   id      u64 BE                   4   id      u64 BE (the request's)
//! 12  op      u8                       12  op      u8     (the request's)
//! 13  body    per op                   13  status  u8
//!                                      14  body    per op and status
//! ```
//!
//! Inside bodies a key is `u16 BE length + bytes`, a value `u32 BE length +
//! bytes`, a version `u64 BE`: the log index of the entry that wrote the
//! value, with [`NO_VERSION`] meaning "absent".

use byteorder::{BigEndian, ByteOrder};

use super::HANDSHAKE_LEN;

/// The handshake tag of a v2 client connection. It matches no prefix the
/// original accepts (`CLIENT`, `PFA`) nor the native `FREP` tag.
pub const KV_TAG: [u8; HANDSHAKE_LEN] = *b"FKV\0\0\0\0\x02";

/// A value's version: the index of the log entry that wrote it.
pub type Version = u64;

/// The version of a key that is absent, where a version is expected.
pub const NO_VERSION: Version = u64::MAX;

/// Bytes of every frame after the length prefix before the body: the id
/// and the op (and, in a response, the status).
const REQUEST_HEADER: usize = 9;
const RESPONSE_HEADER: usize = 10;

/// The most keys one scan may ask for.
pub const MAX_SCAN_LIMIT: u32 = 1000;

/// The longest text (a primary's address, a reason) a response carries.
pub const MAX_TEXT_LEN: usize = 512;

/// The largest key any configuration allows (a key's length is a u16).
pub const KEY_CEILING: usize = u16::MAX as usize;

/// The largest value any configuration allows.
pub const VALUE_CEILING: usize = 64 << 20;

/// Size limits of one server, which every frame is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in bytes (default 1 KiB, at most [`KEY_CEILING`]).
    pub max_key: usize,
    /// Longest value in bytes (default 1 MiB, at most [`VALUE_CEILING`]).
    pub max_value: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key: 1024,
            max_value: 1 << 20,
        }
    }
}

impl KvLimits {
    /// The longest request a client may send: a compare-and-set of the
    /// largest key and value.
    pub fn max_request(&self) -> usize {
        REQUEST_HEADER + 2 + self.max_key + 8 + 4 + self.max_value
    }

    /// The longest response a server sends; a scan stops adding items
    /// before its answer would pass this.
    pub fn max_response(&self) -> usize {
        RESPONSE_HEADER + 4 + 1 + (2 + self.max_key + 8 + 4 + self.max_value).max(1 << 16)
    }

    /// Checks a request's length prefix before anything else is read.
    ///
    /// # Errors
    /// [`KvError::Short`] below the header, [`KvError::TooLong`] over
    /// [`Self::max_request`].
    pub fn check_length(&self, prefix: [u8; 4]) -> Result<usize, KvError> {
        let len = u32::from_be_bytes(prefix) as usize;
        if len < REQUEST_HEADER {
            return Err(KvError::Short);
        }
        if len > self.max_request() {
            return Err(KvError::TooLong(len));
        }
        Ok(len)
    }
}

/// What a client asks. Keys and values are owned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// The key's value and version.
    Get { key: Vec<u8> },
    /// Set the value, whether or not the key exists.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Set the value only if the key is absent.
    Create { key: Vec<u8>, value: Vec<u8> },
    /// Set the value only if the key exists.
    Update { key: Vec<u8>, value: Vec<u8> },
    /// Remove the key.
    Delete { key: Vec<u8> },
    /// Set the value only if the key's version is `expected`
    /// ([`NO_VERSION`]: only if it is absent).
    Cas {
        key: Vec<u8>,
        expected: Version,
        value: Vec<u8>,
    },
    /// Up to `limit` keys from `start` (inclusive), in byte order.
    Scan { start: Vec<u8>, limit: u32 },
}

/// One request: the client's id for it and the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvRequest {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// What to do.
    pub op: KvOp,
}

/// The outcome of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvStatus {
    /// Done (for a write: committed, replicated and, per `--fsync`, durable).
    Ok = 0,
    /// The key does not exist (get, update, delete).
    NotFound = 1,
    /// The key exists (create).
    Exists = 2,
    /// The key's version is not the expected one (cas).
    VersionMismatch = 3,
    /// The key or value is over the server's limit.
    TooLarge = 4,
    /// This server cannot serve the request; the body may name the primary.
    NotPrimary = 5,
    /// The server is overloaded; try again later.
    Busy = 6,
    /// The write would take the server past `--max-memory`.
    NoMemory = 7,
    /// The cluster cannot commit now (no majority, storage failure).
    Unavailable = 8,
    /// The request is malformed; the connection closes after this answer.
    BadRequest = 9,
}

impl KvStatus {
    fn from_u8(v: u8) -> Option<Self> {
        use KvStatus::*;
        Some(match v {
            0 => Ok,
            1 => NotFound,
            2 => Exists,
            3 => VersionMismatch,
            4 => TooLarge,
            5 => NotPrimary,
            6 => Busy,
            7 => NoMemory,
            8 => Unavailable,
            9 => BadRequest,
            _ => return None,
        })
    }
}

/// One key of a scan's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvItem {
    pub key: Vec<u8>,
    pub version: Version,
    pub value: Vec<u8>,
}

/// What a response carries besides its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvBody {
    /// Nothing (most errors).
    Empty,
    /// A get that found its key.
    Value { version: Version, value: Vec<u8> },
    /// A write's new version; for `Exists` and `VersionMismatch` the key's
    /// current version ([`NO_VERSION`]: absent).
    Version(Version),
    /// A scan: the items in key order, and whether more keys follow.
    Items { items: Vec<KvItem>, more: bool },
    /// `NotPrimary` and `BadRequest`: the primary's `host:port` or why (at
    /// most [`MAX_TEXT_LEN`] bytes; longer texts are cut when encoded).
    Text(Vec<u8>),
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvResponse {
    /// The request's id.
    pub id: u64,
    /// The request's op code (see [`KvOp::code`]).
    pub op: u8,
    /// The outcome.
    pub status: KvStatus,
    /// Its details.
    pub body: KvBody,
}

/// Why bytes are not a valid v2 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The frame is shorter than its header.
    Short,
    /// The declared length is over the bound.
    TooLong(usize),
    /// The op code names no operation.
    UnknownOp(u8),
    /// The status code names no status.
    UnknownStatus(u8),
    /// The body ends early or has bytes left over.
    BadBody(&'static str),
    /// A key over the limit (the request is answered `TooLarge`).
    KeyTooLarge(usize),
    /// A value over the limit (the request is answered `TooLarge`).
    ValueTooLarge(usize),
    /// A scan limit of 0 or over [`MAX_SCAN_LIMIT`].
    BadLimit(u32),
}

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvError::Short => write!(f, "v2 frame shorter than its header"),
            KvError::TooLong(n) => write!(f, "v2 frame of {n} bytes is over the bound"),
            KvError::UnknownOp(op) => write!(f, "unknown v2 op {op}"),
            KvError::UnknownStatus(s) => write!(f, "unknown v2 status {s}"),
            KvError::BadBody(op) => write!(f, "malformed v2 {op} body"),
            KvError::KeyTooLarge(n) => write!(f, "key of {n} bytes is over the limit"),
            KvError::ValueTooLarge(n) => write!(f, "value of {n} bytes is over the limit"),
            KvError::BadLimit(n) => {
                write!(f, "scan limit {n} outside 1..={MAX_SCAN_LIMIT}")
            }
        }
    }
}

impl std::error::Error for KvError {}

const OP_GET: u8 = 1;
const OP_PUT: u8 = 2;
const OP_CREATE: u8 = 3;
const OP_UPDATE: u8 = 4;
const OP_DELETE: u8 = 5;
const OP_CAS: u8 = 6;
const OP_SCAN: u8 = 7;

impl KvOp {
    /// The op's code on the wire.
    pub fn code(&self) -> u8 {
        match self {
            KvOp::Get { .. } => OP_GET,
            KvOp::Put { .. } => OP_PUT,
            KvOp::Create { .. } => OP_CREATE,
            KvOp::Update { .. } => OP_UPDATE,
            KvOp::Delete { .. } => OP_DELETE,
            KvOp::Cas { .. } => OP_CAS,
            KvOp::Scan { .. } => OP_SCAN,
        }
    }

    /// The op's name, for log lines.
    pub fn name(&self) -> &'static str {
        op_name(self.code())
    }

    /// True for the ops that change the store (and so go through the log).
    pub fn is_write(&self) -> bool {
        !matches!(self, KvOp::Get { .. } | KvOp::Scan { .. })
    }
}

fn op_name(code: u8) -> &'static str {
    match code {
        OP_GET => "get",
        OP_PUT => "put",
        OP_CREATE => "create",
        OP_UPDATE => "update",
        OP_DELETE => "delete",
        OP_CAS => "cas",
        OP_SCAN => "scan",
        _ => "unknown",
    }
}

impl KvRequest {
    /// Appends the whole frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.op.code());
        match &self.op {
            KvOp::Get { key } | KvOp::Delete { key } => put_key(out, key),
            KvOp::Put { key, value }
            | KvOp::Create { key, value }
            | KvOp::Update { key, value } => {
                put_key(out, key);
                put_value(out, value);
            }
            KvOp::Cas {
                key,
                expected,
                value,
            } => {
                put_key(out, key);
                out.extend_from_slice(&expected.to_be_bytes());
                put_value(out, value);
            }
            KvOp::Scan { start: from, limit } => {
                put_key(out, from);
                out.extend_from_slice(&limit.to_be_bytes());
            }
        }
        end_frame(out, start);
    }

    /// The request's id, read from a frame that may not decode, so that
    /// even a refused request can be answered by id.
    pub fn peek_id(buf: &[u8]) -> Option<(u64, u8)> {
        (buf.len() >= REQUEST_HEADER).then(|| (BigEndian::read_u64(&buf[..8]), buf[8]))
    }

    /// Decodes a request from the bytes after its length prefix.
    ///
    /// # Errors
    /// [`KvError`] for anything that is not exactly one request within
    /// `limits`; keys and values over the limits are reported as such
    /// (answered `TooLarge`), never allocated.
    pub fn decode(buf: &[u8], limits: &KvLimits) -> Result<Self, KvError> {
        let Some((id, code)) = Self::peek_id(buf) else {
            return Err(KvError::Short);
        };
        let mut r = Reader::new(&buf[REQUEST_HEADER..], op_name(code), limits);
        let op = match code {
            OP_GET => KvOp::Get { key: r.key()? },
            OP_DELETE => KvOp::Delete { key: r.key()? },
            OP_PUT => KvOp::Put {
                key: r.key()?,
                value: r.value()?,
            },
            OP_CREATE => KvOp::Create {
                key: r.key()?,
                value: r.value()?,
            },
            OP_UPDATE => KvOp::Update {
                key: r.key()?,
                value: r.value()?,
            },
            OP_CAS => KvOp::Cas {
                key: r.key()?,
                expected: r.u64()?,
                value: r.value()?,
            },
            OP_SCAN => {
                let start = r.key()?;
                let limit = r.u32()?;
                if limit == 0 || limit > MAX_SCAN_LIMIT {
                    return Err(KvError::BadLimit(limit));
                }
                KvOp::Scan { start, limit }
            }
            other => return Err(KvError::UnknownOp(other)),
        };
        r.finish()?;
        Ok(KvRequest { id, op })
    }
}

impl KvResponse {
    /// Appends the whole frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.op);
        out.push(self.status as u8);
        match &self.body {
            KvBody::Empty => {}
            KvBody::Value { version, value } => {
                out.extend_from_slice(&version.to_be_bytes());
                put_value(out, value);
            }
            KvBody::Version(v) => out.extend_from_slice(&v.to_be_bytes()),
            KvBody::Items { items, more } => {
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
                for item in items {
                    put_key(out, &item.key);
                    out.extend_from_slice(&item.version.to_be_bytes());
                    put_value(out, &item.value);
                }
                out.push(u8::from(*more));
            }
            KvBody::Text(text) => put_key(out, &text[..text.len().min(MAX_TEXT_LEN)]),
        }
        end_frame(out, start);
    }

    /// Bytes an item adds to a scan's answer, so that the server can stop
    /// before [`KvLimits::max_response`].
    pub fn item_len(item: &KvItem) -> usize {
        2 + item.key.len() + 8 + 4 + item.value.len()
    }

    /// Decodes a response from the bytes after its length prefix. Which
    /// body follows is decided by the op and status, as documented.
    ///
    /// # Errors
    /// [`KvError`] for anything that is not exactly one response within
    /// `limits`.
    pub fn decode(buf: &[u8], limits: &KvLimits) -> Result<Self, KvError> {
        if buf.len() < RESPONSE_HEADER {
            return Err(KvError::Short);
        }
        let id = BigEndian::read_u64(&buf[..8]);
        let op = buf[8];
        let status = KvStatus::from_u8(buf[9]).ok_or(KvError::UnknownStatus(buf[9]))?;
        if op_name(op) == "unknown" && status != KvStatus::BadRequest {
            return Err(KvError::UnknownOp(op));
        }
        let mut r = Reader::new(&buf[RESPONSE_HEADER..], op_name(op), limits);
        let body = match (status, op) {
            (KvStatus::Ok, OP_GET) => KvBody::Value {
                version: r.u64()?,
                value: r.value()?,
            },
            (KvStatus::Ok, OP_SCAN) => r.items()?,
            (KvStatus::Ok, _) | (KvStatus::Exists, _) | (KvStatus::VersionMismatch, _) => {
                KvBody::Version(r.u64()?)
            }
            (KvStatus::NotPrimary, _) | (KvStatus::BadRequest, _) => KvBody::Text(r.text()?),
            _ => KvBody::Empty,
        };
        r.finish()?;
        Ok(KvResponse {
            id,
            op,
            status,
            body,
        })
    }
}

fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    start
}

fn end_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    BigEndian::write_u32(&mut out[start..start + 4], len);
}

/// Callers keep keys within a u16 (the limits do); texts are cut to
/// [`MAX_TEXT_LEN`] before they get here.
fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
}

fn put_value(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// A bounded cursor over a body: every length is checked against what is
/// left and against the limits before a byte is copied.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
    limits: &'a KvLimits,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str, limits: &'a KvLimits) -> Self {
        Reader { buf, what, limits }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KvError> {
        if n > self.buf.len() {
            return Err(KvError::BadBody(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, KvError> {
        self.take(4).map(BigEndian::read_u32)
    }

    fn u64(&mut self) -> Result<u64, KvError> {
        self.take(8).map(BigEndian::read_u64)
    }

    fn key(&mut self) -> Result<Vec<u8>, KvError> {
        let len = self.take(2).map(BigEndian::read_u16)? as usize;
        if len > self.limits.max_key {
            return Err(KvError::KeyTooLarge(len));
        }
        self.take(len).map(<[u8]>::to_vec)
    }

    fn text(&mut self) -> Result<Vec<u8>, KvError> {
        let len = self.take(2).map(BigEndian::read_u16)? as usize;
        if len > MAX_TEXT_LEN {
            return Err(KvError::BadBody(self.what));
        }
        self.take(len).map(<[u8]>::to_vec)
    }

    fn value(&mut self) -> Result<Vec<u8>, KvError> {
        let len = self.u32()? as usize;
        if len > self.limits.max_value {
            return Err(KvError::ValueTooLarge(len));
        }
        self.take(len).map(<[u8]>::to_vec)
    }

    fn items(&mut self) -> Result<KvBody, KvError> {
        let count = self.u32()?;
        if count > MAX_SCAN_LIMIT {
            return Err(KvError::BadLimit(count));
        }
        // Each item takes at least 14 bytes, so a count the body cannot
        // hold is refused before anything is reserved for it.
        if count as usize * 14 > self.buf.len() {
            return Err(KvError::BadBody(self.what));
        }
        let mut items = Vec::with_capacity(count as usize);
        for _ in 0..count {
            items.push(KvItem {
                key: self.key()?,
                version: self.u64()?,
                value: self.value()?,
            });
        }
        let more = match self.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return Err(KvError::BadBody(self.what)),
        };
        Ok(KvBody::Items { items, more })
    }

    fn finish(&self) -> Result<(), KvError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(KvError::BadBody(self.what))
        }
    }
}

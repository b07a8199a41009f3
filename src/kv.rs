//! A blocking client of protocol v2 (`docs/protocol.md` §9): string keys
//! and values on one server. One call sends one request and waits for its
//! answer; [`KvClient::batch`] pipelines many on the one connection and
//! matches the answers by id.
//!
//! ```no_run
//! use factory::kv::{KvClient, KvReply};
//! let mut kv = KvClient::connect("127.0.0.1:5000", None).unwrap();
//! let version = kv.put(b"greeting", b"hello").unwrap();
//! assert_eq!(kv.get(b"greeting").unwrap(), Some((version, b"hello".to_vec())));
//! assert!(matches!(kv.create(b"greeting", b"again").unwrap(), KvReply::Exists(_)));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::wire::kv::{
    KvBody, KvError, KvItem, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, Version, KEY_CEILING,
    KV_TAG, VALUE_CEILING,
};

pub use crate::wire::kv::{KvItem as Item, KvOp as Op, NO_VERSION};

mod cluster;
mod typed;
pub use cluster::{KvCluster, KvClusterOptions};

/// Requests a batch keeps in flight before it reads an answer, so that
/// neither side's buffers fill while the other is not reading.
const WINDOW: usize = 256;

/// How a call failed.
#[derive(Debug)]
pub enum KvClientError {
    /// Connecting or talking to the server failed.
    Io { server: String, source: io::Error },
    /// The server closed the connection.
    Closed { server: String },
    /// The server sent something that is not an answer to the request.
    Protocol { server: String, detail: String },
    /// The server answered with a status that is no outcome of the
    /// operation (too large, not primary, busy, no memory, unavailable,
    /// bad request), with the text it sent (the primary's `host:port` for
    /// not primary).
    Status {
        server: String,
        status: KvStatus,
        text: String,
    },
    /// A [`KvCluster`] found no server that answered before its deadline;
    /// `last` says what the last attempt met.
    Unavailable { servers: String, last: String },
}

impl fmt::Display for KvClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvClientError::Io { server, source } => write!(f, "server {server}: {source}"),
            KvClientError::Closed { server } => write!(f, "server {server} closed the connection"),
            KvClientError::Protocol { server, detail } => {
                write!(f, "server {server} sent an unexpected answer: {detail}")
            }
            KvClientError::Status {
                server,
                status,
                text,
            } => write!(f, "server {server} answered {status:?} {text}"),
            KvClientError::Unavailable { servers, last } => {
                write!(f, "no server of {servers} answered in time (last: {last})")
            }
        }
    }
}

impl std::error::Error for KvClientError {}

/// The outcome of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvReply {
    /// Done: the key's new version (for a delete, the delete's index).
    Ok(Version),
    /// update or delete of an absent key.
    NotFound,
    /// create of a present key, which has this version.
    Exists(Version),
    /// cas whose expected version is not the key's (this one, or
    /// [`NO_VERSION`] when absent).
    Mismatch(Version),
}

/// A connection speaking v2 to one server.
pub struct KvClient {
    server: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
    limits: KvLimits,
    out: Vec<u8>,
}

impl KvClient {
    /// Connects to `addr` and sends the v2 tag; `timeout` bounds the
    /// connect and every wait for an answer (`None`: wait as long as it
    /// takes).
    ///
    /// # Errors
    /// [`KvClientError::Io`] when no connection can be made.
    pub fn connect(
        addr: impl ToSocketAddrs + fmt::Display,
        timeout: Option<Duration>,
    ) -> Result<KvClient, KvClientError> {
        let server = addr.to_string();
        let io = |source| KvClientError::Io {
            server: server.clone(),
            source,
        };
        let target = addr
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| io(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let stream = match timeout {
            Some(t) => TcpStream::connect_timeout(&target, t),
            None => TcpStream::connect(target),
        }
        .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(timeout).map_err(io)?;
        stream.set_write_timeout(timeout).map_err(io)?;
        (&stream).write_all(&KV_TAG).map_err(io)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone().map_err(io)?);
        Ok(KvClient {
            server,
            stream,
            reader,
            next_id: 1,
            // The largest answer any server sends.
            limits: KvLimits {
                max_key: crate::wire::kv::KEY_CEILING,
                max_value: crate::wire::kv::VALUE_CEILING,
            },
            out: Vec::new(),
        })
    }

    /// The address this client was connected to, as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends `op` and returns its answer, whatever its status.
    ///
    /// # Errors
    /// [`KvClientError`] when the connection fails or the answer does not
    /// match.
    pub fn call(&mut self, op: KvOp) -> Result<KvResponse, KvClientError> {
        let mut answers = self.batch(vec![op])?;
        Ok(answers.remove(0))
    }

    /// Sends every op, pipelined (at most a window of them unanswered at a
    /// time), and returns their answers in the order of `ops`, matched by
    /// request id.
    ///
    /// # Errors
    /// [`KvClientError`] when the connection fails or an answer matches no
    /// request.
    pub fn batch(&mut self, ops: Vec<KvOp>) -> Result<Vec<KvResponse>, KvClientError> {
        // A key or value the frame cannot carry would be encoded with a cut
        // length: refused here, before anything is sent.
        if let Some(len) = ops.iter().find_map(over_ceiling) {
            return Err(KvClientError::Status {
                server: self.server.clone(),
                status: KvStatus::TooLarge,
                text: format!("a key or value of {len} bytes is over what protocol v2 carries"),
            });
        }
        let count = ops.len();
        let mut slots: Vec<Option<KvResponse>> = (0..count).map(|_| None).collect();
        let mut waiting: HashMap<u64, usize> = HashMap::with_capacity(count.min(WINDOW));
        let mut ops = ops.into_iter().enumerate();
        let mut answered = 0;
        while answered < count {
            self.out.clear();
            while waiting.len() < WINDOW {
                let Some((slot, op)) = ops.next() else { break };
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                waiting.insert(id, slot);
                KvRequest { id, op }.encode(&mut self.out);
            }
            if !self.out.is_empty() {
                let out = std::mem::take(&mut self.out);
                let sent = (&self.stream).write_all(&out);
                self.out = out;
                sent.map_err(|e| self.io(e))?;
            }
            let answer = self.receive()?;
            let slot = waiting
                .remove(&answer.id)
                .ok_or_else(|| self.protocol(format!("answer to unknown request {}", answer.id)))?;
            slots[slot] = Some(answer);
            answered += 1;
        }
        Ok(slots.into_iter().flatten().collect())
    }

    fn receive(&mut self) -> Result<KvResponse, KvClientError> {
        let mut prefix = [0u8; 4];
        self.read_exact(&mut prefix)?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.limits.max_response() {
            return Err(self.protocol(format!("answer of {len} bytes")));
        }
        let mut buf = vec![0; len];
        self.read_exact(&mut buf)?;
        KvResponse::decode(&buf, &self.limits).map_err(|e: KvError| self.protocol(e.to_string()))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), KvClientError> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                KvClientError::Closed {
                    server: self.server.clone(),
                }
            } else {
                self.io(e)
            }
        })
    }

    fn io(&self, source: io::Error) -> KvClientError {
        KvClientError::Io {
            server: self.server.clone(),
            source,
        }
    }

    fn protocol(&self, detail: String) -> KvClientError {
        KvClientError::Protocol {
            server: self.server.clone(),
            detail,
        }
    }

    /// The key's version and value, `None` if absent.
    ///
    /// # Errors
    /// As [`Self::call`], and [`KvClientError::Status`] for a refusal.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, KvClientError> {
        typed::get(self, key)
    }

    /// Sets the key's value; returns its version.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<Version, KvClientError> {
        typed::put(self, key, value)
    }

    /// Sets the value only if the key is absent.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn create(&mut self, key: &[u8], value: &[u8]) -> Result<KvReply, KvClientError> {
        typed::create(self, key, value)
    }

    /// Sets the value only if the key is present.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn update(&mut self, key: &[u8], value: &[u8]) -> Result<KvReply, KvClientError> {
        typed::update(self, key, value)
    }

    /// Removes the key.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn delete(&mut self, key: &[u8]) -> Result<KvReply, KvClientError> {
        typed::delete(self, key)
    }

    /// Sets the value only if the key's version is `expected`
    /// ([`NO_VERSION`]: only if absent).
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn cas(
        &mut self,
        key: &[u8],
        expected: Version,
        value: &[u8],
    ) -> Result<KvReply, KvClientError> {
        typed::cas(self, key, expected, value)
    }

    /// Up to `limit` keys from `start` in byte order, and whether more
    /// follow.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn scan(&mut self, start: &[u8], limit: u32) -> Result<(Vec<KvItem>, bool), KvClientError> {
        typed::scan(self, start, limit)
    }
}

impl typed::Caller for KvClient {
    fn call_op(&mut self, op: KvOp) -> Result<KvResponse, KvClientError> {
        self.call(op)
    }

    fn name(&self) -> String {
        self.server.clone()
    }
}

/// The length of a key over [`KEY_CEILING`] or a value over
/// [`VALUE_CEILING`] in `op`, if it has one.
fn over_ceiling(op: &KvOp) -> Option<usize> {
    let (key, value): (&[u8], &[u8]) = match op {
        KvOp::Get { key } | KvOp::Delete { key } => (key, &[]),
        KvOp::Scan { start, .. } => (start, &[]),
        KvOp::Put { key, value }
        | KvOp::Create { key, value }
        | KvOp::Update { key, value }
        | KvOp::Cas { key, value, .. } => (key, value),
    };
    if key.len() > KEY_CEILING {
        Some(key.len())
    } else if value.len() > VALUE_CEILING {
        Some(value.len())
    } else {
        None
    }
}

/// The outcome a write's answer carries; `None` for a refusal.
pub fn reply_of(answer: &KvResponse) -> Option<KvReply> {
    match (answer.status, &answer.body) {
        (KvStatus::Ok, KvBody::Version(v)) => Some(KvReply::Ok(*v)),
        (KvStatus::NotFound, _) => Some(KvReply::NotFound),
        (KvStatus::Exists, KvBody::Version(v)) => Some(KvReply::Exists(*v)),
        (KvStatus::VersionMismatch, KvBody::Version(v)) => Some(KvReply::Mismatch(*v)),
        _ => None,
    }
}

//! One load connection's wire: a batch of gets and puts written at once,
//! then every answer read and judged. Protocol v2 (docs/protocol.md §9) or
//! RESP (`SET`/`GET`, `WAIT`) for the benchmark's Redis rows. Used only by
//! the load loop in `kv_load`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::{key_of, value_matches, KvLoadConfig, KvProtocol, Request, CONNECT_BUDGET};
use crate::client::connect::{self, split_host_port};
use crate::kv_frames::read_response;
use crate::wire::kv::{
    KvBody, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, KEY_CEILING, KV_TAG, VALUE_CEILING,
};

/// How one request was answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Done (a write acknowledged, a read with the expected value).
    Ok,
    /// A read of an absent key.
    Miss,
    /// Send it to this server (`host:port`; empty: unknown).
    NotPrimary(String),
    /// Refused, or a wrong value; why.
    Failed(String),
}

/// A connection and its buffers.
pub(crate) struct Link {
    server: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
    body: Vec<u8>,
    value: Vec<u8>,
    size: usize,
    protocol: KvProtocol,
    next_id: u64,
}

/// Longest RESP line the load accepts (`+OK`, `:2`, `$65536`, errors).
const RESP_LINE: u64 = 4096;

impl Link {
    /// Connects to `server` and sends v2's tag (RESP needs none).
    pub(crate) fn open(config: &KvLoadConfig, server: &str) -> Result<Link, String> {
        let fail = |e: &dyn std::fmt::Display| format!("server {server}: {e}");
        let (host, port) = split_host_port(server).map_err(|e| fail(&e))?;
        let addrs = connect::resolve(&host, port).map_err(|e| fail(&e))?;
        let budget = config
            .timeout
            .map_or(CONNECT_BUDGET, |t| t.min(CONNECT_BUDGET));
        let stream = connect::connect(&addrs, config.timeout, budget).map_err(|e| fail(&e))?;
        let setup = || -> io::Result<BufReader<TcpStream>> {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(config.timeout)?;
            stream.set_write_timeout(config.timeout)?;
            if config.protocol == KvProtocol::V2 {
                (&stream).write_all(&KV_TAG)?;
            }
            Ok(BufReader::with_capacity(64 * 1024, stream.try_clone()?))
        };
        let reader = setup().map_err(|e| fail(&e))?;
        Ok(Link {
            server: server.to_string(),
            stream,
            reader,
            out: Vec::new(),
            body: Vec::new(),
            value: vec![b'.'; config.value_size],
            size: config.value_size,
            protocol: config.protocol,
            next_id: 1,
        })
    }

    /// Sends `batch` in one write and reads every answer into `answers`
    /// (in the order of `batch`), each with the time it arrived.
    ///
    /// # Errors
    /// A message naming the server when the connection fails or an answer
    /// does not match; the connection is then of no further use.
    pub(crate) fn exchange(
        &mut self,
        batch: &[Request],
        answers: &mut Vec<(Answer, Instant)>,
    ) -> Result<(), String> {
        answers.clear();
        match self.protocol {
            KvProtocol::V2 => self.exchange_v2(batch, answers),
            KvProtocol::Resp { wait } => self.exchange_resp(batch, wait, answers),
            KvProtocol::Etcd => self.exchange_etcd(batch, answers),
        }
        .map_err(|e| format!("server {}: {e}", self.server))
    }

    fn stamped_value(&mut self, index: u64) -> &[u8] {
        super::stamp(&mut self.value, index);
        &self.value
    }

    fn exchange_v2(
        &mut self,
        batch: &[Request],
        answers: &mut Vec<(Answer, Instant)>,
    ) -> io::Result<()> {
        let base = self.next_id;
        self.next_id += batch.len() as u64;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        for (k, r) in batch.iter().enumerate() {
            let key = key_of(r.index);
            let op = if r.read {
                KvOp::Get { key }
            } else {
                let value = self.stamped_value(r.index).to_vec();
                KvOp::Put { key, value }
            };
            KvRequest {
                id: base + k as u64,
                op,
            }
            .encode(&mut out);
        }
        let sent = (&self.stream).write_all(&out);
        self.out = out;
        sent?;
        let mut slots: Vec<Option<(Answer, Instant)>> = batch.iter().map(|_| None).collect();
        for _ in batch {
            let answer = self.receive_v2()?;
            let at = Instant::now();
            let slot = answer
                .id
                .checked_sub(base)
                .map(|k| k as usize)
                .filter(|&k| k < batch.len() && slots[k].is_none())
                .ok_or_else(|| bad(format!("answer to unknown request {}", answer.id)))?;
            slots[slot] = Some((self.judge_v2(&batch[slot], answer), at));
        }
        answers.extend(slots.into_iter().flatten());
        Ok(())
    }

    fn receive_v2(&mut self) -> io::Result<KvResponse> {
        let limits = KvLimits {
            max_key: KEY_CEILING,
            max_value: VALUE_CEILING,
        };
        read_response(&mut self.reader, &limits, &mut self.body)
    }

    fn judge_v2(&self, request: &Request, answer: KvResponse) -> Answer {
        match (answer.status, answer.body) {
            (KvStatus::Ok, KvBody::Value { value, .. }) if request.read => {
                self.judge_value(request, &value)
            }
            (KvStatus::NotFound, _) if request.read => Answer::Miss,
            (KvStatus::Ok, KvBody::Version(_)) if !request.read => Answer::Ok,
            (KvStatus::NotPrimary, KvBody::Text(to)) => {
                Answer::NotPrimary(String::from_utf8_lossy(&to).into_owned())
            }
            (status, body) => Answer::Failed(format!(
                "{} of key {} answered {status:?} {body:?}",
                if request.read { "get" } else { "put" },
                request.index
            )),
        }
    }

    fn judge_value(&self, request: &Request, value: &[u8]) -> Answer {
        if value_matches(value, request.index, self.size) {
            Answer::Ok
        } else {
            Answer::Failed(format!(
                "get of key {} returned a {}-byte value that was never written",
                request.index,
                value.len()
            ))
        }
    }

    fn exchange_resp(
        &mut self,
        batch: &[Request],
        wait: u32,
        answers: &mut Vec<(Answer, Instant)>,
    ) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        for r in batch {
            let key = key_of(r.index);
            if r.read {
                resp_command(&mut out, &[b"GET", &key]);
            } else {
                let value = self.stamped_value(r.index);
                resp_command(&mut out, &[b"SET", &key, value]);
            }
        }
        let writes = batch.iter().filter(|r| !r.read).count();
        let waiting = wait > 0 && writes > 0;
        if waiting {
            let n = wait.to_string();
            resp_command(&mut out, &[b"WAIT", n.as_bytes(), b"0"]);
        }
        let sent = (&self.stream).write_all(&out);
        self.out = out;
        sent?;
        for r in batch {
            let reply = self.receive_resp()?;
            let answer = match (r.read, reply) {
                (false, Resp::Simple(s)) if s == b"OK" => Answer::Ok,
                (true, Resp::Bulk(Some(v))) => self.judge_value(r, &v),
                (true, Resp::Bulk(None)) => Answer::Miss,
                (_, Resp::Error(e)) => Answer::Failed(format!("key {} answered -{e}", r.index)),
                (_, other) => Answer::Failed(format!("key {} answered {other:?}", r.index)),
            };
            answers.push((answer, Instant::now()));
        }
        if waiting {
            let reply = self.receive_resp()?;
            let at = Instant::now();
            let replicated = matches!(reply, Resp::Integer(n) if n >= i64::from(wait));
            for (k, r) in batch.iter().enumerate() {
                if r.read {
                    continue;
                }
                answers[k].1 = at;
                if !replicated && answers[k].0 == Answer::Ok {
                    answers[k].0 = Answer::Failed(format!("WAIT {wait} 0 answered {reply:?}"));
                }
            }
        }
        Ok(())
    }

    fn exchange_etcd(
        &mut self,
        batch: &[Request],
        answers: &mut Vec<(Answer, Instant)>,
    ) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        for r in batch {
            let key = key_of(r.index);
            let value = (!r.read).then(|| self.stamped_value(r.index).to_vec());
            super::etcd::request(&mut out, &self.server, &key, value.as_deref());
        }
        let sent = (&self.stream).write_all(&out);
        self.out = out;
        sent?;
        for r in batch {
            let body = super::etcd::response(&mut self.reader)?;
            let answer = match (r.read, body) {
                (false, Ok(_)) => Answer::Ok,
                (true, Ok(body)) => match super::etcd::range_value(&body) {
                    Some(v) => self.judge_value(r, &v),
                    None => Answer::Miss,
                },
                (_, Err(why)) => Answer::Failed(format!("key {}: {why}", r.index)),
            };
            answers.push((answer, Instant::now()));
        }
        Ok(())
    }

    fn receive_resp(&mut self) -> io::Result<Resp> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(RESP_LINE)
            .read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        let Some(text) = line.strip_suffix(b"\r\n") else {
            return Err(bad(format!(
                "RESP line {:?}",
                String::from_utf8_lossy(&line)
            )));
        };
        let rest = text.get(1..).unwrap_or_default();
        let number = || -> io::Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("RESP number {:?}", String::from_utf8_lossy(rest))))
        };
        match text.first() {
            Some(b'+') => Ok(Resp::Simple(rest.to_vec())),
            Some(b'-') => Ok(Resp::Error(String::from_utf8_lossy(rest).into_owned())),
            Some(b':') => Ok(Resp::Integer(number()?)),
            Some(b'$') => {
                let len = number()?;
                if len < 0 {
                    return Ok(Resp::Bulk(None));
                }
                if len as u64 > VALUE_CEILING as u64 {
                    return Err(bad(format!("RESP bulk of {len} bytes")));
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Ok(Resp::Bulk(Some(data)))
            }
            _ => Err(bad(format!(
                "RESP reply {:?}",
                String::from_utf8_lossy(text)
            ))),
        }
    }

    /// Ends the connection (v2 and RESP need no goodbye).
    pub(crate) fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A RESP2 reply.
#[derive(Debug)]
enum Resp {
    Simple(Vec<u8>),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

fn resp_command(out: &mut Vec<u8>, words: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

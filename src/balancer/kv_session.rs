//! One protocol v2 session from the balancer to a server: it sends a batch
//! of client requests pipelined, under ids of its own (a session's ids
//! count up, so answers from different clients' batches can never be
//! confused), and maps each answer back to its client's id. Owned by the
//! pool in `kv_upstream`, which lends a session to one batch at a time.
//!
//! Every answer is read within its length bound before anything is
//! allocated for it, exactly as the Rust client does; an answer that
//! matches no request, or a failure, ends the session, and the requests
//! not yet answered are reported [`Outcome::Unknown`].

use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::kv_retry::Outcome;
use crate::conn::data_waiting;
use crate::kv_frames::read_response;
use crate::wire::kv::{KvLimits, KvRequest, KvResponse, KvStatus, KEY_CEILING, KV_TAG};

/// The largest answer any server sends: keys and values up to what the
/// protocol carries.
const LIMITS: KvLimits = KvLimits {
    max_key: KEY_CEILING,
    max_value: crate::wire::kv::VALUE_CEILING,
};

/// An open v2 session to one server.
pub(super) struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
    out: Vec<u8>,
    /// Scratch for one answer.
    body: Vec<u8>,
}

impl Session {
    /// Connects to `address` (`host:port`) within `timeout` and sends the
    /// v2 tag.
    pub(super) fn open(address: &str, timeout: Duration) -> io::Result<Session> {
        let target: SocketAddr = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_nodelay(true)?;
        (&stream).write_all(&KV_TAG)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Session {
            stream,
            reader,
            next_id: 1,
            out: Vec::new(),
            body: Vec::new(),
        })
    }

    /// False when the server closed or reset the session while it was idle
    /// (a restarted server): nothing sent on it could be answered, and
    /// sending would turn a request that never arrived into one whose
    /// outcome is unknown. Looks without waiting.
    pub(super) fn is_alive(&self) -> bool {
        // An idle session has nothing to read: bytes, a close or an error
        // waiting all mean the server is done with it.
        self.reader.buffer().is_empty() && !data_waiting(&self.stream)
    }

    /// Sends `batch[i]` for each `i` of `todo` and reads their answers,
    /// each within `timeout`. Returns one outcome per entry of `todo`, and
    /// whether the session may be used again.
    pub(super) fn exchange(
        &mut self,
        batch: &mut [KvRequest],
        todo: &[usize],
        timeout: Duration,
    ) -> (Vec<Outcome>, bool) {
        let mut outcomes: Vec<Outcome> = todo.iter().map(|_| Outcome::Unknown).collect();
        if let Err(e) = self.set_timeout(timeout) {
            log::debug!("balancer: v2 session: {e}");
            return (outcomes, false);
        }
        let first = self.next_id;
        self.out.clear();
        for &i in todo {
            let request = &mut batch[i];
            let client_id = std::mem::replace(&mut request.id, self.next_id);
            request.encode(&mut self.out);
            request.id = client_id;
            self.next_id = self.next_id.wrapping_add(1);
        }
        if let Err(e) = (&self.stream).write_all(&self.out) {
            log::debug!("balancer: v2 session: sending failed: {e}");
            return (outcomes, false);
        }
        for _ in 0..todo.len() {
            let answer = match self.receive() {
                Ok(answer) => answer,
                Err(e) => {
                    log::debug!("balancer: v2 session: {e}");
                    return (outcomes, false);
                }
            };
            let at = answer.id.wrapping_sub(first) as usize;
            let fits = at < todo.len()
                && matches!(outcomes[at], Outcome::Unknown)
                && answer.op == batch[todo[at]].op.code();
            if !fits {
                log::warn!(
                    "balancer: a server answered v2 request {} (op {}), which it was not sent; closing that session",
                    answer.id,
                    answer.op
                );
                return (outcomes, false);
            }
            let mut answer = answer;
            answer.id = batch[todo[at]].id;
            outcomes[at] = Outcome::Answered(answer);
        }
        // The server closes a session after a bad request.
        let reusable = !outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Answered(r) if r.status == KvStatus::BadRequest));
        (outcomes, reusable)
    }

    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))
    }

    fn receive(&mut self) -> io::Result<KvResponse> {
        read_response(&mut self.reader, &LIMITS, &mut self.body)
    }
}

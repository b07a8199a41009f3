//! The balancer's protocol v2 side towards the servers: a pool of open v2
//! sessions per server and the retry loop that carries a batch of one
//! client's requests (all reads, or all writes) to an answer for each,
//! within `--deadline`. Called by `kv` (the client sessions); routing is
//! the v1 side's ([`Upstream::target`]: writes to the primary, reads round
//! robin over [`route::readers`](super::route::readers)), and so are the
//! counters (answers per server, retries).
//!
//! A batch goes pipelined over one session; each request's outcome is
//! judged by [`kv_retry::decide`]: what must be resent goes again, as one
//! smaller batch, after the server it failed on is forgotten (its idle
//! sessions dropped, the primary looked for again) and a backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::kv_retry::{self, Class, Decision, Outcome};
use super::kv_session::Session;
use super::route::Kind;
use super::upstream::Upstream;
use crate::client::connect::Backoff;
use crate::wire::kv::{KvBody, KvOp, KvRequest, KvResponse, KvStatus};

/// The idle v2 sessions of every server.
pub(super) struct KvPool {
    idle: Vec<Mutex<Vec<Session>>>,
    per_server: usize,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer `unavailable` to `request`.
fn unavailable(request: &KvRequest) -> KvResponse {
    KvResponse {
        id: request.id,
        op: request.op.code(),
        status: KvStatus::Unavailable,
        body: KvBody::Empty,
    }
}

impl KvPool {
    /// A pool for `servers` servers, keeping at most `per_server` idle
    /// sessions each.
    pub(super) fn new(servers: usize, per_server: usize) -> KvPool {
        KvPool {
            idle: (0..servers).map(|_| Mutex::new(Vec::new())).collect(),
            per_server,
            stopping: AtomicBool::new(false),
        }
    }

    /// Drops every idle session; none is kept from now on.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for pool in &self.idle {
            lock(pool).clear();
        }
    }

    /// Answers every request of `batch` (all of one kind: reads, or
    /// writes), in order, with the clients' ids. `wanted()` false (the
    /// client left) stops resending: the first attempt is always made, as
    /// a server places a write of a client that left.
    pub(super) fn serve(
        &self,
        up: &Upstream,
        batch: &mut [KvRequest],
        wanted: &dyn Fn() -> bool,
    ) -> Vec<KvResponse> {
        let kind = match batch.first() {
            Some(r) if Class::of(&r.op).is_write() => Kind::Write,
            _ => Kind::Read,
        };
        let deadline = Instant::now() + up.options().deadline;
        let mut answers: Vec<Option<KvResponse>> = batch.iter().map(|_| None).collect();
        let mut backoff = Backoff::default();
        for attempt in 0u64.. {
            let todo: Vec<usize> = (0..batch.len()).filter(|&i| answers[i].is_none()).collect();
            if todo.is_empty() {
                break;
            }
            let resend_allowed = attempt == 0 || (wanted() && !up.is_stopping());
            if !resend_allowed {
                break;
            }
            if let Some(target) = up.target(kind, deadline) {
                let outcomes = self.attempt(up, target.index, batch, &todo, deadline);
                let resent = settle(up, target.index, batch, &todo, outcomes, &mut answers);
                if resent > 0 {
                    up.counters().retries.fetch_add(resent, Ordering::Relaxed);
                    up.forget(target.index);
                }
                if answers.iter().all(Option::is_some) {
                    break;
                }
            }
            if !backoff.sleep_until(deadline) {
                break;
            }
        }
        batch
            .iter()
            .zip(answers)
            .map(|(request, answer)| answer.unwrap_or_else(|| unavailable(request)))
            .collect()
    }

    /// One attempt of the requests `todo` of `batch` on server `index`.
    fn attempt(
        &self,
        up: &Upstream,
        index: usize,
        batch: &mut [KvRequest],
        todo: &[usize],
        deadline: Instant,
    ) -> Vec<Outcome> {
        let timeout = up.attempt_timeout(deadline);
        let Some(mut session) = self.session(up, index, timeout) else {
            return todo.iter().map(|_| Outcome::NotSent).collect();
        };
        let (outcomes, reusable) = session.exchange(batch, todo, timeout);
        if reusable {
            let mut idle = lock(&self.idle[index]);
            if idle.len() < self.per_server && !self.stopping.load(Ordering::SeqCst) {
                idle.push(session);
            }
        } else {
            // Its siblings met the same server: as suspect as it.
            lock(&self.idle[index]).clear();
        }
        outcomes
    }

    /// A live pooled session to server `index`, or a new one.
    fn session(
        &self,
        up: &Upstream,
        index: usize,
        timeout: std::time::Duration,
    ) -> Option<Session> {
        loop {
            let pooled = lock(&self.idle[index]).pop();
            match pooled {
                Some(s) if s.is_alive() => return Some(s),
                Some(_) => continue,
                None => break,
            }
        }
        let address = &up.servers()[index];
        up.counters().connects.fetch_add(1, Ordering::Relaxed);
        match Session::open(address, timeout) {
            Ok(s) => Some(s),
            Err(e) => {
                log::debug!("balancer: v2 session to {address}: {e}");
                None
            }
        }
    }
}

/// Applies the decisions for one attempt's `outcomes` to `answers`;
/// returns how many requests are to be sent again.
fn settle(
    up: &Upstream,
    index: usize,
    batch: &[KvRequest],
    todo: &[usize],
    outcomes: Vec<Outcome>,
    answers: &mut [Option<KvResponse>],
) -> u64 {
    let served = &up.counters().served[index];
    for (&i, outcome) in todo.iter().zip(outcomes) {
        match kv_retry::decide(Class::of(&batch[i].op), outcome) {
            Decision::Relay(answer) => {
                served.fetch_add(1, Ordering::Relaxed);
                answers[i] = Some(answer);
            }
            Decision::GiveUp => answers[i] = Some(unavailable(&batch[i])),
            Decision::Resend => {}
        }
    }
    // From the last: a write given up on here holds back the earlier
    // writes of its key in turn.
    let ops: Vec<&KvOp> = batch.iter().map(|r| &r.op).collect();
    let mut settled: Vec<bool> = answers.iter().map(Option::is_some).collect();
    for i in (0..batch.len()).rev() {
        if !settled[i] && !kv_retry::may_resend(&ops, &settled, i) {
            answers[i] = Some(unavailable(&batch[i]));
            settled[i] = true;
        }
    }
    settled.iter().filter(|&&s| !s).count() as u64
}

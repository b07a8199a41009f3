//! The primary's admin thread and the queue that feeds it.
//!
//! Client sessions submit writes to the [`AdminQueue`] (a Mutex + Condvar
//! queue, as in the original) and wait on their own [`Completion`]. The
//! admin takes every waiting write at once and, as primary, appends them,
//! has them made durable locally while the replicators stream them, waits
//! until every member of the in-sync set holds them, commits, applies and
//! releases all their sessions.
//!
//! A server that is not primary and knows no live primary takes over first
//! ([`super::term`]); one that knows a live primary answers the session
//! with [`WriteError::NotPrimary`] so that it forwards the write.
//!
//! Flat combining: every hand-off between threads costs a wake-up on the
//! other CPU, so a session that submits a write while the admin's term is
//! free and established commits the queued batch itself, its own write
//! included, and the admin thread only steps in when it cannot (a takeover
//! is needed, or another thread holds the term). The roles stay the
//! original's; only which thread runs the admin's step changes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::term::Term;
use super::WriteError;
use crate::conn::yield_until;
use crate::server::election::elected;
use crate::server::{ServerError, Shared};
use crate::wire::Entry;

/// The most writes the admin commits as one batch.
const MAX_BATCH: usize = 1024;

/// How long a session looks for its result before it sleeps, when the
/// commit waits for backups, which answer within tens of microseconds here.
const REPLICATED_SPIN: Duration = Duration::from_micros(100);

/// How often an idle primary looks after its in-sync set and its log.
const MAINTENANCE: Duration = Duration::from_millis(50);

/// What [`AdminQueue::take_batch`] found.
enum Take {
    Batch,
    Idle,
    Closed,
}

/// The one-shot answer a session waits for (the original's promise).
/// Each session owns one and reuses it for every write.
pub(crate) struct Completion {
    state: Mutex<CompletionState>,
    ready: Condvar,
}

#[derive(Default)]
struct CompletionState {
    /// The write's log index once committed.
    result: Option<Result<i32, WriteError>>,
    /// The session sleeps on `ready`: only then does `finish` wake it
    /// (a wake-up is a system call even when nobody sleeps).
    asleep: bool,
}

impl Completion {
    pub(crate) fn new() -> Self {
        Completion {
            state: Mutex::new(CompletionState::default()),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CompletionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, result: Result<i32, WriteError>) {
        let mut state = self.lock();
        state.result = Some(result);
        let asleep = state.asleep;
        drop(state);
        if asleep {
            self.ready.notify_one();
        }
    }

    /// True once the result is in (taking it still needs a wait).
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().result.is_some()
    }

    /// The write's log index, if it is committed already.
    pub(crate) fn committed(&self) -> Option<i32> {
        match self.lock().result {
            Some(Ok(index)) => Some(index),
            _ => None,
        }
    }

    /// Waits for the result, first for up to `spin` without sleeping (see
    /// [`spin_before_sleep`]).
    fn wait(&self, spin: Duration) -> Result<i32, WriteError> {
        if !spin.is_zero() {
            yield_until(spin, || self.is_finished());
        }
        let mut state = self.lock();
        loop {
            if let Some(result) = state.result.take() {
                state.asleep = false;
                return result;
            }
            state.asleep = true;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

struct WriteRequest {
    entry: Entry,
    done: Arc<Completion>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<WriteRequest>,
    closed: bool,
    /// The election has a decision for the admin thread.
    nudged: bool,
}

/// Writes waiting for the admin thread.
#[derive(Default)]
pub(crate) struct AdminQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl AdminQueue {
    pub(crate) fn new() -> Self {
        AdminQueue::default()
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a write; false when the server is stopping.
    fn push(&self, entry: Entry, done: &Arc<Completion>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.items.push_back(WriteRequest {
            entry,
            done: Arc::clone(done),
        });
        true
    }

    /// Wakes the admin thread.
    fn wake_admin(&self) {
        self.ready.notify_one();
    }

    /// Wakes the admin thread to carry out the election's decisions.
    pub(crate) fn nudge(&self) {
        self.lock().nudged = true;
        self.ready.notify_one();
    }

    /// Moves up to [`MAX_BATCH`] waiting writes into `batch` without
    /// waiting; false if there were none.
    fn take_now(&self, batch: &mut Vec<WriteRequest>) -> bool {
        let mut state = self.lock();
        let n = state.items.len().min(MAX_BATCH);
        batch.extend(state.items.drain(..n));
        n > 0
    }

    fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Moves up to [`MAX_BATCH`] waiting writes into `batch`, waiting up to
    /// `idle` (forever if `None`) for one to arrive.
    fn take_batch(&self, batch: &mut Vec<WriteRequest>, idle: Option<Duration>) -> Take {
        let mut state = self.lock();
        while state.items.is_empty() {
            if state.closed {
                return Take::Closed;
            }
            if std::mem::take(&mut state.nudged) {
                return Take::Idle;
            }
            let Some(idle) = idle else {
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let (next, timeout) = self
                .ready
                .wait_timeout(state, idle)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && state.items.is_empty() && !state.closed {
                return Take::Idle;
            }
        }
        let n = state.items.len().min(MAX_BATCH);
        batch.extend(state.items.drain(..n));
        Take::Batch
    }

    /// Refuses new writes and wakes the admin so it can finish.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Hands a write to the admin's step and blocks until it is committed or
/// failed; runs the step on this thread when the admin is free.
pub(crate) fn submit_write(
    shared: &Shared,
    entry: Entry,
    done: &Arc<Completion>,
) -> Result<(), WriteError> {
    submit_nowait(shared, entry, done)?;
    done.wait(spin_before_sleep(shared)).map(drop)
}

/// Hands a write to the admin's step without waiting for it (a pipelining
/// v2 session waits later, with [`Completion::wait_index`]); runs the step
/// on this thread when the admin is free, as [`submit_write`] does.
///
/// # Errors
/// [`WriteError::Stopping`] when the server is stopping.
pub(crate) fn submit_nowait(
    shared: &Shared,
    entry: Entry,
    done: &Arc<Completion>,
) -> Result<(), WriteError> {
    queue_nowait(shared, entry, done)?;
    commit_queued(shared, done);
    Ok(())
}

/// Queues a write like [`submit_nowait`] without committing it yet: a
/// session that has more writes at hand queues them all, then calls
/// [`commit_queued`] once, before it waits for anything, so that they
/// commit as one batch under one taking of the term.
pub(crate) fn queue_nowait(
    shared: &Shared,
    entry: Entry,
    done: &Arc<Completion>,
) -> Result<(), WriteError> {
    if shared.admin_queue.push(entry, done) {
        Ok(())
    } else {
        Err(WriteError::Stopping)
    }
}

/// Commits what was queued, through `last`, the caller's last write: on
/// this thread when the term is free, else by its holder or the admin.
pub(crate) fn commit_queued(shared: &Shared, last: &Arc<Completion>) {
    // A term held by another thread needs no wake-up: its holder looks at
    // the queue before it sleeps (a combiner after unlocking, the admin
    // thread in its loop). Only a takeover must be left to the admin.
    if combine(shared, last) == Combine::NeedsAdmin {
        shared.admin_queue.wake_admin();
    }
}

impl Completion {
    /// Waits for a write handed over by [`submit_nowait`]: its log index
    /// once committed and applied.
    pub(crate) fn wait_index(&self) -> Result<i32, WriteError> {
        self.wait(Duration::ZERO)
    }
}

/// How long a session waiting for its write gives the CPU away before it
/// sleeps. Sleeping, then being woken from the other CPU, costs about 40 µs
/// on a small virtual machine, and waking each sleeping session costs the
/// committing thread about 10 µs; a session that looks for its result
/// instead is released by a store. With backups to wait for, that only pays
/// when there is a second CPU: on one, every yield hands the CPU to a
/// looking session instead of the backups and the committer it waits for
/// (pinned to one CPU, 3 servers lost 12% that way; with two, they gained
/// 30–40% in interleaved A/B runs).
///
/// Without backups a session's write is nearly always committed by the
/// session itself (flat combining); the few that find another thread
/// committing sleep at once. Looking for 20 µs first gave the same
/// throughput but a p99 of 1.2 ms instead of 0.16 ms unpinned: the
/// lookers kept their threads on one CPU (17 migrations in a run instead
/// of 729) while the other had work queued.
fn spin_before_sleep(shared: &Shared) -> Duration {
    spin_for(shared.spare_cpu, || !shared.has_no_peers())
}

/// The rule of [`spin_before_sleep`], apart from the server's state; the
/// peer list (behind a lock, asked on every write) is only consulted when
/// there is a second CPU.
fn spin_for(spare_cpu: bool, has_backups: impl FnOnce() -> bool) -> Duration {
    if spare_cpu && has_backups() {
        REPLICATED_SPIN
    } else {
        Duration::ZERO
    }
}

/// What [`combine`] did.
#[derive(PartialEq, Eq)]
enum Combine {
    /// Committed the queue up to our own write.
    Done,
    /// Another thread holds the term and will see our write.
    Busy,
    /// No established primary here: the admin thread must take over.
    NeedsAdmin,
}

/// Commits the queued writes on this thread if the term is free and this
/// server is an established primary. It stops once
/// its own write is done, so that its client is not kept waiting while it
/// serves everyone else's.
fn combine(shared: &Shared, done: &Arc<Completion>) -> Combine {
    let mut term = match shared.term.try_lock() {
        Ok(term) => term,
        Err(std::sync::TryLockError::WouldBlock) => return Combine::Busy,
        // A thread panicked mid-step: leave recovery to the admin thread.
        Err(std::sync::TryLockError::Poisoned(_)) => return Combine::NeedsAdmin,
    };
    if !term.established(shared) {
        return Combine::NeedsAdmin;
    }
    let mut batch = Vec::new();
    let mut released = Released::default();
    while !done.is_finished() && shared.admin_queue.take_now(&mut batch) {
        commit_batch(shared, &mut term, &mut batch, Ok(()), &mut released);
        released.finish_own(done);
    }
    released.finish_if_few();
    drop(term);
    released.finish();
    // Writes queued meanwhile found the term taken: the admin thread
    // commits them.
    if !shared.admin_queue.is_empty() {
        shared.admin_queue.wake_admin();
    }
    Combine::Done
}

/// The results of committed batches, handed to their sessions only once
/// the term is released. Waking a sleeping session is a system call of
/// several microseconds; made while the term is held, the wake-ups of a
/// batch of hundreds (thousands of connections) kept the term for
/// milliseconds, every write arriving meanwhile found it taken and slept
/// too, and the admin thread ended up committing every write and waking
/// every session one by one. With the term free during the wake-ups, a
/// session arriving meanwhile commits its own write.
///
/// A few wake-ups, though, are better made with the term held: a session
/// woken while the term is free finds it free when its next write arrives
/// microseconds later and commits that write alone, a round trip to the
/// backups for one write, while the others of its batch queue behind it.
/// With 8 writers and 3 servers that halved the batches (7.7 to 4.3
/// writes per round trip) and cost 19% pinned to one CPU (abbench against
/// 749747e). Held through a few wake-ups, the term gathers the next batch.
#[derive(Default)]
struct Released {
    results: Vec<(Arc<Completion>, Result<i32, WriteError>)>,
}

impl Released {
    /// Hands `done` its result at once if it is among the released: it is
    /// the calling session's own, which is awake.
    fn finish_own(&mut self, done: &Arc<Completion>) {
        if let Some(at) = self.results.iter().position(|(d, _)| Arc::ptr_eq(d, done)) {
            let (own, result) = self.results.swap_remove(at);
            own.finish(result);
        }
    }

    /// Hands the results over while the term is still held when they are
    /// few (see [`FEW_RELEASED`]).
    fn finish_if_few(&mut self) {
        if self.results.len() <= FEW_RELEASED {
            self.finish();
        }
    }

    /// Hands every result to its session, waking those that sleep.
    fn finish(&mut self) {
        for (done, result) in self.results.drain(..) {
            done.finish(result);
        }
    }
}

/// Most results handed over with the term held ([`Released`]): a batch of
/// one write per connection of a small cluster of clients.
const FEW_RELEASED: usize = 32;

/// Commits `batch` (unless `ready` already failed it) and adds its results
/// to `released`, for the caller to hand over once it released the term.
fn commit_batch(
    shared: &Shared,
    term: &mut Term,
    batch: &mut Vec<WriteRequest>,
    ready: Result<(), WriteError>,
    released: &mut Released,
) -> bool {
    let mut entries: Vec<Entry> = batch.iter().map(|r| r.entry.clone()).collect();
    let result = ready.and_then(|()| term.commit(shared, &mut entries));
    if result.is_ok() {
        shared.metrics.batch_size.observe(batch.len() as u64);
    }
    // The batch took consecutive indexes, ending at `last`.
    let first = result
        .as_ref()
        .map_or(0, |last| last + 1 - batch.len() as i32);
    released.results.extend(
        batch
            .drain(..)
            .enumerate()
            .map(|(i, request)| (request.done, result.clone().map(|_| first + i as i32))),
    );
    result.is_ok()
}

pub(crate) fn spawn(shared: Arc<Shared>) -> Result<JoinHandle<()>, ServerError> {
    thread::Builder::new()
        .name(format!("admin-{}", shared.factory_id))
        .spawn(move || run(&shared))
        .map_err(ServerError::Io)
}

fn run(shared: &Arc<Shared>) {
    let mut batch = Vec::new();
    let mut released = Released::default();
    loop {
        elected::carry_out(shared);
        let idle = shared.term().active().then_some(MAINTENANCE);
        match shared.admin_queue.take_batch(&mut batch, idle) {
            Take::Closed => break,
            Take::Idle => shared.term().maintain(shared),
            Take::Batch => {
                let mut term = shared.term();
                let ready = term.ensure_primary(shared);
                let committed = commit_batch(shared, &mut term, &mut batch, ready, &mut released);
                released.finish_if_few();
                drop(term);
                released.finish();
                if committed {
                    shared.term().maintain(shared);
                }
            }
        }
    }
    shared.term().end(shared);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bounds each test's waits, so that a lost wake-up fails the test
    /// instead of hanging it.
    const BOUND: Duration = Duration::from_secs(10);

    /// Runs `wait` on a thread and returns its result, or panics if it
    /// did not return within [`BOUND`].
    fn waited(
        done: &Arc<Completion>,
        spin: Duration,
        finish: impl FnOnce(),
    ) -> Result<i32, WriteError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = Arc::clone(done);
        let handle = thread::spawn(move || {
            let _ = tx.send(waiter.wait(spin));
        });
        finish();
        let result = rx.recv_timeout(BOUND).expect("the waiter was never woken");
        handle.join().expect("waiter thread");
        result
    }

    #[test]
    fn a_result_set_before_the_wait_is_taken_without_sleeping() {
        for spin in [Duration::ZERO, REPLICATED_SPIN] {
            let done = Arc::new(Completion::new());
            done.finish(Err(WriteError::LogFull));
            assert_eq!(waited(&done, spin, || {}), Err(WriteError::LogFull));
            assert!(!done.is_finished(), "the result is taken once");
        }
    }

    #[test]
    fn a_sleeping_session_is_woken_by_its_result() {
        for spin in [Duration::ZERO, REPLICATED_SPIN] {
            let done = Arc::new(Completion::new());
            let result = waited(&done, spin, || {
                // Let the waiter fall asleep (it is woken whether or not
                // it did: this only makes the sleeping case likely).
                let deadline = std::time::Instant::now() + BOUND;
                while !done.lock().asleep && std::time::Instant::now() < deadline {
                    thread::yield_now();
                }
                done.finish(Ok(7));
            });
            assert_eq!(result, Ok(7));
        }
    }

    #[test]
    fn only_a_session_waiting_for_backups_with_a_second_cpu_looks_before_sleeping() {
        assert_eq!(spin_for(true, || true), REPLICATED_SPIN);
        assert_eq!(
            spin_for(false, || true),
            Duration::ZERO,
            "one CPU: the backups need it"
        );
        assert_eq!(
            spin_for(true, || false),
            Duration::ZERO,
            "no backups: commits are local"
        );
        assert_eq!(spin_for(false, || false), Duration::ZERO);
    }

    #[test]
    fn released_results_reach_every_session_and_the_own_one_first() {
        let own = Arc::new(Completion::new());
        let others: Vec<_> = (0..3).map(|_| Arc::new(Completion::new())).collect();
        let mut released = Released::default();
        for (i, done) in others.iter().enumerate() {
            released.results.push((Arc::clone(done), Ok(i as i32)));
        }
        released.results.push((Arc::clone(&own), Ok(9)));
        released.finish_own(&own);
        assert!(own.is_finished(), "the caller's own result at once");
        assert!(others.iter().all(|d| !d.is_finished()), "the others wait");
        released.finish_own(&own);
        assert_eq!(
            released.results.len(),
            3,
            "the own result is handed over once"
        );
        let first = Arc::clone(&others[0]);
        assert_eq!(
            waited(&first, Duration::ZERO, || released.finish()),
            Ok(0),
            "a sleeping session is woken by the pass"
        );
        assert!(released.results.is_empty());
        for (i, done) in others.iter().enumerate().skip(1) {
            assert_eq!(done.wait(Duration::ZERO), Ok(i as i32));
        }
    }

    #[test]
    fn few_results_are_handed_over_at_once_and_many_wait_for_the_release() {
        let mut released = Released::default();
        let few: Vec<_> = (0..FEW_RELEASED)
            .map(|_| Arc::new(Completion::new()))
            .collect();
        released
            .results
            .extend(few.iter().map(|d| (Arc::clone(d), Ok(1))));
        released.finish_if_few();
        assert!(
            few.iter().all(|d| d.is_finished()),
            "a few: with the term held"
        );
        let many: Vec<_> = (0..=FEW_RELEASED)
            .map(|_| Arc::new(Completion::new()))
            .collect();
        released
            .results
            .extend(many.iter().map(|d| (Arc::clone(d), Ok(1))));
        released.finish_if_few();
        assert!(
            many.iter().all(|d| !d.is_finished()),
            "many: after the release"
        );
        released.finish();
        assert!(many.iter().all(|d| d.is_finished()));
    }

    #[test]
    fn a_completion_is_reused_for_the_next_write() {
        let done = Arc::new(Completion::new());
        for n in 0..100 {
            let expected = if n % 2 == 0 {
                Ok(n)
            } else {
                Err(WriteError::Stopping)
            };
            let result = waited(&done, Duration::ZERO, || done.finish(expected.clone()));
            assert_eq!(result, expected);
        }
    }
}

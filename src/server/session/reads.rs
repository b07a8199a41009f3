//! A client's read on any server (G6), carried out step by step as
//! [`crate::replication::next_step`] decides: served from our records,
//! after waiting for our first commit as primary, after learning the
//! primary's commit point and applying it ([`crate::server::read_index`]), or
//! forwarded to the primary. Called by the v1 session for each read
//! ([`read`]) and by the v2 session for each `get` and `scan`
//! ([`read_as`] with its own [`ReadTarget`]).
//!
//! A read that cannot be answered correctly within [`READ_DEADLINE`] fails
//! (the session closes the connection): never an answer from records that
//! may be older than a write acknowledged before the read began.
//!
//! The primary's cost per read is two atomic loads (role and "committed an
//! entry of my epoch"), no lock and no round trip; the waits here sleep on
//! [`Changes`], which the replica lock's release wakes only when someone
//! waits.

use std::fmt;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::forward::Forwarder;
use crate::replication::{next_step, ReadStep, ReadView};
use crate::server::metrics::Fault;
use crate::server::primary::admin::{self, Completion};
use crate::server::primary::WriteError;
use crate::server::read_index::Ticket;
use crate::server::{RoleView, Shared};
use crate::state::V1_EPOCH;
use crate::wire::{Entry, Op};

/// Longest time a read may take before the client's connection is closed
/// instead (the client's own timeout is longer: 10 s in the tests, 30 s in
/// the `client` binary).
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(4);

/// How long a server that knows no primary waits for one before it makes
/// one as a write would: longer than a primary takes to reconnect to a
/// restarted backup (its replicator retries at most 1 s apart), so that a
/// read on a restarted server does not start a takeover.
const PRIMARY_PATIENCE: Duration = Duration::from_millis(1500);

/// Pause after a failed forward or read-index request before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Why a read got no answer.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// No correct answer could be given within [`READ_DEADLINE`]; `last`
    /// is what was awaited at the end.
    Deadline { last: String },
    /// This server cannot make sure of its records (it refuses writes too).
    Refused(String),
    /// The server is stopping.
    Stopping,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Deadline { last } => {
                write!(f, "no up-to-date answer within {READ_DEADLINE:?} ({last})")
            }
            ReadError::Refused(why) => write!(f, "no up-to-date answer: {why}"),
            ReadError::Stopping => write!(f, "the server is stopping"),
        }
    }
}

/// Reads waiting for the published role to change, and their wake-up.
#[derive(Default)]
pub(crate) struct Changes {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Changes {
    /// Called after a change was published: wakes waiting reads, if any
    /// (a wake-up is a system call even when nobody waits).
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `wait_until`: either the waiter sees the
        // new value, or this sees the waiter.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.changed.notify_all();
        }
    }

    /// Wakes every waiting read (the server is stopping).
    pub(crate) fn wake_all(&self) {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }

    /// Waits until `ready` holds or `deadline` passes; true if it held.
    fn wait_until(&self, deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let mut held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let result = loop {
            if ready() {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            held = self
                .changed
                .wait_timeout(held, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        drop(held);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl RoleView {
    /// What the read rule needs, as last published.
    pub(crate) fn read_view(&self, shared: &Shared) -> ReadView {
        let view = self.replica_view(shared);
        match shared.elected.primary() {
            // With the election on, the primary is the one it names, and
            // this server answers as primary only while its lease is live,
            // its epoch's set settled and its barrier committed.
            Some(primary) => ReadView {
                primary,
                established: primary == shared.factory_id
                    && view.primary == shared.factory_id
                    && shared.elected.can_serve(),
                ..view
            },
            None => view,
        }
    }

    fn replica_view(&self, shared: &Shared) -> ReadView {
        ReadView {
            me: shared.factory_id,
            primary: self.primary_id.load(Ordering::Acquire),
            v1_primary: shared.followed_v1(),
            trusted: self.trusted.load(Ordering::Acquire),
            applied: self.applied.load(Ordering::Acquire),
            established: self.established.load(Ordering::Acquire),
            alone: false,
        }
    }

    /// Waits until the published state satisfies `ready`, `deadline`
    /// passes or the server stops.
    pub(crate) fn wait_until(
        &self,
        shared: &Shared,
        deadline: Instant,
        mut ready: impl FnMut(&ReadView) -> bool,
    ) -> bool {
        self.changes.wait_until(deadline, || {
            shared.stopping() || ready(&self.read_view(shared))
        })
    }
}

/// What a read reads, once the rule lets it: our records, or the
/// primary's answer when the rule sends the read there. The v1 session
/// reads a customer ([`read`]); the v2 session reads string keys.
pub(crate) trait ReadTarget {
    type Answer;
    /// Reads our records; called only while the rule lets us answer.
    fn local(&mut self, shared: &Shared) -> Self::Answer;
    /// The rule sends the read to `primary`: its answer, or why there is
    /// none yet (the read then tries again after a pause).
    fn on_primary(&mut self, shared: &Shared, primary: i32) -> Result<Self::Answer, String>;
}

/// When a read began: its answer must hold every write acknowledged
/// before then.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Began {
    at: Instant,
    /// Taken as it began, to share a read-index request begun later.
    ticket: Option<Ticket>,
}

impl Began {
    /// Now, with no read-index ticket (one is taken when first needed).
    pub(crate) fn now() -> Began {
        Began {
            at: Instant::now(),
            ticket: None,
        }
    }

    /// Now, holding a ticket if this server could not answer at once:
    /// a read answered later (behind others on its connection) may then
    /// share the read-index request of the reads ahead of it.
    pub(crate) fn now_for_later(shared: &Shared) -> Began {
        let at = Instant::now();
        let ticket = (!serves_now(shared)).then(|| shared.read_index.ticket());
        Began { at, ticket }
    }
}

/// A v1 read of one customer, forwarded over a client session when the
/// rule sends it to the primary.
struct CustomerRead<'f> {
    customer_id: i32,
    forwarder: &'f mut Forwarder,
}

impl ReadTarget for CustomerRead<'_> {
    type Answer = i32;

    fn local(&mut self, shared: &Shared) -> i32 {
        shared.records.last_order(self.customer_id)
    }

    fn on_primary(&mut self, shared: &Shared, primary: i32) -> Result<i32, String> {
        match self.forwarder.read(shared, primary, self.customer_id) {
            Ok(record) => {
                shared.metrics.forwarded_reads.inc();
                Ok(record.last_order)
            }
            Err(e) => {
                shared.metrics.error(Fault::ForwardFailed);
                Err(format!("the read forwarded to primary {primary}: {e}"))
            }
        }
    }
}

/// The last order of `customer_id` as of a point at or after the read
/// began, by whichever path the rule allows.
pub(crate) fn read(
    shared: &Shared,
    customer_id: i32,
    forwarder: &mut Forwarder,
) -> Result<i32, ReadError> {
    let mut target = CustomerRead {
        customer_id,
        forwarder,
    };
    read_as(shared, &mut target, Began::now())
}

/// `target`'s answer as of a point at or after `began`, by whichever path
/// the rule allows.
pub(crate) fn read_as<T: ReadTarget>(
    shared: &Shared,
    target: &mut T,
    began: Began,
) -> Result<T::Answer, ReadError> {
    if serves_now(shared) {
        return Ok(target.local(shared));
    }
    Slow::new(shared, began).read(target)
}

/// True when the rule lets this server answer a read from its records at
/// once: the common case on a primary, without the clock or the peer list.
pub(crate) fn serves_now(shared: &Shared) -> bool {
    let view = shared.role.read_view(shared);
    next_step(&view, None, false) == ReadStep::Serve
}

/// One read that could not be served at once.
struct Slow<'a> {
    shared: &'a Shared,
    began: Instant,
    deadline: Instant,
    /// For the first read-index request only: a retry asks afresh.
    ticket: Option<Ticket>,
    /// Since when no primary is known (`None`: one is).
    no_primary_since: Option<Instant>,
    /// The primary's commit point learned for this read.
    learned: Option<i32>,
}

impl<'a> Slow<'a> {
    fn new(shared: &'a Shared, began: Began) -> Self {
        Slow {
            shared,
            began: began.at,
            deadline: began.at + READ_DEADLINE,
            ticket: began.ticket,
            no_primary_since: None,
            learned: None,
        }
    }

    fn view(&self) -> ReadView {
        ReadView {
            // With the election on, no read ever makes a primary.
            alone: !self.shared.elected.on() && self.shared.has_no_peers(),
            ..self.shared.role.read_view(self.shared)
        }
    }

    fn read<T: ReadTarget>(&mut self, target: &mut T) -> Result<T::Answer, ReadError> {
        let mut last = String::from("nothing yet");
        while Instant::now() < self.deadline {
            if self.shared.stopping() {
                return Err(ReadError::Stopping);
            }
            let view = self.view();
            let patience_over = self.patience_over(&view);
            match next_step(&view, self.learned, patience_over) {
                ReadStep::Serve => match self.serve(&view, || target.local(self.shared)) {
                    Some(answer) => return Ok(answer),
                    // The role moved between the view and the lock.
                    None => self.pause(),
                },
                ReadStep::AwaitEstablished => {
                    last = "this new primary's first commit".into();
                    self.await_change(|v| v.primary != v.me || v.established);
                }
                ReadStep::AwaitApplied(point) => {
                    last = format!("applying the primary's commit point {point}");
                    self.await_change(|v| v.applied >= point || !v.trusted);
                }
                ReadStep::AwaitPrimary => {
                    last = "a primary".into();
                    let until = self.no_primary_since.map(|t| t + PRIMARY_PATIENCE);
                    self.await_change_until(until, |v| v.primary != crate::state::NO_PRIMARY);
                }
                ReadStep::AskCommitPoint(primary) => {
                    let since = self.ticket.take();
                    match self.shared.read_index.commit_point(
                        self.shared,
                        primary,
                        self.deadline,
                        since,
                    ) {
                        Ok(point) => self.learned = Some(point),
                        Err(e) => {
                            last = format!("the commit point of primary {primary}: {e}");
                            self.pause();
                        }
                    }
                }
                ReadStep::Forward(primary) => match target.on_primary(self.shared, primary) {
                    Ok(answer) => return Ok(answer),
                    Err(why) => {
                        last = why;
                        self.pause();
                    }
                },
                ReadStep::MakePrimary => {
                    last = "a primary to be chosen".into();
                    self.make_primary()?;
                }
            }
        }
        log::debug!("read unanswered after {:?}: {last}", self.began.elapsed());
        Err(ReadError::Deadline { last })
    }

    fn patience_over(&mut self, view: &ReadView) -> bool {
        if view.primary != crate::state::NO_PRIMARY || self.shared.elected.on() {
            self.no_primary_since = None;
            return false;
        }
        let since = *self.no_primary_since.get_or_insert_with(Instant::now);
        since.elapsed() >= PRIMARY_PATIENCE
    }

    /// Reads the record, checking again under the replica lock that the
    /// rule still holds: a backup installing a snapshot replaces its
    /// records under that lock, and becomes untrusted before releasing it.
    fn serve<A>(&self, view: &ReadView, local: impl FnOnce() -> A) -> Option<A> {
        if view.primary == view.me {
            // A primary's records only move forward; no lock per read.
            return Some(local());
        }
        let replica = self.shared.replica();
        let still = replica.trusted()
            && replica.primary_id() == view.primary
            && self.learned.is_some_and(|p| replica.committed_index() >= p);
        still.then(local)
    }

    fn await_change(&self, ready: impl FnMut(&ReadView) -> bool) {
        self.await_change_until(None, ready);
    }

    fn await_change_until(&self, until: Option<Instant>, ready: impl FnMut(&ReadView) -> bool) {
        let end = until.map_or(self.deadline, |u| u.min(self.deadline));
        self.shared.role.wait_until(self.shared, end, ready);
    }

    fn pause(&self) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        thread::sleep(RETRY_PAUSE.min(left));
    }

    /// Asks the admin to make this server primary, as a write would, with
    /// a no-op entry: the takeover rules decide whether it may lead, or
    /// which server is primary. Either way the rule is asked again.
    /// A server that refuses writes (G5: unsure it holds every
    /// acknowledged write) refuses the read too, at once.
    fn make_primary(&mut self) -> Result<(), ReadError> {
        let done = std::sync::Arc::new(Completion::new());
        let noop = Entry {
            epoch: V1_EPOCH,
            op: Op::Noop,
        };
        match admin::submit_write(self.shared, noop, &done) {
            Ok(()) => Ok(()),
            Err(WriteError::NotPrimary(_) | WriteError::Defer(_) | WriteError::NoPrimary) => {
                // Somebody else is or will be primary: wait for it.
                self.no_primary_since = Some(Instant::now());
                self.await_change_until(Some(Instant::now() + PRIMARY_PATIENCE), |v| {
                    v.primary != crate::state::NO_PRIMARY
                });
                Ok(())
            }
            Err(WriteError::Stopping) => Err(ReadError::Stopping),
            Err(e) => Err(ReadError::Refused(e.to_string())),
        }
    }
}

//! The server's side of the majority election (docs/failover.md): the
//! decisions the election thread hands over, and what it publishes for
//! the threads that act on them without ever taking the replica lock from
//! the election thread (a sync may hold that lock, and heartbeats must not
//! wait for the disk).
//!
//! - The election thread calls [`ServerHooks`]: it publishes the lease
//!   (until when this primary may commit, and serve), the settled and
//!   pending in-sync sets, and the primary it follows, in atomics and a
//!   small mutex of its own; it queues the decisions that change the term
//!   (become primary, step down, follow) and wakes the admin thread.
//! - The admin thread ([`carry_out`]) applies those to the term and the
//!   replica (`term.rs`).
//! - Committing threads ask [`Elected::may_commit`] when they acknowledge,
//!   reads and read-index answers ask [`Elected::can_serve`].
//!
//! With the election off (no `--election`, a cluster of fewer than three,
//! or one with an original server) nothing here is consulted and the term
//! takes over on a client's write as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Instant;

use super::ElectionHooks;
use crate::replication::election::{Election, LogPos, Output, Role};
use crate::replication::lease::Millis;
use crate::server::Shared;
use crate::state::NO_PRIMARY;
use crate::wire::{Epoch, MemberSet};

/// A decision the admin thread carries out on the term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Start a term in `epoch` with `in_sync` and append its barrier.
    BecomePrimary { epoch: Epoch, in_sync: MemberSet },
    /// The term of `epoch` is over.
    StepDown { epoch: Epoch },
    /// `primary` leads `epoch`.
    Follow { primary: i32, epoch: Epoch },
}

/// The in-sync sets of this server's current elected term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Configs {
    /// The term they belong to (0: none).
    pub epoch: Epoch,
    /// The latest set a majority accepted.
    pub stable: Option<MemberSet>,
    /// A set proposed and not accepted yet.
    pub pending: Option<MemberSet>,
}

/// What the election decided, as the server's threads read it.
#[derive(Default)]
pub(crate) struct Elected {
    /// The election drives the term.
    on: AtomicBool,
    /// The election's clock origin.
    base: OnceLock<Instant>,
    /// The epoch the election made this server primary in (0: none).
    primary_epoch: AtomicU64,
    /// This primary may commit while the election's clock is below this.
    commit_until: AtomicU64,
    /// This primary may serve reads while the election's clock is below this.
    serve_until: AtomicU64,
    /// The lease of `primary_epoch` lapsed and was not regained.
    lease_lost: AtomicBool,
    /// The primary the election follows or is (-1: none).
    primary: AtomicI32,
    configs: Mutex<Configs>,
    /// Data servers that acked none of this primary's recent heartbeats,
    /// and the epoch they belong to.
    silent: Mutex<(Epoch, MemberSet)>,
    /// Whether `silent` holds anyone: committers look at it per commit.
    any_silent: AtomicBool,
    events: Mutex<VecDeque<Event>>,
    /// Peers that are witnesses (they vote, hold no log).
    witnesses: Vec<i32>,
    /// Peers that sent this server an election message: they are factory
    /// servers, whatever a dropped handshake may look like.
    voters_heard: Mutex<Vec<i32>>,
    /// When peers were last checked for original servers (election ms).
    looked: AtomicU64,
    /// The thread checking them, if one ran.
    looker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Elected {
    pub(crate) fn new(on: bool, witnesses: Vec<i32>) -> Self {
        let elected = Elected {
            witnesses,
            ..Elected::default()
        };
        elected.on.store(on, Ordering::SeqCst);
        elected.primary.store(NO_PRIMARY, Ordering::SeqCst);
        elected
    }

    /// True while the election decides who is primary here.
    pub(crate) fn on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// The election no longer drives the term (a mixed cluster).
    pub(crate) fn turn_off(&self) {
        self.on.store(false, Ordering::SeqCst);
        self.primary_epoch.store(0, Ordering::SeqCst);
        self.commit_until.store(0, Ordering::SeqCst);
        self.serve_until.store(0, Ordering::SeqCst);
    }

    /// The election's clock now (0 before it started).
    pub(crate) fn now(&self) -> Millis {
        self.base
            .get()
            .map_or(0, |b| b.elapsed().as_millis() as Millis)
    }

    /// The primary the election knows (-1: none), when it is on.
    pub(crate) fn primary(&self) -> Option<i32> {
        self.on().then(|| self.primary.load(Ordering::Acquire))
    }

    /// True if this server, primary in `epoch`, may acknowledge a commit
    /// now: its lease is live and a majority accepted a set of its epoch.
    pub(crate) fn may_commit(&self, epoch: Epoch) -> bool {
        let until = self.commit_until.load(Ordering::Acquire);
        self.primary_epoch.load(Ordering::Acquire) == epoch && self.now() < until
    }

    /// True if this server may answer reads as primary now: as
    /// [`Elected::may_commit`], and an entry of its epoch is committed.
    pub(crate) fn can_serve(&self) -> bool {
        let until = self.serve_until.load(Ordering::Acquire);
        self.primary_epoch.load(Ordering::Acquire) != 0 && self.now() < until
    }

    /// True once the lease of `epoch` lapsed (and until it is regained).
    pub(crate) fn lease_lost(&self, epoch: Epoch) -> bool {
        self.lease_lost.load(Ordering::Acquire)
            && self.primary_epoch.load(Ordering::Acquire) == epoch
    }

    /// The in-sync sets of the elected term `epoch` (empty if another).
    pub(crate) fn configs(&self, epoch: Epoch) -> Configs {
        let c = *lock(&self.configs);
        if c.epoch == epoch {
            c
        } else {
            Configs::default()
        }
    }

    /// True if server `id` sent this one an election message (so a
    /// connection it dropped is a crash or a cut link, never an original
    /// server's answer to the native tag).
    pub(crate) fn heard_from(&self, id: i32) -> bool {
        lock(&self.voters_heard).contains(&id)
    }

    fn heard(&self, id: i32) {
        let mut heard = lock(&self.voters_heard);
        if !heard.contains(&id) {
            heard.push(id);
        }
    }

    /// The data servers that acked no heartbeat of the last lease period
    /// to this primary of `epoch` (empty if another epoch).
    pub(crate) fn silent(&self, epoch: Epoch) -> MemberSet {
        if !self.any_silent.load(Ordering::Acquire) {
            return MemberSet::new();
        }
        let (of, set) = *lock(&self.silent);
        if of == epoch {
            set
        } else {
            MemberSet::new()
        }
    }

    /// True if peer `id` is a witness.
    pub(crate) fn is_witness(&self, id: i32) -> bool {
        self.witnesses.contains(&id)
    }

    /// Joins the thread that looked for original servers (at stop).
    pub(crate) fn join(&self) {
        if let Some(t) = lock(&self.looker).take() {
            let _ = t.join();
        }
    }

    fn push(&self, event: Event) {
        lock(&self.events).push_back(event);
    }

    /// The next decision to carry out.
    pub(crate) fn next_event(&self) -> Option<Event> {
        lock(&self.events).pop_front()
    }
}

/// The hooks the election thread calls; they hold the server weakly (the
/// service lives inside it).
pub(crate) struct ServerHooks {
    pub(crate) shared: Weak<Shared>,
}

impl ServerHooks {
    fn with(&self, f: impl FnOnce(&Arc<Shared>)) {
        if let Some(shared) = self.shared.upgrade() {
            f(&shared);
        }
    }
}

impl ElectionHooks for ServerHooks {
    fn log_end(&self) -> LogPos {
        self.shared
            .upgrade()
            .map_or(LogPos::EMPTY, |s| s.role.log_ends().0)
    }

    fn log_ends(&self) -> (LogPos, LogPos) {
        self.shared
            .upgrade()
            .map_or((LogPos::EMPTY, LogPos::EMPTY), |s| s.role.log_ends())
    }

    fn started(&self, base: Instant) {
        self.with(|s| {
            let _ = s.elected.base.set(base);
        });
    }

    fn decided(&self, out: &Output) {
        self.with(|s| decided(s, out));
    }

    fn stepped(&self, election: &Election, now: Millis) {
        self.with(|s| stepped(s, election, now));
    }

    fn heard(&self, from: i32) {
        self.with(|s| {
            let known = lock(&s.peers).iter().any(|p| p.id == from);
            if known {
                s.elected.heard(from);
            }
        });
    }
}

fn decided(shared: &Shared, out: &Output) {
    let e = &shared.elected;
    if !e.on() {
        return;
    }
    match *out {
        Output::BecomePrimary { epoch, in_sync } => {
            *lock(&e.configs) = Configs {
                epoch,
                stable: None,
                pending: Some(in_sync),
            };
            e.lease_lost.store(false, Ordering::SeqCst);
            e.commit_until.store(0, Ordering::SeqCst);
            e.serve_until.store(0, Ordering::SeqCst);
            e.primary_epoch.store(epoch, Ordering::SeqCst);
            e.primary.store(shared.factory_id, Ordering::SeqCst);
            e.push(Event::BecomePrimary { epoch, in_sync });
            shared.admin_queue.nudge();
        }
        Output::StepDown { epoch, .. } => {
            // At once, not through the admin: a committer waiting for acks
            // holds the term, and must give up before anything else.
            e.primary_epoch.store(0, Ordering::SeqCst);
            e.commit_until.store(0, Ordering::SeqCst);
            e.serve_until.store(0, Ordering::SeqCst);
            if e.primary.load(Ordering::SeqCst) == shared.factory_id {
                e.primary.store(NO_PRIMARY, Ordering::SeqCst);
            }
            shared.repl.update(|p| {
                if p.epoch == epoch {
                    p.epoch = 0;
                }
            });
            shared.repl.notify();
            e.push(Event::StepDown { epoch });
            shared.admin_queue.nudge();
            shared.role.changes.notify();
        }
        Output::LeaseLost { .. } => {
            e.lease_lost.store(true, Ordering::SeqCst);
            e.commit_until.store(0, Ordering::SeqCst);
            e.serve_until.store(0, Ordering::SeqCst);
            shared.repl.notify();
        }
        Output::LeaseRegained { .. } => {
            e.lease_lost.store(false, Ordering::SeqCst);
        }
        Output::Follow { primary, epoch } => {
            e.primary.store(primary, Ordering::SeqCst);
            e.push(Event::Follow { primary, epoch });
            shared.admin_queue.nudge();
            shared.role.changes.notify();
        }
        Output::InSyncCommitted(config) => {
            {
                let mut c = lock(&e.configs);
                if c.epoch == config.id.epoch {
                    c.stable = Some(config.members);
                    c.pending = None;
                }
            }
            shared.repl.notify();
        }
        _ => {}
    }
}

/// Publishes the lease and the in-sync sets after every step.
fn stepped(shared: &Shared, election: &Election, now: Millis) {
    let e = &shared.elected;
    if !e.on() {
        return;
    }
    let primary = election.role() == Role::Primary;
    let until = election.lease_until().filter(|_| primary).unwrap_or(0);
    let commit = if election.may_commit(now) { until } else { 0 };
    let serve = if election.can_serve(now) { until } else { 0 };
    let served_before = e.serve_until.swap(serve, Ordering::SeqCst) > now;
    e.commit_until.store(commit, Ordering::SeqCst);
    if primary {
        let mut c = lock(&e.configs);
        if c.epoch == election.epoch() {
            c.stable = election.settled_config().map(|c| c.members);
            c.pending = election.pending_config().map(|c| c.members);
        }
    }
    let silent = if primary {
        (election.epoch(), election.silent_peers(now))
    } else {
        (0, MemberSet::new())
    };
    let changed = {
        let mut s = lock(&e.silent);
        let changed = *s != silent;
        *s = silent;
        e.any_silent.store(!silent.1.is_empty(), Ordering::Release);
        changed
    };
    if changed {
        // A committer waiting for a silent member's ack proposes its drop.
        shared.repl.notify();
    }
    if served_before != (serve > now) {
        shared.role.changes.notify();
    }
}

/// How often a server without a primary checks its peers for original
/// servers.
const LOOK_EVERY: Millis = 2_000;

/// A write found no primary while the election is on: in the background
/// (a paused peer could hold the caller for a second), check whether a
/// peer is an original server, which never votes, so that a mixed cluster
/// falls back to the original's rules ([`found_original`]).
pub(crate) fn look_for_originals(shared: &Arc<Shared>) {
    let e = &shared.elected;
    let now = e.now().max(1);
    let last = e.looked.load(Ordering::SeqCst);
    if (last != 0 && now < last + LOOK_EVERY) || shared.stopping() {
        return;
    }
    if e.primary().is_some_and(|p| p != NO_PRIMARY) {
        return;
    }
    let mut looker = lock(&e.looker);
    if looker.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    if let Some(t) = looker.take() {
        let _ = t.join();
    }
    e.looked.store(now, Ordering::SeqCst);
    let weak = Arc::downgrade(shared);
    *looker = std::thread::Builder::new()
        .name("look-for-v1".into())
        .spawn(move || {
            if let Some(shared) = weak.upgrade() {
                if let Some(id) = super::originals::original_peer(&shared) {
                    found_original(&shared, id);
                }
            }
        })
        .ok();
}

/// Peer `id` is an original server: the election cannot decide for this
/// cluster (originals never vote), so this server keeps the original's
/// rules from now on: the term is taken on a client's write, as before.
/// (`NO_PRIMARY`: an original primary streams to this server.)
pub(crate) fn found_original(shared: &Shared, id: i32) {
    let who = if id == NO_PRIMARY {
        "an original server streams to it as primary".to_string()
    } else {
        format!("peer {id} is an original server")
    };
    turn_off(shared, &who);
}

/// Server `id` asked whether it may take over (a probe): it chooses
/// primaries by the original's rule (an original, a factory server run
/// with `--election off`, or one that found an original), so this one
/// follows suit.
pub(crate) fn found_takeover_rule(shared: &Shared, id: i32) {
    turn_off(
        shared,
        &format!("server {id} takes over on a client's write (the original's rule)"),
    );
}

fn turn_off(shared: &Shared, why: &str) {
    if !shared.elected.on() {
        return;
    }
    log::warn!(
        "factory {}: {why}: the election is off in this cluster from now on; a primary is chosen on a client's write, as the original does (run every factory server of a mixed cluster with --election off)",
        shared.factory_id
    );
    shared.elected.turn_off();
    shared.repl.notify();
    shared.admin_queue.nudge();
    shared.role.changes.notify();
}

/// Carries out the queued decisions on the term (the admin thread).
pub(crate) fn carry_out(shared: &Arc<Shared>) {
    if !shared.elected.on() {
        stop_election(shared);
    }
    while let Some(event) = shared.elected.next_event() {
        if !shared.elected.on() {
            continue;
        }
        match event {
            Event::BecomePrimary { epoch, in_sync } => {
                if shared.elected.primary_epoch.load(Ordering::SeqCst) != epoch {
                    continue;
                }
                let mut term = shared.term();
                if let Err(e) = term.lead_elected(shared, epoch, in_sync) {
                    log::info!(
                        "factory {}: the barrier of epoch {} not committed yet: {e}",
                        shared.factory_id,
                        crate::logging::epoch(epoch)
                    );
                }
            }
            Event::StepDown { epoch } => {
                shared.term().end_elected(shared, epoch);
            }
            Event::Follow { primary, epoch } => follow(shared, primary, epoch),
        }
    }
}

/// After a mixed cluster was found: the election stops, and an elected
/// term ends (the next write takes the role as the original would).
fn stop_election(shared: &Shared) {
    let service = shared
        .election
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(service) = service else {
        return;
    };
    service.stop();
    let mut term = shared.term();
    if term.is_elected() {
        let epoch = term.epoch();
        term.end_elected(shared, epoch);
    }
}

/// The election names `primary` for `epoch`: the replica adopts the
/// epoch and the primary, so that writes and reads go there.
fn follow(shared: &Arc<Shared>, primary: i32, epoch: Epoch) {
    if primary == shared.factory_id {
        return;
    }
    let mut term = shared.term();
    if term.active() && term.epoch() < epoch {
        term.end(shared);
    }
    drop(term);
    let mut replica = shared.replica();
    if replica.adopt_epoch(epoch) {
        shared.persist_epoch(epoch);
    }
    if replica.epoch() == epoch && replica.primary_id() != primary {
        if replica.is_primary() {
            log::info!(
                "factory {} steps down: server {primary} is primary in epoch {}",
                shared.factory_id,
                crate::logging::epoch(epoch)
            );
        }
        replica.follow(primary);
    }
}

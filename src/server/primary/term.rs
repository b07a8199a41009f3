//! One primary term, driven by the admin thread: taking over (probe,
//! decide, take a new epoch), running a replicator per peer, committing
//! batches once every in-sync member holds them, and changing the in-sync
//! set (dropping a peer whose link failed, adding one that caught up), each
//! change being an entry of the replicated log.
//!
//! With the majority election on (`server::election::elected`), the
//! election starts and ends terms instead of a client's write: a term then
//! commits only once every member of the election's commit set holds an
//! entry (the settled in-sync set and any proposed one), acknowledges only
//! while the lease lets it commit, and changes the in-sync set by proposing
//! it to the election and waiting until a majority accepted it.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::live::{self, Slot};
use super::progress::PeerProgress;
use super::{replicator, takeover, WriteError};
use crate::replication::{commit_point, decide_takeover, Decision, PeerView};
use crate::server::compaction;
use crate::server::election::elected;
use crate::server::metrics::{Election, Fault};
use crate::server::registry::CONNECTION_STACK;
use crate::server::Shared;
use crate::state::{next_epoch, NO_PRIMARY};
use crate::wire::{Entry, Epoch, MemberSet, Op};

/// How long the admin waits between checks while a batch is replicated.
const COMMIT_POLL: Duration = Duration::from_millis(50);

/// An elected primary whose lease has not let it commit for this long
/// fails the writes waiting (a lease renewed by heartbeats every 50 ms is
/// never this late unless no majority answers).
const NO_LEASE_WAIT: Duration = Duration::from_secs(1);

/// A proposal of the in-sync set that the election has not shown after
/// this long was refused (a term that ended meanwhile): forget it.
const PROPOSAL_WAIT: Duration = Duration::from_secs(1);

/// The admin's view of its current term (none while not primary).
#[derive(Default)]
pub(crate) struct Term {
    epoch: Epoch,
    in_sync: MemberSet,
    replicators: Vec<(i32, JoinHandle<()>)>,
    /// Each peer's live link, shared with its replicator.
    slots: Vec<(i32, Arc<Slot>)>,
    /// The election started this term (it drives the in-sync set too).
    elected: bool,
    /// An in-sync set proposed to the election, not yet shown by it.
    proposed: Option<(MemberSet, std::time::Instant)>,
    /// Members whose link failed, to be dropped through the election.
    to_drop: Vec<i32>,
    /// The latest settled set the log was told of (an in-sync entry).
    settled: Option<MemberSet>,
    /// The election was told that an entry of this epoch is committed.
    reported: bool,
}

impl Term {
    pub(crate) fn active(&self) -> bool {
        self.epoch != 0
    }

    /// True if the election started this term.
    pub(crate) fn is_elected(&self) -> bool {
        self.elected
    }

    /// The term's epoch (0: none).
    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// True while this term may commit writes without a takeover.
    pub(crate) fn established(&self, shared: &Shared) -> bool {
        if !self.active() {
            return false;
        }
        // One lock at a time: the progress guard must be gone before the
        // replica lock is taken.
        let epoch = shared.repl.lock().epoch;
        epoch == self.epoch && shared.replica().is_primary()
    }

    /// Makes sure this server may accept writes, taking over if no primary
    /// is alive.
    pub(crate) fn ensure_primary(&mut self, shared: &Arc<Shared>) -> Result<(), WriteError> {
        if self.established(shared) {
            return Ok(());
        }
        if shared.elected.on() {
            // Never a takeover on a client's write: the election decides.
            if !self.elected {
                self.end(shared);
            }
            elected::look_for_originals(shared);
            return Err(not_primary(shared));
        }
        self.end(shared);
        let primary = shared.replica().primary_id();
        if primary != NO_PRIMARY && primary != shared.factory_id {
            return Err(WriteError::NotPrimary(primary));
        }
        self.take_over(shared)
    }

    fn take_over(&mut self, shared: &Arc<Shared>) -> Result<(), WriteError> {
        let epoch = {
            let mut replica = shared.replica();
            let epoch = next_epoch(replica.epoch(), shared.factory_id);
            replica.adopt_epoch(epoch);
            epoch
        };
        shared.persist_epoch(epoch);
        let outcomes = takeover::probe_all(shared, epoch);
        let me = {
            let replica = shared.replica();
            if replica.epoch() != epoch {
                return Err(WriteError::NoPrimary);
            }
            PeerView {
                id: shared.factory_id,
                last_index: replica.last_index(),
                last_epoch: replica.last_epoch(),
                trusted: replica.trusted(),
                in_sync: replica.in_sync(),
            }
        };
        let force = shared.force_primary || shared.followed_v1();
        let decision = decide_takeover(&me, &outcomes, force);
        shared.metrics.election(match decision {
            Decision::Lead(_) => Election::Won,
            Decision::Follow(_) => Election::Followed,
            Decision::Defer(_) => Election::Deferred,
            Decision::StandBack(_) => Election::StoodBack,
            Decision::Unsafe(_) => Election::Refused,
        });
        match decision {
            Decision::Lead(in_sync) => self.lead(shared, epoch, in_sync, force && !me.trusted),
            Decision::Follow(p) => Err(WriteError::NotPrimary(p)),
            Decision::Defer(p) => {
                log::info!(
                    "factory {}: server {p} holds a longer log; letting it take over",
                    shared.factory_id
                );
                Err(WriteError::Defer(p))
            }
            Decision::StandBack(higher) => {
                if shared.replica().adopt_epoch(higher) {
                    shared.persist_epoch(higher);
                }
                Err(WriteError::NoPrimary)
            }
            Decision::Unsafe(missing) => {
                let why = format!(
                    "in-sync members {missing:?} cannot be reached and no reachable server is known to hold every acknowledged write (start with --force-primary to override)"
                );
                log::warn!("factory {} refuses writes: {why}", shared.factory_id);
                Err(WriteError::Unsafe(why))
            }
        }
    }

    fn lead(
        &mut self,
        shared: &Arc<Shared>,
        epoch: Epoch,
        in_sync: MemberSet,
        forced: bool,
    ) -> Result<(), WriteError> {
        {
            let mut replica = shared.replica();
            if replica.epoch() != epoch {
                return Err(WriteError::NoPrimary);
            }
            replica.become_primary_in(epoch);
        }
        if forced {
            log::warn!(
                "factory {} takes over without knowing it holds every acknowledged write (forced)",
                shared.factory_id
            );
        }
        log::info!(
            "factory {} became primary in epoch {} with in-sync set {:?}",
            shared.factory_id,
            crate::logging::epoch(epoch),
            in_sync.ids()
        );
        self.open(shared, epoch, in_sync)
    }

    /// Starts the term the election gave this server in `epoch`, with
    /// its first in-sync set, and commits the barrier: an in-sync entry of
    /// the new epoch, which applies everything inherited before any read.
    pub(crate) fn lead_elected(
        &mut self,
        shared: &Arc<Shared>,
        epoch: Epoch,
        in_sync: MemberSet,
    ) -> Result<(), WriteError> {
        self.end(shared);
        {
            let mut replica = shared.replica();
            if replica.adopt_epoch(epoch) {
                shared.persist_epoch(epoch);
            }
            if replica.epoch() != epoch {
                return Err(WriteError::NoPrimary);
            }
            replica.become_primary_in(epoch);
        }
        shared.metrics.election(Election::Won);
        log::info!(
            "factory {} became primary in epoch {} with in-sync set {:?} (elected by a majority)",
            shared.factory_id,
            crate::logging::epoch(epoch),
            in_sync.ids()
        );
        self.elected = true;
        self.settled = Some(in_sync);
        self.open(shared, epoch, in_sync)
    }

    /// Starts the term's replicators and commits its barrier: an in-sync
    /// entry of `epoch`, which applies everything inherited before any read.
    fn open(
        &mut self,
        shared: &Arc<Shared>,
        epoch: Epoch,
        in_sync: MemberSet,
    ) -> Result<(), WriteError> {
        self.start(shared, epoch, in_sync);
        self.commit(
            shared,
            &mut [Entry {
                epoch,
                op: Op::InSync(Box::new(in_sync)),
            }],
        )
        .map(drop)
    }

    /// The election ended the term of `epoch`: the replicators stop,
    /// writes waiting fail, and the replica no longer claims the role.
    pub(crate) fn end_elected(&mut self, shared: &Shared, epoch: Epoch) {
        if self.active() && self.epoch == epoch {
            self.end(shared);
        }
        let mut replica = shared.replica();
        if replica.is_primary() && replica.epoch() <= epoch {
            shared.metrics.step_downs.inc();
            log::info!(
                "factory {} steps down: its term of epoch {} is over (a higher epoch exists)",
                shared.factory_id,
                crate::logging::epoch(epoch)
            );
            let primary = shared.elected.primary().unwrap_or(crate::state::NO_PRIMARY);
            replica.follow(if primary == shared.factory_id {
                crate::state::NO_PRIMARY
            } else {
                primary
            });
        }
    }

    fn start(&mut self, shared: &Arc<Shared>, epoch: Epoch, in_sync: MemberSet) {
        let (commit, last) = {
            let replica = shared.replica();
            (replica.committed_index(), replica.last_index())
        };
        shared.repl.update(|p| {
            p.epoch = epoch;
            p.commit = commit;
            p.last_index = last;
            p.peers.clear();
        });
        self.epoch = epoch;
        self.in_sync = in_sync;
        self.spawn_replicators(shared);
        // An elected term waits for nobody it need not: its commit set says
        // whom (a paused peer would hold the barrier for seconds here).
        if !self.elected {
            self.await_first_contact(shared);
        }
    }

    /// Like the original, which connects to every peer before replicating
    /// its first write: wait (bounded) until each replicator has connected
    /// or failed, so that live v1 peers are waited for from the start.
    fn await_first_contact(&self, shared: &Shared) {
        let deadline = std::time::Instant::now() + shared.limits.connect_timeout * 2;
        let mut p = shared.repl.lock();
        while !p.all_settled() && p.epoch == self.epoch && !shared.stopping() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            p = shared.repl.wait(p, left.min(COMMIT_POLL));
        }
    }

    /// Starts a replicator for every configured peer that has none.
    fn spawn_replicators(&mut self, shared: &Arc<Shared>) {
        for peer in shared.peer_list() {
            if self.replicators.iter().any(|(id, _)| *id == peer.id)
                || shared.elected.is_witness(peer.id)
            {
                continue;
            }
            shared.repl.update(|p| {
                p.peers.push(PeerProgress {
                    id: peer.id,
                    matched: -1,
                    live: false,
                    v1: false,
                    failed: false,
                    settled: false,
                })
            });
            let (shared2, epoch, id) = (Arc::clone(shared), self.epoch, peer.id);
            let slot = Arc::new(Slot::default());
            self.slots.push((id, Arc::clone(&slot)));
            let spawned = thread::Builder::new()
                .name(format!("replicate-{id}"))
                .stack_size(CONNECTION_STACK)
                .spawn(move || replicator::run(&shared2, &peer, epoch, &slot));
            match spawned {
                Ok(handle) => self.replicators.push((id, handle)),
                Err(e) => log::error!("cannot start the replicator for peer {id}: {e}"),
            }
        }
    }

    /// Ends the term: replicators stop and are joined.
    pub(crate) fn end(&mut self, shared: &Shared) {
        if !self.active() {
            return;
        }
        shared.repl.update(|p| {
            if p.epoch == self.epoch {
                p.epoch = 0;
            }
        });
        shared.repl.notify();
        for (_, handle) in self.replicators.drain(..) {
            let _ = handle.join();
        }
        self.slots.clear();
        self.elected = false;
        self.proposed = None;
        self.to_drop.clear();
        self.settled = None;
        self.reported = false;
        log::info!(
            // Tests read "factory N: primary term E" (tests/common).
            "factory {}: primary term {} ended; no longer primary",
            shared.factory_id,
            crate::logging::epoch(self.epoch)
        );
        self.epoch = 0;
    }

    /// Appends `entries` in this term (stamping them with its epoch), makes
    /// them durable here, waits until every in-sync member holds them, then
    /// commits and applies. Returns the index of the last of `entries`
    /// (they take consecutive indexes).
    pub(crate) fn commit(
        &mut self,
        shared: &Shared,
        entries: &mut [Entry],
    ) -> Result<i32, WriteError> {
        if self.elected && shared.elected.lease_lost(self.epoch) {
            return Err(WriteError::LeaseLost);
        }
        let last = self.append_and_send(shared, entries)?;
        if self.slots.is_empty() {
            self.wait_committed(shared, last)?;
            return self.acknowledge(shared, last);
        }
        let started = std::time::Instant::now();
        let result = self.wait_committed(shared, last);
        shared
            .metrics
            .replication_wait
            .observe_duration(started.elapsed());
        result?;
        self.acknowledge(shared, last)
    }

    /// The last check before the writes through `last` are acknowledged:
    /// an elected primary's lease may have ended while they were in flight.
    fn acknowledge(&self, shared: &Shared, last: i32) -> Result<i32, WriteError> {
        if self.elected && !shared.elected.may_commit(self.epoch) {
            return Err(WriteError::LeaseLost);
        }
        Ok(last)
    }

    /// Appends `entries` and sends them to every caught-up backup at once.
    fn append_and_send(
        &mut self,
        shared: &Shared,
        entries: &mut [Entry],
    ) -> Result<i32, WriteError> {
        let before = shared.repl.lock().last_index;
        let last = self.append(shared, entries)?;
        live::replicate(shared, &self.slots, before);
        Ok(last)
    }

    /// Stamps `entries` with this term's epoch and appends them, here and
    /// to the durable log; returns the last index.
    fn append(&mut self, shared: &Shared, entries: &mut [Entry]) -> Result<i32, WriteError> {
        // Stamped outside the lock; the same entries go to the disk.
        for entry in entries.iter_mut() {
            entry.epoch = self.epoch;
        }
        let stamped: &[Entry] = entries;
        let (first, last) = {
            let mut replica = shared.replica();
            if !replica.is_primary() || replica.epoch() != self.epoch {
                return Err(WriteError::NotPrimary(replica.primary_id()));
            }
            if i64::from(replica.last_index()) + stamped.len() as i64 >= i64::from(i32::MAX) {
                return Err(WriteError::LogFull);
            }
            let first = replica.last_index() + 1;
            for entry in stamped {
                replica
                    .append(entry.clone())
                    .map_err(|_| WriteError::LogFull)?;
            }
            (first, replica.last_index())
        };
        if let Some(set) = stamped.iter().rev().find_map(|e| match &e.op {
            Op::InSync(set) => Some(**set),
            _ => None,
        }) {
            self.in_sync = set;
        }
        shared.repl.update(|p| p.last_index = last);
        shared.durable.append(first, stamped).map_err(|e| {
            shared.metrics.error(Fault::Storage);
            WriteError::Storage(e.to_string())
        })?;
        Ok(last)
    }

    /// Waits until every in-sync member (and every live v1 peer) holds
    /// `target`; drops members whose link failed on the way.
    fn wait_committed(&mut self, shared: &Shared, mut target: i32) -> Result<(), WriteError> {
        if self.elected {
            return self.wait_elected(shared, target);
        }
        loop {
            let failed = {
                let mut p = shared.repl.lock();
                loop {
                    if shared.stopping() {
                        return Err(WriteError::Stopping);
                    }
                    if p.epoch != self.epoch {
                        return Err(WriteError::NoPrimary);
                    }
                    let failed = p.take_failed(&self.in_sync);
                    if !failed.is_empty() {
                        break failed;
                    }
                    let point =
                        commit_point(&self.in_sync, shared.factory_id, p.last_index, |id| {
                            p.matched(id)
                        });
                    if point >= target && !p.v1_behind(target) {
                        break Vec::new();
                    }
                    p = shared.repl.wait(p, COMMIT_POLL);
                }
            };
            if failed.is_empty() {
                self.apply_commit(shared, target);
                return Ok(());
            }
            let mut smaller = self.in_sync;
            for id in &failed {
                smaller.remove(*id);
                log::warn!("peer {id} dropped from the in-sync set (its link failed)");
            }
            target = self.append(
                shared,
                &mut [Entry {
                    epoch: self.epoch,
                    op: Op::InSync(Box::new(smaller)),
                }],
            )?;
        }
    }

    /// As [`Term::wait_committed`] for an elected term: every member of
    /// the commit set must hold `target` and the lease must let this
    /// server commit; a member whose link failed is proposed for dropping,
    /// which counts once a majority accepted it.
    fn wait_elected(&mut self, shared: &Shared, target: i32) -> Result<(), WriteError> {
        let mut no_lease_since: Option<std::time::Instant> = None;
        loop {
            self.reconfigure(shared, &[]);
            let members = self.commit_members(shared);
            let mut p = shared.repl.lock();
            if shared.stopping() {
                return Err(WriteError::Stopping);
            }
            if p.epoch != self.epoch {
                return Err(not_primary(shared));
            }
            if shared.elected.lease_lost(self.epoch) {
                return Err(WriteError::LeaseLost);
            }
            let failed = p.take_failed(&members);
            if !failed.is_empty() {
                drop(p);
                self.note_failed(&failed, "its link failed");
                continue;
            }
            let silent = self.newly_silent(shared, &members);
            if !silent.is_empty() {
                drop(p);
                self.note_failed(&silent, "it acknowledged no heartbeat for a lease period");
                continue;
            }
            let point = commit_point(&members, shared.factory_id, p.last_index, |id| {
                p.matched(id)
            });
            let held = point >= target && !p.v1_behind(target);
            if shared.elected.may_commit(self.epoch) {
                no_lease_since = None;
                if held {
                    drop(p);
                    self.apply_commit(shared, target);
                    return Ok(());
                }
            } else if no_lease_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                >= NO_LEASE_WAIT
            {
                return Err(WriteError::LeaseLost);
            }
            drop(shared.repl.wait(p, COMMIT_POLL));
        }
    }

    /// Every server that must hold an entry before an elected term commits
    /// it: the settled set, the pending one and one being proposed.
    fn commit_members(&self, shared: &Shared) -> MemberSet {
        if !self.elected {
            return self.in_sync;
        }
        let configs = shared.elected.configs(self.epoch);
        let mut set = MemberSet::new();
        set.insert(shared.factory_id);
        let sets = [
            configs.stable,
            configs.pending,
            self.proposed.map(|(s, _)| s),
        ];
        let mut any = false;
        for s in sets.into_iter().flatten() {
            any = true;
            for &id in s.ids() {
                set.insert(id);
            }
        }
        if !any {
            // Not published yet: the set this term began with.
            for &id in self.in_sync.ids() {
                set.insert(id);
            }
        }
        set
    }

    fn note_failed(&mut self, failed: &[i32], why: &str) {
        for &id in failed {
            if !self.to_drop.contains(&id) {
                log::warn!(
                    "peer {id}: {why}; proposing to drop it from the in-sync set (commits wait until a majority accepts)"
                );
                self.to_drop.push(id);
            }
        }
    }

    /// Members of `members` the election finds silent (cut off or paused)
    /// and not yet proposed for dropping.
    fn newly_silent(&self, shared: &Shared, members: &MemberSet) -> Vec<i32> {
        shared
            .elected
            .silent(self.epoch)
            .ids()
            .iter()
            .copied()
            .filter(|&id| members.contains(id) && !self.to_drop.contains(&id))
            .collect()
    }

    /// Proposes the next in-sync change to the election, one at a time:
    /// dropping members whose link failed, else adding `ready` backups.
    fn reconfigure(&mut self, shared: &Shared, ready: &[i32]) {
        let configs = shared.elected.configs(self.epoch);
        if let Some((set, at)) = self.proposed {
            let shown = configs.pending == Some(set) || configs.stable == Some(set);
            if shown || at.elapsed() >= PROPOSAL_WAIT {
                self.proposed = None;
            } else {
                return;
            }
        }
        let (Some(stable), None) = (configs.stable, configs.pending) else {
            return;
        };
        self.to_drop.retain(|&id| stable.contains(id));
        let mut next = stable;
        if self.to_drop.is_empty() {
            for &id in ready {
                next.insert(id);
            }
        } else {
            for id in self.to_drop.drain(..) {
                next.remove(id);
            }
        }
        if next == stable {
            return;
        }
        self.proposed = Some((next, std::time::Instant::now()));
        if let Some(service) = shared
            .election
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            service.propose_in_sync_in(self.epoch, next);
        }
    }

    /// The settled set changed since the log was told: log each member
    /// dropped or added and return the set, for an in-sync entry.
    fn newly_settled(&mut self, shared: &Shared) -> Option<MemberSet> {
        let stable = shared.elected.configs(self.epoch).stable?;
        let before = self.settled.unwrap_or(self.in_sync);
        if self.settled == Some(stable) {
            return None;
        }
        for &id in before.ids().iter().filter(|&&id| !stable.contains(id)) {
            log::warn!(
                "peer {id} dropped from the in-sync set (its link failed; a majority accepted)"
            );
        }
        for &id in stable.ids().iter().filter(|&&id| !before.contains(id)) {
            log::info!("peer {id} caught up and rejoins the in-sync set (a majority accepted)");
        }
        self.settled = Some(stable);
        (stable != self.in_sync).then_some(stable)
    }

    fn apply_commit(&mut self, shared: &Shared, target: i32) {
        let committed = {
            let mut replica = shared.replica();
            let (first, applied) = replica.commit_through_indexed(target);
            shared.records.apply(first, applied);
            replica.committed_index()
        };
        let _ = shared.durable.note_commit(committed);
        shared.repl.update(|p| p.commit = committed);
        if self.elected && !self.reported {
            // Every entry this term appended is of its epoch.
            self.reported = true;
            if let Some(service) = shared
                .election
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
            {
                service.committed(committed, self.epoch);
            }
        }
    }

    /// Idle-time upkeep: replicators for new peers, peers dropped or added
    /// to the in-sync set, and log compaction.
    pub(crate) fn maintain(&mut self, shared: &Arc<Shared>) {
        if !self.active() {
            return;
        }
        if shared.repl.lock().epoch != self.epoch {
            self.end(shared);
            return;
        }
        self.spawn_replicators(shared);
        if self.elected {
            self.maintain_elected(shared);
            return;
        }
        let (failed, ready) = {
            let mut p = shared.repl.lock();
            (p.take_failed(&self.in_sync), p.ready_to_join(&self.in_sync))
        };
        if !failed.is_empty() || !ready.is_empty() {
            let mut next = self.in_sync;
            for id in &failed {
                next.remove(*id);
                log::warn!("peer {id} dropped from the in-sync set (its link failed)");
            }
            for id in &ready {
                next.insert(*id);
                log::info!("peer {id} caught up and rejoins the in-sync set");
            }
            if let Err(e) = self.commit(
                shared,
                &mut [Entry {
                    epoch: self.epoch,
                    op: Op::InSync(Box::new(next)),
                }],
            ) {
                log::warn!("in-sync set change not committed: {e}");
            }
        }
        self.upkeep(shared);
    }

    fn upkeep(&self, shared: &Shared) {
        compaction::compact(shared);
        if let Err(e) = shared.durable.flush_commit() {
            log::error!("cannot sync the commit point: {e}");
        }
    }

    /// [`Term::maintain`] for an elected term: in-sync changes go through
    /// the election; a settled one is written to the log.
    fn maintain_elected(&mut self, shared: &Arc<Shared>) {
        let members = self.commit_members(shared);
        let (failed, mut ready) = {
            let mut p = shared.repl.lock();
            (p.take_failed(&members), p.ready_to_join(&members))
        };
        // A backup caught up by its stream but not heard by the election
        // would be dropped again at once.
        let unheard = shared.elected.silent(self.epoch);
        ready.retain(|&id| !unheard.contains(id));
        self.note_failed(&failed, "its link failed");
        let silent = self.newly_silent(shared, &members);
        self.note_failed(&silent, "it acknowledged no heartbeat for a lease period");
        self.reconfigure(shared, &ready);
        if let Some(set) = self.newly_settled(shared) {
            if let Err(e) = self.commit(
                shared,
                &mut [Entry {
                    epoch: self.epoch,
                    op: Op::InSync(Box::new(set)),
                }],
            ) {
                log::info!("the in-sync entry {:?} not committed yet: {e}", set.ids());
            }
        }
        self.upkeep(shared);
    }
}

/// What a write hears from a server that is not an established primary
/// while the election decides: the primary to forward to, or none yet.
fn not_primary(shared: &Shared) -> WriteError {
    match shared.elected.primary() {
        Some(p) if p != crate::state::NO_PRIMARY && p != shared.factory_id => {
            WriteError::NotPrimary(p)
        }
        _ => WriteError::NoPrimary,
    }
}

//! One primary term, driven by the admin thread: taking over (probe,
//! decide, take a new epoch), running a replicator per peer, committing
//! batches once every in-sync member holds them, and changing the in-sync
//! set (dropping a peer whose link failed, adding one that caught up), each
//! change being an entry of the replicated log.

use super::metrics::{Election, Fault};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::admin::WriteError;
use super::live::{self, Slot};
use super::progress::PeerProgress;
use super::{replicator, takeover, Shared};
use crate::replication::{commit_point, decide_takeover, Decision, PeerView};
use crate::state::{next_epoch, NO_PRIMARY};
use crate::wire::{Entry, Epoch, MemberSet, Op};

/// How long the admin waits between checks while a batch is replicated.
const COMMIT_POLL: Duration = Duration::from_millis(50);

/// The admin's view of its current term (none while not primary).
#[derive(Default)]
pub(crate) struct Term {
    epoch: Epoch,
    in_sync: MemberSet,
    replicators: Vec<(i32, JoinHandle<()>)>,
    /// Each peer's live link, shared with its replicator.
    slots: Vec<(i32, Arc<Slot>)>,
}

impl Term {
    pub(crate) fn active(&self) -> bool {
        self.epoch != 0
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
        self.start(shared, epoch, in_sync);
        self.commit(
            shared,
            &mut [Entry {
                epoch,
                op: Op::InSync(in_sync),
            }],
        )
        .map(drop)
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
        self.await_first_contact(shared);
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
            if self.replicators.iter().any(|(id, _)| *id == peer.id) {
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
                .stack_size(super::accept::CONNECTION_STACK)
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
        let last = self.append_and_send(shared, entries)?;
        if self.slots.is_empty() {
            self.wait_committed(shared, last)?;
            return Ok(last);
        }
        let started = std::time::Instant::now();
        let result = self.wait_committed(shared, last);
        shared
            .metrics
            .replication_wait
            .observe_duration(started.elapsed());
        result?;
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
        if let Some(set) = stamped.iter().rev().find_map(|e| match e.op {
            Op::InSync(set) => Some(set),
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
                    op: Op::InSync(smaller),
                }],
            )?;
        }
    }

    fn apply_commit(&self, shared: &Shared, target: i32) {
        let committed = {
            let mut replica = shared.replica();
            let (first, applied) = replica.commit_through_indexed(target);
            shared.records.apply(first, applied);
            replica.committed_index()
        };
        let _ = shared.durable.note_commit(committed);
        shared.repl.update(|p| p.commit = committed);
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
                    op: Op::InSync(next),
                }],
            ) {
                log::warn!("in-sync set change not committed: {e}");
            }
        }
        super::compaction::compact(shared);
        if let Err(e) = shared.durable.flush_commit() {
            log::error!("cannot sync the commit point: {e}");
        }
    }
}

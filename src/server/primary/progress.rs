//! What the primary knows of each backup's progress, shared between the
//! admin thread (which commits) and the replicator threads (one per peer,
//! which stream entries and collect acks).
//!
//! One mutex and one condition variable: replicators wait on it for new
//! entries or a new commit point, the admin waits on it for acks and for
//! peers that failed. Every change notifies all; there are few waiters.
//!
//! Lock order: never take the replica lock while holding this one (the
//! admin updates it after releasing the replica).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::wire::{Epoch, MemberSet};

/// One peer, as its replicator reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerProgress {
    pub id: i32,
    /// Highest index the peer acknowledged as durable (-1: none).
    pub matched: i32,
    /// The link is up and streaming live entries.
    pub live: bool,
    /// The peer is an original (v1) server: never an in-sync member, but
    /// waited for while live, as the original primary does.
    pub v1: bool,
    /// The link failed since the admin last looked.
    pub failed: bool,
    /// The replicator's first connection attempt is over (live or failed).
    pub settled: bool,
}

/// The primary's view of replication.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Epoch of the current primary term; 0 when this server is not primary.
    pub epoch: Epoch,
    /// Highest committed index (mirrors the replica's).
    pub commit: i32,
    /// The primary's last index (mirrors the replica's).
    pub last_index: i32,
    pub peers: Vec<PeerProgress>,
    /// Requests to send the commit point to every backup now (a backup
    /// waits for it to answer a read): replicators compare it with the
    /// count they last saw.
    pushes: u64,
    /// The epoch and commit point of the last push: asking again for a
    /// point already pushed in the same term wakes nobody (every backup
    /// read asks, and in a read-only load the point does not move).
    pushed: (Epoch, i32),
    /// Threads asleep in [`Replication::wait`]: a change wakes them only if
    /// there are some, since a wake-up is a system call even with no one to
    /// wake, and acks arrive by the tens of thousands a second.
    sleepers: usize,
}

impl Progress {
    pub(crate) fn peer_mut(&mut self, id: i32) -> Option<&mut PeerProgress> {
        self.peers.iter_mut().find(|p| p.id == id)
    }

    pub(crate) fn matched(&self, id: i32) -> i32 {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map_or(-1, |p| p.matched)
    }

    /// True once every replicator has tried its first connection.
    pub(crate) fn all_settled(&self) -> bool {
        self.peers.iter().all(|p| p.settled)
    }

    /// Live v1 peers that have not acked `index` yet.
    pub(crate) fn v1_behind(&self, index: i32) -> bool {
        self.peers
            .iter()
            .any(|p| p.v1 && p.live && p.matched < index)
    }

    /// Peers of `in_sync` whose link failed, clearing their flags.
    pub(crate) fn take_failed(&mut self, in_sync: &MemberSet) -> Vec<i32> {
        let mut failed = Vec::new();
        for p in &mut self.peers {
            if p.failed {
                p.failed = false;
                if in_sync.contains(p.id) {
                    failed.push(p.id);
                }
            }
        }
        failed
    }

    /// Live native peers, not in `in_sync`, that hold everything committed.
    pub(crate) fn ready_to_join(&self, in_sync: &MemberSet) -> Vec<i32> {
        self.peers
            .iter()
            .filter(|p| p.live && !p.v1 && !in_sync.contains(p.id) && p.matched >= self.commit)
            .map(|p| p.id)
            .collect()
    }
}

/// [`Progress`] behind its lock and condition variables.
#[derive(Default)]
pub(crate) struct Replication {
    state: Mutex<Progress>,
    /// Any change (acks, new entries, a new commit point, the term's end).
    changed: Condvar,
    /// Work for the replicators of caught-up backups: entries their
    /// committer could not send, or the term's end.
    poked: Condvar,
}

impl Replication {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the progress and wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        let mut guard = self.lock();
        let r = f(&mut guard);
        let sleepers = guard.sleepers;
        drop(guard);
        if sleepers > 0 {
            self.changed.notify_all();
        }
        r
    }

    /// Wakes every waiter (new entries, a new commit point, stopping).
    pub(crate) fn notify(&self) {
        self.changed.notify_all();
        self.poked.notify_all();
    }

    /// Wakes the replicators of caught-up backups.
    pub(crate) fn poke(&self) {
        self.poked.notify_all();
    }

    /// Asks every replicator to send commit point `point` now, unless it
    /// was asked for `point` or a later one in this term already: that
    /// push made every replicator go round once more after the point was
    /// reached, and each round sends a commit point it has not sent
    /// (`live::serve`). Counted under the lock, so that a replicator about
    /// to wait cannot miss it.
    pub(crate) fn push_commit(&self, point: i32) {
        let mut p = self.lock();
        if p.pushed.0 == p.epoch && p.pushed.1 >= point {
            return;
        }
        p.pushed = (p.epoch, point);
        p.pushes += 1;
        drop(p);
        self.poked.notify_all();
    }

    /// Waits, up to `timeout`, for a poke, unless there is already an entry
    /// at `next` to send, the term `epoch` is over, or the commit point was
    /// asked for since `pushes_seen` (which is updated).
    pub(crate) fn wait_poke(
        &self,
        epoch: Epoch,
        next: i32,
        pushes_seen: &mut u64,
        timeout: Duration,
    ) {
        let guard = self.lock();
        if guard.epoch != epoch || guard.last_index >= next || guard.pushes != *pushes_seen {
            *pushes_seen = guard.pushes;
            return;
        }
        let guard = self
            .poked
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        *pushes_seen = guard.pushes;
    }

    /// Waits for a change or `timeout`.
    pub(crate) fn wait<'a>(
        &self,
        mut guard: MutexGuard<'a, Progress>,
        timeout: Duration,
    ) -> MutexGuard<'a, Progress> {
        guard.sleepers += 1;
        let mut guard = self
            .changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        guard.sleepers -= 1;
        guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_commit_point_is_pushed_once_a_term() {
        let repl = Replication::default();
        repl.update(|p| p.epoch = 5);
        let pushes = || repl.lock().pushes;
        repl.push_commit(10);
        assert_eq!(pushes(), 1);
        repl.push_commit(10);
        repl.push_commit(9);
        assert_eq!(pushes(), 1, "a point already pushed wakes nobody");
        repl.push_commit(11);
        assert_eq!(pushes(), 2);
        repl.update(|p| p.epoch = 6);
        repl.push_commit(11);
        assert_eq!(pushes(), 3, "a new term pushes again");
    }

    #[test]
    fn an_update_wakes_a_thread_waiting_for_it() {
        let repl = Arc::new(Replication::default());
        let waiter = Arc::clone(&repl);
        let (tx, rx) = std::sync::mpsc::channel();
        // The waiter's own timeout is far beyond the test's bound below, so
        // only a wake-up from the update lets it answer in time.
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut p = waiter.lock();
            while p.commit < 7 && Instant::now() < deadline {
                p = waiter.wait(p, Duration::from_secs(60));
            }
            let _ = tx.send((p.commit, p.sleepers));
        });
        // Update only once the waiter sleeps, so that the wake-up is needed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while repl.lock().sleepers == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        repl.update(|p| p.commit = 7);
        let (commit, sleepers) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter was never woken");
        handle.join().expect("waiter thread");
        assert_eq!(commit, 7);
        assert_eq!(sleepers, 0, "a waiter that woke no longer counts");
    }

    #[test]
    fn an_update_without_sleepers_changes_the_progress() {
        let repl = Replication::default();
        repl.update(|p| p.last_index = 3);
        assert_eq!(repl.lock().last_index, 3);
        assert_eq!(repl.lock().sleepers, 0);
    }
}

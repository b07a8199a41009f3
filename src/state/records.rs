//! The committed state clients read: the customer record table
//! (`customer_id → last committed order`) and, beside it, the string store
//! of protocol v2 ([`KvStore`]) with the outcomes of its latest writes.
//!
//! Customer records are sharded behind reader-writer locks so that client
//! threads reading different customers never contend, and the admin's
//! applies block only the shard they touch, briefly. The string store is
//! one ordered map behind one reader-writer lock (a scan needs the order).
//!
//! Every server applies the same committed entries in the same order, so
//! every server computes the same outcome for a string write (a `create`
//! of a present key fails everywhere); the primary's v2 sessions read the
//! outcome of theirs by log index from [`RecordTable::kv_outcome`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use super::kv::{KvOutcome, KvStore, Versioned};
use crate::wire::{Entry, Op};

const SHARDS: usize = 64;

/// Outcomes of string writes kept for the sessions waiting on them. A
/// session reads its outcome as soon as its write commits; this many more
/// string writes would have to commit in between for it to be gone.
pub const KEPT_OUTCOMES: usize = 1 << 16;

/// Committed customer records and string keys, safe to share between
/// threads.
#[derive(Debug)]
pub struct RecordTable {
    shards: Vec<RwLock<HashMap<i32, i32>>>,
    kv: RwLock<KvStore>,
    /// `(index, outcome)` of the latest string writes, ascending.
    outcomes: Mutex<VecDeque<(i32, KvOutcome)>>,
}

impl Default for RecordTable {
    fn default() -> Self {
        RecordTable {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            kv: RwLock::default(),
            outcomes: Mutex::default(),
        }
    }
}

impl RecordTable {
    /// An empty table.
    pub fn new() -> Self {
        RecordTable::default()
    }

    fn shard(&self, customer_id: i32) -> &RwLock<HashMap<i32, i32>> {
        &self.shards[(customer_id as u32 as usize) % SHARDS]
    }

    /// The last committed order of `customer_id`, `-1` if none.
    pub fn last_order(&self, customer_id: i32) -> i32 {
        // A panic while holding a shard lock cannot leave a map half-written
        // (insert is one call), so a poisoned lock is still safe to read.
        let shard = self
            .shard(customer_id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(&customer_id).copied().unwrap_or(-1)
    }

    /// Applies committed entries in log order, `entries[0]` being the one
    /// at `first_index`: "set" entries change records, string writes the
    /// string store (at their index, which becomes the value's version).
    pub fn apply(&self, first_index: i32, entries: &[Entry]) {
        for (index, entry) in (first_index..).zip(entries) {
            match &entry.op {
                Op::Set {
                    customer_id,
                    order_number,
                } => {
                    self.shard(*customer_id)
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(*customer_id, *order_number);
                }
                Op::Kv(write) => {
                    let outcome = self.kv_write().apply(index as u64, write);
                    self.note_outcome(index, outcome);
                }
                Op::Noop | Op::InSync(_) => {}
            }
        }
    }

    fn kv_write(&self) -> std::sync::RwLockWriteGuard<'_, KvStore> {
        // KvStore::apply changes the map and its byte count together with
        // no call in between that can panic halfway, so a poisoned lock
        // still guards a consistent store.
        self.kv.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_outcome(&self, index: i32, outcome: KvOutcome) {
        let mut kept = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        // After a snapshot install or a rewritten suffix, indexes may
        // repeat: the latest apply of an index is its outcome.
        while kept.back().is_some_and(|&(i, _)| i >= index) {
            kept.pop_back();
        }
        if kept.len() == KEPT_OUTCOMES {
            kept.pop_front();
        }
        kept.push_back((index, outcome));
    }

    /// The outcome of the string write committed at `index`, if it is
    /// still kept.
    pub fn kv_outcome(&self, index: i32) -> Option<KvOutcome> {
        let kept = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.binary_search_by_key(&index, |&(i, _)| i).ok()?;
        Some(kept[at].1)
    }

    /// The string store, for reads (get, scan, memory); held briefly.
    pub fn kv(&self) -> RwLockReadGuard<'_, KvStore> {
        self.kv.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A string key's committed value and version.
    pub fn kv_get(&self, key: &[u8]) -> Option<Versioned> {
        self.kv().get(key).cloned()
    }

    /// A copy of the string store for a snapshot: the tree is copied, the
    /// records shared (see [`Versioned`]), so the lock is held only for a
    /// reference count per key.
    pub fn kv_clone(&self) -> KvStore {
        self.kv().clone()
    }

    /// Replaces the string store (installing a snapshot).
    pub fn replace_kv(&self, store: KvStore) {
        *self.kv_write() = store;
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Every record, in no particular order (for a snapshot).
    pub fn records(&self) -> Vec<(i32, i32)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            all.extend(shard.iter().map(|(&c, &o)| (c, o)));
        }
        all
    }

    /// Replaces every record with `records` (installing a snapshot).
    pub fn replace_all(&self, records: &[(i32, i32)]) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        for &(customer_id, order) in records {
            self.shard(customer_id)
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(customer_id, order);
        }
    }

    /// Number of customers with a record.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// True when no customer has a record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::kv::KvWrite;

    #[test]
    fn unknown_customer_reads_minus_one() {
        let t = RecordTable::new();
        assert_eq!(t.last_order(7), -1);
        assert!(t.is_empty());
    }

    #[test]
    fn later_sets_win_and_noops_are_skipped() {
        let t = RecordTable::new();
        let noop = Entry {
            epoch: 1,
            op: Op::Noop,
        };
        t.apply(
            0,
            &[
                Entry::set(1, 1, 5),
                Entry::set(1, 1, 6),
                noop,
                Entry::set(1, -3, 2),
            ],
        );
        assert_eq!(t.last_order(1), 6);
        assert_eq!(t.last_order(-3), 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn extreme_customer_ids() {
        let t = RecordTable::new();
        t.apply(0, &[Entry::set(0, i32::MIN, 1), Entry::set(0, i32::MAX, 2)]);
        assert_eq!(t.last_order(i32::MIN), 1);
        assert_eq!(t.last_order(i32::MAX), 2);
    }

    #[test]
    fn snapshot_out_and_in() {
        let t = RecordTable::new();
        t.apply(0, &[Entry::set(0, 1, 1), Entry::set(0, 200, 2)]);
        let mut all = t.records();
        all.sort();
        assert_eq!(all, vec![(1, 1), (200, 2)]);
        t.replace_all(&[(5, 5)]);
        assert_eq!((t.last_order(1), t.last_order(5), t.len()), (-1, 5, 1));
    }

    fn put(key: &str, value: &str) -> Entry {
        Entry::kv(1, KvWrite::put(key.as_bytes(), value.as_bytes()))
    }

    #[test]
    fn string_writes_are_versioned_by_their_index_and_outcomes_kept() {
        let t = RecordTable::new();
        let create = Entry::kv(1, KvWrite::create(b"a", b"again"));
        t.apply(10, &[put("a", "1"), Entry::set(1, 3, 3), create]);
        let a = t.kv_get(b"a").unwrap();
        assert_eq!((a.version(), a.value()), (10, &b"1"[..]));
        assert_eq!(t.last_order(3), 3);
        assert_eq!(t.kv_outcome(10), Some(KvOutcome::Written(10)));
        assert_eq!(t.kv_outcome(11), None, "a set has no string outcome");
        assert_eq!(t.kv_outcome(12), Some(KvOutcome::Exists(10)));
        // A rewritten suffix replaces the outcomes from its index on.
        t.apply(12, &[put("b", "2")]);
        assert_eq!(t.kv_outcome(12), Some(KvOutcome::Written(12)));
        assert_eq!(t.kv_outcome(10), Some(KvOutcome::Written(10)));
    }

    #[test]
    fn outcomes_are_bounded() {
        let t = RecordTable::new();
        let writes: Vec<Entry> = (0..KEPT_OUTCOMES + 3).map(|_| put("k", "v")).collect();
        t.apply(0, &writes);
        assert_eq!(t.kv_outcome(2), None);
        assert_eq!(t.kv_outcome(3), Some(KvOutcome::Written(3)));
        assert!(t.outcomes.lock().unwrap().len() <= KEPT_OUTCOMES);
    }

    #[test]
    fn replacing_the_string_store_drops_the_old_keys_and_outcomes() {
        let t = RecordTable::new();
        t.apply(0, &[put("old", "x")]);
        let mut store = KvStore::new();
        store.restore(Versioned::new(7, b"new", b"y"));
        t.replace_kv(store);
        assert!(t.kv_get(b"old").is_none());
        assert_eq!(t.kv_get(b"new").unwrap().version(), 7);
        assert_eq!(t.kv_outcome(0), None);
    }
}

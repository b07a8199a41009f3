//! The customer record table: `customer_id → last committed order`.
//!
//! Sharded behind reader-writer locks so that client threads reading
//! different customers never contend, and the admin's applies block only the
//! shard they touch, briefly.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::wire::{Entry, Op};

const SHARDS: usize = 64;

/// Committed customer records, safe to share between threads.
#[derive(Debug)]
pub struct RecordTable {
    shards: Vec<RwLock<HashMap<i32, i32>>>,
}

impl Default for RecordTable {
    fn default() -> Self {
        RecordTable {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
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

    /// Applies committed entries in log order; only "set" entries change
    /// records.
    pub fn apply(&self, entries: &[Entry]) {
        for entry in entries {
            if let Op::Set {
                customer_id,
                order_number,
            } = entry.op
            {
                self.shard(customer_id)
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(customer_id, order_number);
            }
        }
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
        t.apply(&[
            Entry::set(1, 1, 5),
            Entry::set(1, 1, 6),
            noop,
            Entry::set(1, -3, 2),
        ]);
        assert_eq!(t.last_order(1), 6);
        assert_eq!(t.last_order(-3), 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn extreme_customer_ids() {
        let t = RecordTable::new();
        t.apply(&[Entry::set(0, i32::MIN, 1), Entry::set(0, i32::MAX, 2)]);
        assert_eq!(t.last_order(i32::MIN), 1);
        assert_eq!(t.last_order(i32::MAX), 2);
    }

    #[test]
    fn snapshot_out_and_in() {
        let t = RecordTable::new();
        t.apply(&[Entry::set(0, 1, 1), Entry::set(0, 200, 2)]);
        let mut all = t.records();
        all.sort();
        assert_eq!(all, vec![(1, 1), (200, 2)]);
        t.replace_all(&[(5, 5)]);
        assert_eq!((t.last_order(1), t.last_order(5), t.len()), (-1, 5, 1));
    }
}

//! The customer record table: `customer_id → last committed order`.
//!
//! Sharded behind reader-writer locks so that client threads reading
//! different customers never contend, and the admin's applies block only the
//! shard they touch, briefly.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::wire::MapOp;

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

    /// Applies committed ops in log order; ops other than "set" are no-ops.
    pub fn apply(&self, ops: &[MapOp]) {
        for (customer_id, order) in ops.iter().filter_map(MapOp::as_set) {
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
        let noop = MapOp {
            opcode: 0,
            arg1: 1,
            arg2: 99,
        };
        t.apply(&[MapOp::set(1, 5), MapOp::set(1, 6), noop, MapOp::set(-3, 2)]);
        assert_eq!(t.last_order(1), 6);
        assert_eq!(t.last_order(-3), 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn extreme_customer_ids() {
        let t = RecordTable::new();
        t.apply(&[MapOp::set(i32::MIN, 1), MapOp::set(i32::MAX, 2)]);
        assert_eq!(t.last_order(i32::MIN), 1);
        assert_eq!(t.last_order(i32::MAX), 2);
    }
}

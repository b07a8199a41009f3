//! The state-machine log: ops at indexes `0..=last_index`.

use crate::wire::MapOp;

/// An in-memory log of ops. Index `-1` means "empty", as in the original.
#[derive(Debug, Default, Clone)]
pub struct Log {
    entries: Vec<MapOp>,
}

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Log::default()
    }

    /// Index of the last entry, `-1` when empty.
    pub fn last_index(&self) -> i32 {
        // The log never grows past i32::MAX entries (see `can_grow_to`).
        self.entries.len() as i32 - 1
    }

    /// True when an entry at `index` would still be addressable by an i32.
    pub fn can_grow_to(index: i32) -> bool {
        (0..i32::MAX).contains(&index)
    }

    /// The entry at `index`, if present.
    pub fn get(&self, index: i32) -> Option<&MapOp> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Appends `op` and returns its index, or `None` if the log is full.
    pub fn append(&mut self, op: MapOp) -> Option<i32> {
        let index = self.last_index() + 1;
        if !Self::can_grow_to(index) {
            return None;
        }
        self.entries.push(op);
        Some(index)
    }

    /// Makes `op` the entry at `index` and the last one: later entries are
    /// dropped, missing ones before it are filled with no-ops.
    ///
    /// The caller bounds how far past the end `index` may be.
    pub(crate) fn store_last(&mut self, index: usize, op: MapOp) {
        self.entries.resize(index, MapOp::default());
        self.entries.push(op);
    }

    /// The entries `from..=to`, clamped to what exists.
    pub fn range(&self, from: i32, to: i32) -> &[MapOp] {
        let start = from.max(0) as usize;
        let end = (to.saturating_add(1)).max(0) as usize;
        let end = end.min(self.entries.len());
        if start >= end {
            &[]
        } else {
            &self.entries[start..end]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_empty_at_minus_one() {
        let log = Log::new();
        assert_eq!(log.last_index(), -1);
        assert!(log.get(0).is_none());
        assert!(log.get(-1).is_none());
    }

    #[test]
    fn append_numbers_from_zero() {
        let mut log = Log::new();
        assert_eq!(log.append(MapOp::set(1, 1)), Some(0));
        assert_eq!(log.append(MapOp::set(1, 2)), Some(1));
        assert_eq!(log.last_index(), 1);
        assert_eq!(log.get(1), Some(&MapOp::set(1, 2)));
    }

    #[test]
    fn range_is_inclusive_and_clamped() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(MapOp::set(i, i));
        }
        assert_eq!(log.range(1, 2), &[MapOp::set(1, 1), MapOp::set(2, 2)]);
        assert_eq!(log.range(-1, 0), &[MapOp::set(0, 0)]);
        assert_eq!(log.range(3, 100).len(), 2);
        assert!(log.range(4, 3).is_empty());
        assert!(log.range(i32::MAX, i32::MAX).is_empty());
        assert!(log.range(i32::MIN, -1).is_empty());
    }

    #[test]
    fn store_last_truncates_or_fills() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(MapOp::set(i, i));
        }
        log.store_last(2, MapOp::set(9, 9));
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.get(2), Some(&MapOp::set(9, 9)));
        log.store_last(5, MapOp::set(8, 8));
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.get(4), Some(&MapOp::default()));
    }
}

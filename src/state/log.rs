//! The state-machine log: entries at indexes `first_index..=last_index`.
//!
//! Entries before `first_index` were compacted into a snapshot; the log
//! remembers the epoch of the last compacted entry so that a backup's
//! position can still be checked against it.

use crate::wire::{Entry, Epoch};

/// An in-memory log. Index `-1` means "empty", as in the original.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Index of `entries[0]`.
    first_index: i32,
    /// Epoch of the entry at `first_index - 1` (0 when there is none).
    base_epoch: Epoch,
    entries: Vec<Entry>,
    /// Encoded bytes of `entries` (string writes make entries of any size,
    /// so compaction bounds the log by bytes as well as by count).
    bytes: usize,
}

fn bytes_of(entries: &[Entry]) -> usize {
    entries.iter().map(Entry::encoded_len).sum()
}

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Log::default()
    }

    /// An empty log that continues after a snapshot ending at `last_index`.
    pub fn after_snapshot(last_index: i32, last_epoch: Epoch) -> Self {
        Log {
            first_index: last_index + 1,
            base_epoch: last_epoch,
            entries: Vec::new(),
            bytes: 0,
        }
    }

    /// Encoded bytes of the entries held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Index of the first entry still held.
    pub fn first_index(&self) -> i32 {
        self.first_index
    }

    /// Index of the last entry, `-1` when empty.
    pub fn last_index(&self) -> i32 {
        // The log never grows past i32::MAX entries (see `can_grow_to`).
        self.first_index + self.entries.len() as i32 - 1
    }

    /// Epoch of the last entry (or of the snapshot's last entry), 0 if none.
    pub fn last_epoch(&self) -> Epoch {
        self.entries.last().map_or(self.base_epoch, |e| e.epoch)
    }

    /// The epoch of the entry at `index`, if the log can tell: held entries,
    /// the snapshot's last entry, and `-1` ("before everything", epoch 0).
    pub fn epoch_at(&self, index: i32) -> Option<Epoch> {
        if index == self.first_index - 1 {
            return Some(if index < 0 { 0 } else { self.base_epoch });
        }
        self.get(index).map(|e| e.epoch)
    }

    /// True when an entry at `index` would still be addressable by an i32.
    pub fn can_grow_to(index: i32) -> bool {
        (0..i32::MAX).contains(&index)
    }

    fn slot(&self, index: i32) -> Option<usize> {
        let offset = i64::from(index) - i64::from(self.first_index);
        usize::try_from(offset).ok()
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: i32) -> Option<&Entry> {
        self.slot(index).and_then(|i| self.entries.get(i))
    }

    /// Appends `entry` and returns its index, or `None` if the log is full.
    pub fn append(&mut self, entry: Entry) -> Option<i32> {
        let index = self.last_index() + 1;
        if !Self::can_grow_to(index) {
            return None;
        }
        self.bytes += entry.encoded_len();
        self.entries.push(entry);
        Some(index)
    }

    /// Drops the entries at `index` and after (never compacted ones).
    pub fn truncate_from(&mut self, index: i32) {
        if let Some(keep) = self.slot(index.max(self.first_index)) {
            if keep < self.entries.len() {
                self.bytes -= bytes_of(&self.entries[keep..]);
                self.entries.truncate(keep);
            }
        }
    }

    /// Makes `entry` the entry at `index` and the last one: later entries
    /// are dropped, missing ones before it filled with `filler`. The caller
    /// bounds how far past the end `index` may be; an index before the
    /// compacted part is ignored.
    pub(crate) fn store_last(&mut self, index: i32, entry: Entry, filler: Entry) {
        let Some(at) = self.slot(index) else {
            return;
        };
        if at < self.entries.len() {
            self.bytes -= bytes_of(&self.entries[at..]);
        } else {
            self.bytes += (at - self.entries.len()) * filler.encoded_len();
        }
        self.entries.resize(at, filler);
        self.bytes += entry.encoded_len();
        self.entries.push(entry);
    }

    /// The entries `from..=to`, clamped to what is held.
    pub fn range(&self, from: i32, to: i32) -> &[Entry] {
        let start = self.slot(from.max(self.first_index)).unwrap_or(0);
        let end = self
            .slot(to.saturating_add(1).max(self.first_index))
            .unwrap_or(0);
        let end = end.min(self.entries.len());
        if start >= end {
            &[]
        } else {
            &self.entries[start..end]
        }
    }

    /// Forgets entries up to and including `index` (they are in a snapshot).
    pub fn compact_through(&mut self, index: i32) {
        if index < self.first_index {
            return;
        }
        let index = index.min(self.last_index());
        let Some(epoch) = self.epoch_at(index) else {
            return;
        };
        let drop = (index - self.first_index + 1) as usize;
        self.bytes -= bytes_of(&self.entries[..drop]);
        self.entries.drain(..drop);
        self.first_index = index + 1;
        self.base_epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Op;

    fn set(i: i32) -> Entry {
        Entry::set(1, i, i)
    }

    const NOOP: Entry = Entry {
        epoch: 0,
        op: Op::Noop,
    };

    #[test]
    fn starts_empty_at_minus_one() {
        let log = Log::new();
        assert_eq!(log.last_index(), -1);
        assert_eq!((log.first_index(), log.last_epoch()), (0, 0));
        assert!(log.get(0).is_none());
        assert!(log.get(-1).is_none());
        assert_eq!(log.epoch_at(-1), Some(0));
        assert_eq!(log.epoch_at(0), None);
    }

    #[test]
    fn append_numbers_from_zero() {
        let mut log = Log::new();
        assert_eq!(log.append(set(1)), Some(0));
        assert_eq!(log.append(Entry::set(2, 1, 2)), Some(1));
        assert_eq!(log.last_index(), 1);
        assert_eq!(log.last_epoch(), 2);
        assert_eq!(log.epoch_at(0), Some(1));
    }

    #[test]
    fn range_is_inclusive_and_clamped() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(set(i));
        }
        assert_eq!(log.range(1, 2), &[set(1), set(2)]);
        assert_eq!(log.range(-1, 0), &[set(0)]);
        assert_eq!(log.range(3, 100).len(), 2);
        assert!(log.range(4, 3).is_empty());
        assert!(log.range(i32::MAX, i32::MAX).is_empty());
        assert!(log.range(i32::MIN, -1).is_empty());
    }

    #[test]
    fn store_last_truncates_or_fills() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(set(i));
        }
        log.store_last(2, set(9), NOOP);
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.get(2), Some(&set(9)));
        log.store_last(5, set(8), NOOP);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.get(4), Some(&NOOP));
    }

    #[test]
    fn truncate_drops_a_suffix() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(set(i));
        }
        log.truncate_from(3);
        assert_eq!(log.last_index(), 2);
        log.truncate_from(10);
        assert_eq!(log.last_index(), 2);
    }

    #[test]
    fn compaction_keeps_indexes_and_the_base_epoch() {
        let mut log = Log::new();
        for i in 0..5 {
            log.append(Entry::set(i as u64 + 1, i, i));
        }
        log.compact_through(2);
        assert_eq!((log.first_index(), log.last_index()), (3, 4));
        assert_eq!(log.epoch_at(2), Some(3), "the snapshot's last epoch");
        assert_eq!(log.epoch_at(1), None, "compacted away");
        assert_eq!(log.get(3).map(|e| e.epoch), Some(4));
        assert_eq!(log.range(0, 10).len(), 2);
        log.truncate_from(0);
        assert_eq!(log.last_index(), 2, "compacted entries are never truncated");
        assert_eq!(log.last_epoch(), 3);
        log.compact_through(2);
        assert_eq!(log.first_index(), 3);
    }

    #[test]
    fn a_log_after_a_snapshot_continues_its_numbering() {
        let mut log = Log::after_snapshot(9, 4);
        assert_eq!((log.last_index(), log.last_epoch()), (9, 4));
        assert_eq!(log.append(set(0)), Some(10));
        assert_eq!(log.epoch_at(9), Some(4));
    }

    #[test]
    fn bytes_follow_every_change() {
        let big = Entry::kv(1, crate::state::kv::KvWrite::put(b"k", &vec![0; 1000]));
        let mut log = Log::new();
        let check = |log: &Log| {
            let held = log.range(log.first_index(), log.last_index());
            assert_eq!(
                log.bytes(),
                held.iter().map(Entry::encoded_len).sum::<usize>()
            );
        };
        for _ in 0..3 {
            log.append(big.clone());
            log.append(set(1));
        }
        check(&log);
        assert!(log.bytes() > 3000);
        log.truncate_from(4);
        check(&log);
        log.store_last(6, big.clone(), NOOP);
        check(&log);
        log.store_last(2, set(2), NOOP);
        check(&log);
        log.compact_through(1);
        check(&log);
        assert_eq!(log.bytes(), set(2).encoded_len());
    }
}

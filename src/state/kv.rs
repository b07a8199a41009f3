//! The string store: binary keys mapped to versioned values, in key order,
//! and the rules that apply a v2 write to it.
//!
//! Writes reach it only through the log: the primary appends an operation,
//! and every server applies the committed entry at its index, so the same
//! log gives the same store and the same outcome everywhere (a `create` of
//! an existing key fails on every server alike). A value's version is the
//! index of the entry that wrote it. Reads (`get`, `scan`) are plain
//! lookups. No I/O and no locks here; the server holds this behind its own
//! lock, as it does the customer records.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::versioned::ByKey;
pub use super::versioned::Versioned;
use crate::wire::kv::{KvItem, Version, NO_VERSION};

/// Bytes a key costs beyond its own and its value's: the record's header
/// and reference counts, the allocator's rounding and the tree slot's
/// share, used for `--max-memory` accounting. An estimate, kept in one
/// place.
pub const ENTRY_OVERHEAD: usize = 64;

/// What a string write does, apart from its key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Set, whether or not the key exists.
    Put,
    /// Set only if absent.
    Create,
    /// Set only if present.
    Update,
    /// Remove.
    Delete,
    /// Set only if the version is `expected` ([`NO_VERSION`]: absent).
    Cas { expected: Version },
}

/// A write as the log carries it: its kind and the record it stores if
/// it succeeds (for a delete, the key with an empty value). Cloning it
/// shares the record, and applying it stores that same record, so the
/// log's copy of a key and value is the store's (see [`Versioned`]).
/// Equality compares kind, key and value.
#[derive(Clone, Debug)]
pub struct KvWrite {
    kind: WriteKind,
    record: Versioned,
}

impl PartialEq for KvWrite {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.key() == other.key() && self.value() == other.value()
    }
}

impl Eq for KvWrite {}

impl KvWrite {
    /// A write of `kind`. `key` is at most `u16::MAX` bytes (callers check
    /// their limits first); a delete's `value` is ignored.
    pub fn new(kind: WriteKind, key: &[u8], value: &[u8]) -> Self {
        let value = if kind == WriteKind::Delete {
            &[][..]
        } else {
            value
        };
        KvWrite {
            kind,
            record: Versioned::unstamped(key, value),
        }
    }

    /// `put` of `value` at `key`.
    pub fn put(key: &[u8], value: &[u8]) -> Self {
        KvWrite::new(WriteKind::Put, key, value)
    }

    /// `create` of `key` with `value`.
    pub fn create(key: &[u8], value: &[u8]) -> Self {
        KvWrite::new(WriteKind::Create, key, value)
    }

    /// `update` of `key` to `value`.
    pub fn update(key: &[u8], value: &[u8]) -> Self {
        KvWrite::new(WriteKind::Update, key, value)
    }

    /// `delete` of `key`.
    pub fn delete(key: &[u8]) -> Self {
        KvWrite::new(WriteKind::Delete, key, &[])
    }

    /// `cas` of `key` to `value` if its version is `expected`.
    pub fn cas(key: &[u8], expected: Version, value: &[u8]) -> Self {
        KvWrite::new(WriteKind::Cas { expected }, key, value)
    }

    /// What the write does.
    pub fn kind(&self) -> WriteKind {
        self.kind
    }

    /// The key the write is about.
    pub fn key(&self) -> &[u8] {
        self.record.key()
    }

    /// The value it sets (empty for a delete).
    pub fn value(&self) -> &[u8] {
        self.record.value()
    }

    /// True when both carry the same record (a clone does).
    #[cfg(test)]
    pub(crate) fn shares(&self, other: &KvWrite) -> bool {
        self.record.shares(&other.record)
    }

    /// The record this write stores when applied at `index`.
    fn record_at(&self, index: Version) -> Versioned {
        self.record.stamped(index)
    }
}

/// What applying a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOutcome {
    /// The key now holds the write's value, at this version.
    Written(Version),
    /// The key was removed by the entry at this index.
    Deleted(Version),
    /// `update` or `delete` of an absent key: nothing changed.
    NotFound,
    /// `create` of a present key, which has this version: nothing changed.
    Exists(Version),
    /// `cas` whose expected version is not the key's (this one, or
    /// [`NO_VERSION`] when absent): nothing changed.
    Mismatch(Version),
}

/// The ordered set of string keys' records. A clone shares every record
/// (see [`Versioned`]): what a snapshot takes under the lock.
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    set: BTreeSet<ByKey>,
    bytes: usize,
}

impl PartialEq for KvStore {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.iter().eq(other.iter())
    }
}

impl Eq for KvStore {}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        KvStore::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Estimated memory the keys and values take (see [`ENTRY_OVERHEAD`]).
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes `write` would add to [`Self::memory_bytes`] if it succeeded
    /// (0 for a delete), so the primary can refuse it before logging it.
    pub fn growth(&self, write: &KvWrite) -> usize {
        if write.kind() == WriteKind::Delete {
            return 0;
        }
        match self.get(write.key()) {
            Some(old) => write.value().len().saturating_sub(old.value().len()),
            None => cost(write.key(), write.value()),
        }
    }

    /// The key's record: value and version.
    pub fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.set.get(key).map(|r| &r.0)
    }

    /// Applies the committed `write` of the entry at `index`.
    pub fn apply(&mut self, index: Version, write: &KvWrite) -> KvOutcome {
        let key = write.key();
        match write.kind() {
            // One walk down the tree whether or not the key is present,
            // which is what most writes of a working set do.
            WriteKind::Put => self.store(index, write),
            WriteKind::Create => match self.version_of(key) {
                Some(version) => KvOutcome::Exists(version),
                None => self.store(index, write),
            },
            WriteKind::Update => match self.version_of(key) {
                Some(_) => self.store(index, write),
                None => KvOutcome::NotFound,
            },
            WriteKind::Delete => match self.set.take(key) {
                Some(old) => {
                    self.bytes -= record_cost(&old.0);
                    KvOutcome::Deleted(index)
                }
                None => KvOutcome::NotFound,
            },
            WriteKind::Cas { expected } => match self.version_of(key) {
                Some(version) if version == expected => self.store(index, write),
                Some(version) => KvOutcome::Mismatch(version),
                None if expected == NO_VERSION => self.store(index, write),
                None => KvOutcome::Mismatch(NO_VERSION),
            },
        }
    }

    fn version_of(&self, key: &[u8]) -> Option<Version> {
        self.get(key).map(Versioned::version)
    }

    /// Stores the record of `write`, applied at `index`, whether or not
    /// its key was present.
    fn store(&mut self, index: Version, write: &KvWrite) -> KvOutcome {
        self.restore(write.record_at(index));
        KvOutcome::Written(index)
    }

    /// Stores `record`, replacing the key's earlier one, and counts it: a
    /// write being applied, or a record read from a snapshot.
    pub fn restore(&mut self, record: Versioned) {
        self.bytes += record_cost(&record);
        if let Some(old) = self.set.replace(ByKey(record)) {
            self.bytes -= record_cost(&old.0);
        }
    }

    /// Up to `limit` keys from `start` (inclusive) in byte order, stopping
    /// before the items' encoded size would pass `byte_budget` (always at
    /// least one item when any is left); and whether more keys follow.
    pub fn scan(
        &self,
        start: &[u8],
        limit: usize,
        byte_budget: usize,
        item_len: impl Fn(&KvItem) -> usize,
    ) -> (Vec<KvItem>, bool) {
        let mut items = Vec::new();
        let mut used = 0;
        for (key, v) in self.iter_from(start) {
            if items.len() == limit {
                return (items, true);
            }
            let item = KvItem {
                key: key.to_vec(),
                version: v.version(),
                value: v.value().to_vec(),
            };
            used += item_len(&item);
            if used > byte_budget && !items.is_empty() {
                return (items, true);
            }
            items.push(item);
        }
        (items, false)
    }

    fn iter_from<'a>(
        &'a self,
        start: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a Versioned)> + 'a {
        self.set
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .map(|r| (r.0.key(), &r.0))
    }

    /// Every key in order, for snapshots.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Versioned)> {
        self.set.iter().map(|r| (r.0.key(), &r.0))
    }
}

fn record_cost(record: &Versioned) -> usize {
    cost(record.key(), record.value())
}

fn cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::kv::KvResponse;

    fn put(key: &str, value: &str) -> KvWrite {
        KvWrite::put(key.as_bytes(), value.as_bytes())
    }

    fn value_of(store: &KvStore, key: &str) -> Option<(Version, String)> {
        store
            .get(key.as_bytes())
            .map(|v| (v.version(), String::from_utf8(v.value().to_vec()).unwrap()))
    }

    #[test]
    fn put_sets_and_versions_are_log_indexes() {
        let mut s = KvStore::new();
        assert_eq!(s.apply(4, &put("a", "1")), KvOutcome::Written(4));
        assert_eq!(s.apply(9, &put("a", "2")), KvOutcome::Written(9));
        assert_eq!(value_of(&s, "a"), Some((9, "2".into())));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn create_only_when_absent() {
        let mut s = KvStore::new();
        let create = |v: &str| KvWrite::create(b"k", v.as_bytes());
        assert_eq!(s.apply(1, &create("first")), KvOutcome::Written(1));
        assert_eq!(s.apply(2, &create("second")), KvOutcome::Exists(1));
        assert_eq!(value_of(&s, "k"), Some((1, "first".into())));
    }

    #[test]
    fn update_and_delete_only_when_present() {
        let mut s = KvStore::new();
        let update = KvWrite::update(b"k", b"v");
        let delete = KvWrite::delete(b"k");
        assert_eq!(s.apply(1, &update), KvOutcome::NotFound);
        assert_eq!(s.apply(2, &delete), KvOutcome::NotFound);
        assert!(s.is_empty());
        s.apply(3, &put("k", "x"));
        assert_eq!(s.apply(4, &update), KvOutcome::Written(4));
        assert_eq!(s.apply(5, &delete), KvOutcome::Deleted(5));
        assert_eq!(s.get(b"k"), None);
        assert_eq!(s.memory_bytes(), 0, "a deleted key frees its bytes");
    }

    #[test]
    fn cas_compares_the_version() {
        let mut s = KvStore::new();
        let cas = |expected, v: &str| KvWrite::cas(b"k", expected, v.as_bytes());
        assert_eq!(s.apply(1, &cas(7, "x")), KvOutcome::Mismatch(NO_VERSION));
        assert_eq!(s.apply(2, &cas(NO_VERSION, "a")), KvOutcome::Written(2));
        assert_eq!(s.apply(3, &cas(NO_VERSION, "b")), KvOutcome::Mismatch(2));
        assert_eq!(s.apply(4, &cas(1, "stale")), KvOutcome::Mismatch(2));
        assert_eq!(s.apply(5, &cas(2, "c")), KvOutcome::Written(5));
        assert_eq!(value_of(&s, "k"), Some((5, "c".into())));
    }

    #[test]
    fn binary_keys_are_ordered_bytewise() {
        let mut s = KvStore::new();
        for (i, key) in [&b"\xff"[..], b"", b"a\0", b"a", b"\0"].iter().enumerate() {
            s.apply(i as u64, &KvWrite::put(key, b""));
        }
        let (items, more) = s.scan(b"", 10, usize::MAX, KvResponse::item_len);
        let keys: Vec<&[u8]> = items.iter().map(|i| i.key.as_slice()).collect();
        assert_eq!(keys, [&b""[..], b"\0", b"a", b"a\0", b"\xff"]);
        assert!(!more);
    }

    #[test]
    fn scan_starts_at_the_key_and_stops_at_the_limit_or_budget() {
        let mut s = KvStore::new();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            s.apply(i as u64, &put(key, "0123456789"));
        }
        let (items, more) = s.scan(b"b", 2, usize::MAX, KvResponse::item_len);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].key, b"b");
        assert!(more);
        let (items, more) = s.scan(b"bb", 10, usize::MAX, KvResponse::item_len);
        assert_eq!(
            items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
            [b"c", b"d"]
        );
        assert!(!more);
        // One item is 2 + 1 + 8 + 4 + 10 = 25 bytes: a 60-byte budget holds two.
        let (items, more) = s.scan(b"", 10, 60, KvResponse::item_len);
        assert_eq!((items.len(), more), (2, true));
        // An item larger than the budget still comes alone, so a scan always progresses.
        let (items, more) = s.scan(b"", 10, 1, KvResponse::item_len);
        assert_eq!((items.len(), more), (1, true));
    }

    #[test]
    fn memory_is_accounted_on_every_change() {
        let mut s = KvStore::new();
        let w = put("key", "value");
        assert_eq!(s.growth(&w), 3 + 5 + ENTRY_OVERHEAD);
        s.apply(1, &w);
        assert_eq!(s.memory_bytes(), 3 + 5 + ENTRY_OVERHEAD);
        assert_eq!(s.growth(&put("key", "longer value")), 7);
        s.apply(2, &put("key", "v"));
        assert_eq!(s.memory_bytes(), 3 + 1 + ENTRY_OVERHEAD);
        assert_eq!(s.growth(&KvWrite::delete(b"key")), 0);
    }

    #[test]
    fn restore_rebuilds_what_iter_gave() {
        let mut s = KvStore::new();
        s.apply(1, &put("a", "1"));
        s.apply(2, &put("b", "2"));
        let mut copy = KvStore::new();
        for (_, v) in s.iter() {
            copy.restore(v.clone());
        }
        assert_eq!(copy.memory_bytes(), s.memory_bytes());
        assert_eq!(
            copy.iter().collect::<Vec<_>>(),
            s.iter().collect::<Vec<_>>()
        );
    }
}

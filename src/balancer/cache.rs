//! A least-recently-used cache of bounded size, without I/O or locks: the
//! balancer's read cache (issue 16.3) keeps `customer_id → last order` in
//! one behind its own lock. Capacity 0 disables it: nothing is kept.
//!
//! Each entry carries the tick of its last use; a `BTreeMap` from tick to
//! key gives the least recently used one in O(log n).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// An LRU map of at most `capacity` entries.
#[derive(Clone, Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, u64)>,
    by_use: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty cache holding at most `capacity` entries (0: none).
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// False for a cache of capacity 0, which never holds anything.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let tick = self.next_tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, key.clone());
        Some(value.clone())
    }

    /// The value of `key` without counting it as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Sets `key` to `value` as the most recently used entry, evicting the
    /// least recently used one when full. Returns the key evicted, if any.
    pub fn put(&mut self, key: K, value: V) -> Option<K> {
        if self.capacity == 0 {
            return None;
        }
        let tick = self.next_tick();
        if let Some((old, used)) = self.entries.get_mut(&key) {
            *old = value;
            self.by_use.remove(used);
            *used = tick;
            self.by_use.insert(tick, key);
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.evict_oldest()
        } else {
            None
        };
        self.entries.insert(key.clone(), (value, tick));
        self.by_use.insert(tick, key);
        evicted
    }

    /// Forgets `key`; returns its value if it was held.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, used) = self.entries.remove(key)?;
        self.by_use.remove(&used);
        Some(value)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_use.clear();
    }

    /// The keys from least to most recently used.
    pub fn keys_by_age(&self) -> Vec<K> {
        self.by_use.values().cloned().collect()
    }

    fn evict_oldest(&mut self) -> Option<K> {
        let (_, key) = self.by_use.pop_first()?;
        self.entries.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_evicts_the_least_recently_used() {
        let mut lru = Lru::new(3);
        for k in 1..=3 {
            assert_eq!(lru.put(k, k * 10), None);
        }
        assert_eq!(lru.keys_by_age(), [1, 2, 3]);
        assert_eq!(lru.get(&1), Some(10), "1 becomes the most recent");
        assert_eq!(lru.put(4, 40), Some(2), "2 is now the oldest");
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get(&2), None);
        assert_eq!(lru.keys_by_age(), [3, 1, 4]);
        assert_eq!(lru.put(3, 31), None, "an update evicts nothing");
        assert_eq!(lru.keys_by_age(), [1, 4, 3]);
        assert_eq!(lru.put(5, 50), Some(1));
        assert_eq!(lru.keys_by_age(), [4, 3, 5]);
        assert_eq!(lru.peek(&3), Some(&31));
        assert_eq!(lru.keys_by_age(), [4, 3, 5], "peek is not a use");
    }

    #[test]
    fn a_miss_changes_nothing() {
        let mut lru = Lru::new(2);
        lru.put(1, 1);
        lru.put(2, 2);
        assert_eq!(lru.get(&9), None);
        assert_eq!(lru.keys_by_age(), [1, 2]);
    }

    #[test]
    fn remove_and_clear() {
        let mut lru = Lru::new(2);
        lru.put(1, 1);
        lru.put(2, 2);
        assert_eq!(lru.remove(&1), Some(1));
        assert_eq!(lru.remove(&1), None);
        assert_eq!(lru.put(3, 3), None, "room was made by the removal");
        assert_eq!(lru.keys_by_age(), [2, 3]);
        lru.clear();
        assert!(lru.is_empty());
        assert_eq!(lru.get(&2), None);
    }

    #[test]
    fn capacity_zero_holds_nothing() {
        let mut lru = Lru::new(0);
        assert!(!lru.is_enabled());
        assert_eq!(lru.put(1, 1), None);
        assert_eq!(lru.get(&1), None);
        assert!(lru.is_empty());
    }

    #[test]
    fn capacity_one() {
        let mut lru = Lru::new(1);
        lru.put("a", 1);
        assert_eq!(lru.put("b", 2), Some("a"));
        assert_eq!(lru.get(&"a"), None);
        assert_eq!(lru.get(&"b"), Some(2));
    }

    #[test]
    fn never_exceeds_capacity_under_a_long_mixed_run() {
        // A model: a Vec kept from least to most recently used.
        let mut lru = Lru::new(5);
        let mut model: Vec<(u32, u32)> = Vec::new();
        let mut x: u32 = 12345;
        for step in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = (x >> 16) % 9;
            if x.is_multiple_of(3) {
                let got = lru.get(&key);
                let at = model.iter().position(|(k, _)| *k == key);
                assert_eq!(got, at.map(|i| model[i].1), "step {step}");
                if let Some(i) = at {
                    let e = model.remove(i);
                    model.push(e);
                }
            } else {
                lru.put(key, step);
                if let Some(i) = model.iter().position(|(k, _)| *k == key) {
                    model.remove(i);
                } else if model.len() == 5 {
                    model.remove(0);
                }
                model.push((key, step));
            }
            assert!(lru.len() <= 5);
            let keys: Vec<u32> = model.iter().map(|(k, _)| *k).collect();
            assert_eq!(lru.keys_by_age(), keys, "step {step}");
        }
    }
}

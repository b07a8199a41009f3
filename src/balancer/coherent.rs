//! The read cache's rules (issue 16.3), pure: the [`Lru`] of customers'
//! last orders, the log index through which the primary's commit stream
//! has been applied to it, and when a value read from a server (or written
//! through this balancer) may enter it. `observer` drives it from the
//! stream and `proxy` asks it for hits, each behind one lock.
//!
//! Invariant: while the cache is live, the value cached for a customer is
//! its record as of a committed log prefix at or after `applied` (the
//! stream moves every cached record forward with each entry), or as of a
//! later committed prefix (a fill answered by a server ahead of the
//! stream, overwritten by the stream's later entries in log order). So a
//! hit served once `applied` reaches a commit point confirmed after the
//! read began returns a committed record no older than that point.
//!
//! A fill (a miss's answer, an acknowledged write) is kept only when no
//! entry for that customer was applied since its request was sent, and no
//! reset happened: otherwise the server's answer may predate that entry,
//! which the stream will not send again.

use std::collections::HashMap;

use super::cache::Lru;
use crate::wire::{Entry, Op};

/// A cached record: the last order and the log index it is known at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cached {
    /// The customer's last order (-1: none).
    pub order: i32,
    /// The stream's applied index when it was set.
    pub index: i32,
}

/// A fill begun: the state it was begun in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    customer: i32,
    generation: u64,
    applied: i32,
}

/// Counters of the cache, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads looked up and sent to a server.
    pub misses: u64,
    /// Cached records changed by a commit from the stream, plus records
    /// dropped by a reset.
    pub invalidations: u64,
}

/// The stream skipped entries: the cache must start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The index the cache expected next.
    pub expected: i32,
    /// The index the stream sent.
    pub got: i32,
}

/// Fills in flight for one customer.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    count: u32,
    /// Index of the last entry for this customer applied meanwhile.
    touched: i32,
}

/// The coherent read cache.
#[derive(Debug)]
pub struct CoherentCache {
    lru: Lru<i32, Cached>,
    /// A stream is being applied (after its start, before its loss).
    live: bool,
    /// Every committed entry through it has been applied.
    applied: i32,
    /// Bumped by every start and loss: fills and confirmations of an
    /// earlier generation are void.
    generation: u64,
    in_flight: HashMap<i32, InFlight>,
    counts: CacheCounts,
}

impl CoherentCache {
    /// An empty, not yet live cache of `capacity` records (0: disabled).
    pub fn new(capacity: usize) -> Self {
        CoherentCache {
            lru: Lru::new(capacity),
            live: false,
            applied: -1,
            generation: 0,
            in_flight: HashMap::new(),
            counts: CacheCounts::default(),
        }
    }

    /// False for `CACHE_SIZE` 0: nothing is ever looked up or kept.
    pub fn is_enabled(&self) -> bool {
        self.lru.is_enabled()
    }

    /// True while a stream is applied.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The stream's position and the generation, for a confirmation.
    pub fn position(&self) -> (u64, i32) {
        (self.generation, self.applied)
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// The counters so far.
    pub fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// The stream (re)starts after `applied`: everything held is dropped.
    pub fn start(&mut self, applied: i32) {
        self.clear();
        self.live = true;
        self.applied = applied;
    }

    /// The stream is lost (a closed link, another epoch, a refusal):
    /// everything held is dropped and nothing is served until a start.
    pub fn lose(&mut self) {
        self.clear();
        self.live = false;
    }

    fn clear(&mut self) {
        self.counts.invalidations += self.lru.len() as u64;
        self.lru.clear();
        self.generation += 1;
    }

    /// Applies committed entries `first..`; a gap leaves the cache as it
    /// was (the caller then starts again).
    ///
    /// # Errors
    /// [`Gap`] when `first` is not the entry after `applied`.
    pub fn apply(&mut self, first: i32, entries: &[Entry]) -> Result<(), Gap> {
        if !self.live || first != self.applied + 1 {
            return Err(Gap {
                expected: self.applied + 1,
                got: first,
            });
        }
        for (i, entry) in entries.iter().enumerate() {
            let index = first + i as i32;
            if let Op::Set {
                customer_id,
                order_number,
            } = entry.op
            {
                self.apply_set(index, customer_id, order_number);
            }
            self.applied = index;
        }
        Ok(())
    }

    fn apply_set(&mut self, index: i32, customer: i32, order: i32) {
        if let Some(slot) = self.in_flight.get_mut(&customer) {
            slot.touched = index;
        }
        if self.lru.peek(&customer).is_some_and(|c| c.index < index) {
            self.counts.invalidations += 1;
            self.lru.put(customer, Cached { order, index });
        }
    }

    /// A read's lookup: the cached order, if the cache is live and holds
    /// the customer (a candidate: it is served only once confirmed, see
    /// [`CoherentCache::confirmed_hit`]). A miss is counted by the caller
    /// when it sends the read on.
    pub fn lookup(&mut self, customer: i32) -> Option<i32> {
        if !self.live {
            return None;
        }
        self.lru.get(&customer).map(|c| c.order)
    }

    /// The order to answer a read with, now that a confirmation of
    /// generation `generation` saw commit point `commit` after the read
    /// began: only while that generation lasts and the stream has applied
    /// through `commit`. Counts the hit.
    pub fn confirmed_hit(&mut self, customer: i32, generation: u64, commit: i32) -> Option<i32> {
        if !self.live || generation != self.generation || self.applied < commit {
            return None;
        }
        let order = self.lru.get(&customer)?.order;
        self.counts.hits += 1;
        Some(order)
    }

    /// Counts a read sent to a server.
    pub fn count_miss(&mut self) {
        self.counts.misses += 1;
    }

    /// Before a read or write of `customer` is sent to a server whose
    /// answer may fill the cache.
    pub fn begin_fill(&mut self, customer: i32) -> Option<Ticket> {
        if !self.live || !self.is_enabled() {
            return None;
        }
        let slot = self.in_flight.entry(customer).or_insert(InFlight {
            count: 0,
            touched: i32::MIN,
        });
        slot.count += 1;
        Some(Ticket {
            customer,
            generation: self.generation,
            applied: self.applied,
        })
    }

    /// The server answered `order` for the ticket's customer (a read's
    /// record, or a write acknowledged): kept when nothing for it was
    /// applied since the ticket and the generation is the same.
    pub fn finish_fill(&mut self, ticket: Ticket, order: i32) {
        let touched = self.end_ticket(&ticket);
        if self.live && ticket.generation == self.generation && touched <= ticket.applied {
            let index = self.applied;
            self.lru.put(ticket.customer, Cached { order, index });
        }
    }

    /// The request failed: the ticket is dropped, nothing is kept.
    pub fn cancel_fill(&mut self, ticket: Ticket) {
        self.end_ticket(&ticket);
    }

    fn end_ticket(&mut self, ticket: &Ticket) -> i32 {
        let Some(slot) = self.in_flight.get_mut(&ticket.customer) else {
            return i32::MAX;
        };
        let touched = slot.touched;
        slot.count -= 1;
        if slot.count == 0 {
            self.in_flight.remove(&ticket.customer);
        }
        touched
    }

    /// Customers cached, least recently used first (for tests).
    pub fn keys_by_age(&self) -> Vec<i32> {
        self.lru.keys_by_age()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: i32, o: i32) -> Entry {
        Entry::set(1, c, o)
    }

    fn live(capacity: usize, applied: i32) -> CoherentCache {
        let mut cache = CoherentCache::new(capacity);
        cache.start(applied);
        cache
    }

    fn fill(cache: &mut CoherentCache, c: i32, o: i32) {
        let t = cache.begin_fill(c).unwrap();
        cache.finish_fill(t, o);
    }

    #[test]
    fn nothing_is_served_before_a_start_or_after_a_loss() {
        let mut cache = CoherentCache::new(4);
        assert_eq!(cache.begin_fill(1), None);
        assert_eq!(cache.lookup(1), None);
        cache.start(9);
        fill(&mut cache, 1, 5);
        assert_eq!(cache.lookup(1), Some(5));
        let (generation, applied) = cache.position();
        assert_eq!(cache.confirmed_hit(1, generation, applied), Some(5));
        cache.lose();
        assert_eq!(cache.lookup(1), None);
        assert_eq!(cache.confirmed_hit(1, generation, applied), None);
        assert!(cache.is_empty());
        assert_eq!(cache.counts().invalidations, 1, "the record dropped");
    }

    #[test]
    fn the_stream_moves_cached_records_forward() {
        let mut cache = live(4, 9);
        fill(&mut cache, 1, 5);
        cache.apply(10, &[set(1, 6), set(2, 7)]).unwrap();
        assert_eq!(cache.lookup(1), Some(6));
        assert_eq!(cache.lookup(2), None, "the stream does not fill");
        assert_eq!(cache.counts().invalidations, 1);
        assert_eq!(cache.position().1, 11);
    }

    #[test]
    fn a_hit_waits_for_the_stream_to_reach_the_confirmed_point() {
        let mut cache = live(4, 9);
        fill(&mut cache, 1, 5);
        let (generation, _) = cache.position();
        assert_eq!(
            cache.confirmed_hit(1, generation, 10),
            None,
            "not applied yet"
        );
        cache.apply(10, &[set(1, 6)]).unwrap();
        assert_eq!(cache.confirmed_hit(1, generation, 10), Some(6));
        cache.start(20);
        assert_eq!(
            cache.confirmed_hit(1, generation, 10),
            None,
            "another generation"
        );
        assert_eq!(cache.counts().hits, 1);
    }

    #[test]
    fn a_fill_raced_by_a_commit_of_its_customer_is_not_kept() {
        let mut cache = live(4, 9);
        let t = cache.begin_fill(1).unwrap();
        let other = cache.begin_fill(2).unwrap();
        cache.apply(10, &[set(1, 6)]).unwrap();
        // The server may have answered before entry 10: 5 is not kept.
        cache.finish_fill(t, 5);
        assert_eq!(cache.lookup(1), None);
        cache.finish_fill(other, 3);
        assert_eq!(cache.lookup(2), Some(3), "another customer is");
        // A ticket taken after the entry is not affected by it.
        let later = cache.begin_fill(1).unwrap();
        cache.finish_fill(later, 6);
        assert_eq!(cache.lookup(1), Some(6));
    }

    #[test]
    fn overlapping_fills_of_one_customer_are_judged_each_by_its_own_start() {
        let mut cache = live(4, 9);
        let early = cache.begin_fill(1).unwrap();
        cache.apply(10, &[set(1, 6)]).unwrap();
        let late = cache.begin_fill(1).unwrap();
        cache.finish_fill(early, 5);
        assert_eq!(cache.lookup(1), None);
        cache.finish_fill(late, 6);
        assert_eq!(cache.lookup(1), Some(6));
    }

    #[test]
    fn a_fill_across_a_reset_or_a_cancel_is_not_kept() {
        let mut cache = live(4, 9);
        let t = cache.begin_fill(1).unwrap();
        cache.start(30);
        cache.finish_fill(t, 5);
        assert_eq!(cache.lookup(1), None);
        let t = cache.begin_fill(1).unwrap();
        cache.cancel_fill(t);
        assert_eq!(cache.lookup(1), None);
        assert!(cache.in_flight.is_empty());
    }

    #[test]
    fn a_fill_ahead_of_the_stream_is_overwritten_in_log_order() {
        // The server answered 8 (entry 12), the stream is at 9: entries 10
        // to 12 then arrive, and the record ends at 8, as the log says.
        let mut cache = live(4, 9);
        fill(&mut cache, 1, 8);
        cache.apply(10, &[set(1, 6), set(1, 7), set(1, 8)]).unwrap();
        assert_eq!(cache.lookup(1), Some(8));
    }

    #[test]
    fn a_gap_in_the_stream_is_refused() {
        let mut cache = live(4, 9);
        assert_eq!(
            cache.apply(12, &[set(1, 1)]),
            Err(Gap {
                expected: 10,
                got: 12
            })
        );
        assert_eq!(cache.position().1, 9);
        let mut dead = CoherentCache::new(4);
        assert!(dead.apply(0, &[]).is_err());
    }

    #[test]
    fn lru_capacity_and_eviction_order_hold_for_fills() {
        let mut cache = live(2, -1);
        fill(&mut cache, 1, 1);
        fill(&mut cache, 2, 2);
        assert_eq!(cache.lookup(1), Some(1));
        fill(&mut cache, 3, 3);
        assert_eq!(cache.keys_by_age(), [1, 3], "2 was the least recently used");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let mut cache = live(0, -1);
        assert!(!cache.is_enabled());
        assert_eq!(cache.begin_fill(1), None);
        cache.apply(0, &[set(1, 1)]).unwrap();
        assert_eq!(cache.lookup(1), None);
        assert!(cache.is_empty());
    }
}

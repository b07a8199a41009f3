//! One server's view of the replicated log, and the v1 rules that move it.
//!
//! Ports the original's `RobotFactory` bookkeeping (PROTOCOL.md §4): the
//! primary appends, replicates, then commits everything up to its last entry;
//! a backup stores each entry it is sent, applies up to the commit index the
//! frame carries and acknowledges its `last_index`. Departures: a v1 frame
//! must carry the next index or one we already hold (never a gap, so no
//! index read off the wire makes the log grow by more than one entry), and a
//! commit index is never taken past the log's end.

use std::fmt;

use super::log::Log;
use crate::wire::{Entry, Epoch, MemberSet, Op, ReplicationAck, ReplicationRequest};

/// `primary_id` when no primary is known.
pub const NO_PRIMARY: i32 = -1;

/// The index of "nothing": an empty log, nothing committed.
pub const NO_INDEX: i32 = -1;

/// Entries from a v1 (original) primary carry no epoch.
pub const V1_EPOCH: Epoch = 0;

const NOOP: Entry = Entry {
    epoch: V1_EPOCH,
    op: Op::Noop,
};

/// Why a replication frame or an append was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The frame's entry index is negative.
    NegativeIndex { index: i32 },
    /// The frame's entry index is past the next one we expect
    /// (`last_index + 1`): accepting it would leave a hole in the log.
    IndexGap { index: i32, last_index: i32 },
    /// The frame's commit index is past the entry it carries, which no
    /// primary sends (its commit point never includes the entry in flight).
    CommitBeyondEntry { committed_index: i32, index: i32 },
    /// The frame's entry index lies in the part of our log already
    /// compacted into a snapshot (before `first_index`).
    IndexCompacted { index: i32, first_index: i32 },
    /// The log cannot address another entry with an i32.
    LogFull,
    /// A native append does not continue our log at `prev_index`.
    LogMismatch { prev_index: i32, last_index: i32 },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NegativeIndex { index } => {
                write!(f, "entry index {index} is negative")
            }
            StateError::IndexGap { index, last_index } => write!(
                f,
                "entry index {index} is not the next expected one ({}, our last index is {last_index})",
                i64::from(*last_index) + 1
            ),
            StateError::CommitBeyondEntry {
                committed_index,
                index,
            } => write!(
                f,
                "commit index {committed_index} is beyond the entry it carries ({index})"
            ),
            StateError::IndexCompacted { index, first_index } => write!(
                f,
                "entry index {index} precedes our log, which starts at {first_index} after a snapshot"
            ),
            StateError::LogFull => write!(f, "the log is full (i32 indexes exhausted)"),
            StateError::LogMismatch {
                prev_index,
                last_index,
            } => write!(
                f,
                "append after entry {prev_index} does not match our log (last index {last_index})"
            ),
        }
    }
}

impl std::error::Error for StateError {}

/// What a native append changed in the log, for the durable copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogChange {
    /// Entries from this index on were dropped first (a divergent suffix).
    pub truncated_from: Option<i32>,
    /// Index of the first entry appended (valid when `appended > 0`).
    pub first_appended: i32,
    /// Number of entries appended.
    pub appended: usize,
}

/// The next epoch server `id` takes after `seen`: a higher counter, with
/// the id in the low 16 bits so that two servers never pick the same one.
pub fn next_epoch(seen: Epoch, id: i32) -> Epoch {
    (((seen >> 16) + 1) << 16) | (id as u64 & 0xffff)
}

/// The log, its indexes, who is primary and in which epoch, for server `id`.
#[derive(Debug, Clone)]
pub struct Replica {
    id: i32,
    log: Log,
    committed_index: i32,
    primary_id: i32,
    /// The highest epoch this server has seen.
    epoch: Epoch,
    /// True while this server is known to hold every committed entry.
    trusted: bool,
    /// The in-sync set as of the log's base (snapshot), if ever known.
    base_in_sync: Option<MemberSet>,
    /// In-sync entries in the log, by index.
    in_sync_changes: Vec<(i32, MemberSet)>,
}

impl Replica {
    /// An empty replica for server `id`: no entries, no primary.
    pub fn new(id: i32) -> Self {
        Replica::restore(id, Log::new(), None, V1_EPOCH, NO_INDEX)
    }

    /// A replica rebuilt from durable state: a log (possibly continuing a
    /// snapshot whose in-sync set is `base_in_sync`), the highest epoch seen
    /// and a commit point known to be safe. It is not trusted: it may have
    /// missed writes while it was down.
    pub fn restore(
        id: i32,
        log: Log,
        base_in_sync: Option<MemberSet>,
        epoch: Epoch,
        committed_index: i32,
    ) -> Self {
        let mut replica = Replica {
            id,
            committed_index: committed_index.clamp(NO_INDEX, log.last_index()),
            log,
            primary_id: NO_PRIMARY,
            epoch,
            trusted: false,
            base_in_sync,
            in_sync_changes: Vec::new(),
        };
        replica.committed_index = replica.committed_index.max(replica.log.first_index() - 1);
        let first = replica.log.first_index();
        replica.note_in_sync_changes(first);
        replica
    }

    fn note_in_sync_changes(&mut self, from: i32) {
        let last = self.log.last_index();
        for (i, entry) in (from..=last).zip(self.log.range(from, last)) {
            if let Op::InSync(set) = entry.op {
                self.in_sync_changes.push((i, set));
            }
        }
    }

    /// This server's id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> i32 {
        self.log.last_index()
    }

    /// Epoch of the last entry in the log.
    pub fn last_epoch(&self) -> Epoch {
        self.log.last_epoch()
    }

    /// Index of the last entry applied to the record table.
    pub fn committed_index(&self) -> i32 {
        self.committed_index
    }

    /// The primary this server follows, itself, or [`NO_PRIMARY`].
    pub fn primary_id(&self) -> i32 {
        self.primary_id
    }

    /// True when this server holds the primary role.
    pub fn is_primary(&self) -> bool {
        self.primary_id == self.id
    }

    /// The highest epoch seen.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// True while this server is known to hold every committed entry.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Marks whether this server holds every committed entry.
    pub fn set_trusted(&mut self, trusted: bool) {
        self.trusted = trusted;
    }

    /// The in-sync set named last in the log, if any ever was.
    pub fn in_sync(&self) -> Option<MemberSet> {
        self.in_sync_changes
            .last()
            .map(|&(_, set)| set)
            .or(self.base_in_sync)
    }

    /// The in-sync set in force at `index` (for a snapshot taken there).
    pub fn in_sync_at(&self, index: i32) -> Option<MemberSet> {
        self.in_sync_changes
            .iter()
            .rev()
            .find(|&&(i, _)| i <= index)
            .map(|&(_, set)| set)
            .or(self.base_in_sync)
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Records `epoch` if it is higher than any seen; true if it was.
    pub fn adopt_epoch(&mut self, epoch: Epoch) -> bool {
        if epoch > self.epoch {
            self.epoch = epoch;
            true
        } else {
            false
        }
    }

    /// Takes the primary role as the original does on its first write (v1
    /// rules, no epoch). Returns true when this changed the role.
    pub fn become_primary(&mut self) -> bool {
        let changed = !self.is_primary();
        self.primary_id = self.id;
        changed
    }

    /// Takes the primary role in a new epoch (already adopted).
    pub fn become_primary_in(&mut self, epoch: Epoch) {
        self.adopt_epoch(epoch);
        self.primary_id = self.id;
        self.trusted = true;
    }

    /// Follows `primary` (v1 or native); a primary stepping down uses this.
    pub fn follow(&mut self, primary: i32) {
        self.primary_id = primary;
    }

    /// Primary: appends `entry` at `last_index + 1` and returns that index.
    ///
    /// # Errors
    /// [`StateError::LogFull`] when no further index exists.
    pub fn append(&mut self, entry: Entry) -> Result<i32, StateError> {
        let index = self.log.append(entry).ok_or(StateError::LogFull)?;
        if let Op::InSync(set) = entry.op {
            self.in_sync_changes.push((index, set));
        }
        Ok(index)
    }

    /// Primary: the v1 frame that replicates the entry at `index`. As in the
    /// original it carries the current commit point, which does not include
    /// the entry itself.
    pub fn replication_request(&self, index: i32) -> Option<ReplicationRequest> {
        self.log.get(index).map(|entry| ReplicationRequest {
            primary_id: self.id,
            committed_index: self.committed_index,
            last_index: index,
            op: entry.to_map_op(),
        })
    }

    /// Commits through `index` (clamped to the log) and returns the entries
    /// that became committed, in order, for the caller to apply.
    pub fn commit_through(&mut self, index: i32) -> &[Entry] {
        let from = self.committed_index + 1;
        let target = index.min(self.last_index());
        if target < from {
            return &[];
        }
        self.committed_index = target;
        self.log.range(from, target)
    }

    /// v1 backup: handles one frame. Stores its op as the entry at its index
    /// (dropping any later entries, since the sender's log is the truth),
    /// adopts its primary and commit point, and returns the ack to send with
    /// the entries that became committed, for the caller to apply.
    ///
    /// A frame may rewrite an entry we hold (a new primary whose log is
    /// shorter than ours) or add the next one, never skip ahead: the
    /// original grew its log to any index it was sent, so one hostile frame
    /// could make it allocate without bound.
    ///
    /// # Errors
    /// A negative index, one past `last_index + 1`, one already compacted, a
    /// commit index past the frame's entry, or [`StateError::LogFull`];
    /// nothing changes then.
    pub fn on_replicate(
        &mut self,
        req: &ReplicationRequest,
    ) -> Result<(ReplicationAck, &[Entry]), StateError> {
        self.check_index(req.last_index)?;
        if req.committed_index > req.last_index {
            return Err(StateError::CommitBeyondEntry {
                committed_index: req.committed_index,
                index: req.last_index,
            });
        }
        self.primary_id = req.primary_id;
        self.trusted = false;
        self.truncate_from(req.last_index);
        let entry = Entry::from_map_op(V1_EPOCH, &req.op);
        self.log.store_last(req.last_index, entry, NOOP);
        // Like the original, take the primary's commit point even when it is
        // behind ours (a new primary with a shorter log): its entries at those
        // indexes are then applied as they commit, so we converge on its log.
        let old = self.committed_index.min(self.last_index());
        let floor = self.log.first_index() - 1;
        let target = req.committed_index.clamp(floor, self.last_index());
        self.committed_index = target;
        let ack = ReplicationAck {
            replica_id: self.id,
            last_index: self.last_index(),
        };
        Ok((ack, self.log.range(old + 1, target)))
    }

    fn check_index(&self, index: i32) -> Result<(), StateError> {
        if index < 0 {
            return Err(StateError::NegativeIndex { index });
        }
        let last_index = self.last_index();
        if i64::from(index) > i64::from(last_index) + 1 {
            return Err(StateError::IndexGap { index, last_index });
        }
        if index < self.log.first_index() {
            return Err(StateError::IndexCompacted {
                index,
                first_index: self.log.first_index(),
            });
        }
        if !Log::can_grow_to(index) {
            return Err(StateError::LogFull);
        }
        Ok(())
    }

    fn truncate_from(&mut self, index: i32) {
        self.log.truncate_from(index);
        self.in_sync_changes.retain(|&(i, _)| i < index);
    }

    /// Native backup: appends `entries` after `prev_index`, which must be an
    /// entry of ours with epoch `prev_epoch`. Entries of ours after it that
    /// differ are dropped (a suffix no primary committed); equal ones are
    /// kept, so a repeated append changes nothing.
    ///
    /// # Errors
    /// [`StateError::LogMismatch`] when our log has no such entry.
    pub fn on_append(
        &mut self,
        prev_index: i32,
        prev_epoch: Epoch,
        entries: &[Entry],
    ) -> Result<LogChange, StateError> {
        if self.log.epoch_at(prev_index) != Some(prev_epoch) {
            return Err(StateError::LogMismatch {
                prev_index,
                last_index: self.last_index(),
            });
        }
        let mut change = LogChange {
            truncated_from: None,
            first_appended: self.last_index() + 1,
            appended: 0,
        };
        for (offset, entry) in entries.iter().enumerate() {
            let index = prev_index + 1 + offset as i32;
            match self.log.get(index) {
                Some(ours) if ours == entry => continue,
                Some(_) => {
                    self.truncate_from(index);
                    change.truncated_from = Some(index);
                }
                None if index < self.log.first_index() => continue,
                None => {}
            }
            if change.appended == 0 {
                change.first_appended = index;
            }
            self.append(*entry)?;
            change.appended += 1;
        }
        Ok(change)
    }

    /// Native backup: replaces the log with an empty one continuing a
    /// snapshot that ends at `last_index`; everything up to it is committed.
    pub fn install_snapshot(
        &mut self,
        last_index: i32,
        last_epoch: Epoch,
        in_sync: Option<MemberSet>,
    ) {
        self.log = Log::after_snapshot(last_index, last_epoch);
        self.base_in_sync = in_sync;
        self.in_sync_changes.clear();
        self.committed_index = last_index;
    }

    /// Forgets entries through `index` (at most the commit point), which a
    /// snapshot now holds.
    pub fn compact_through(&mut self, index: i32) {
        let index = index.min(self.committed_index);
        if index < self.log.first_index() {
            return;
        }
        self.base_in_sync = self.in_sync_at(index);
        self.in_sync_changes.retain(|&(i, _)| i > index);
        self.log.compact_through(index);
    }

    /// Backup: the primary's stream closed, so no primary is known.
    pub fn on_stream_closed(&mut self) {
        if !self.is_primary() {
            self.primary_id = NO_PRIMARY;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each test names the rule of PROTOCOL.md §4 it checks.
    use super::*;
    use crate::wire::MapOp;

    fn set(customer: i32, order: i32) -> Entry {
        Entry::set(V1_EPOCH, customer, order)
    }

    fn frame(primary: i32, committed: i32, index: i32, op: MapOp) -> ReplicationRequest {
        ReplicationRequest {
            primary_id: primary,
            committed_index: committed,
            last_index: index,
            op,
        }
    }

    #[test]
    fn new_replica_has_empty_indexes() {
        let r = Replica::new(3);
        assert_eq!(
            (r.last_index(), r.committed_index(), r.primary_id()),
            (-1, -1, -1)
        );
        assert!(!r.is_primary());
    }

    #[test]
    fn s4_primary_role_taken_once() {
        let mut r = Replica::new(1);
        assert!(r.become_primary());
        assert!(!r.become_primary());
        assert_eq!(r.primary_id(), 1);
    }

    #[test]
    fn s4_primary_appends_then_commits_and_applies_range() {
        let mut r = Replica::new(0);
        r.become_primary();
        assert_eq!(r.append(set(7, 1)), Ok(0));
        assert_eq!(r.append(set(8, 2)), Ok(1));
        assert_eq!(r.committed_index(), -1);
        assert_eq!(r.commit_through(1), &[set(7, 1), set(8, 2)]);
        assert_eq!(r.committed_index(), 1);
        assert!(r.commit_through(1).is_empty(), "nothing is applied twice");
        assert!(r.commit_through(0).is_empty(), "commit never moves back");
        assert!(r.commit_through(50).is_empty(), "clamped to the log");
        assert_eq!(r.committed_index(), 1);
    }

    #[test]
    fn s3_frame_carries_commit_point_before_the_entry() {
        let mut r = Replica::new(0);
        r.become_primary();
        r.append(set(7, 42)).unwrap();
        r.commit_through(0);
        let i = r.append(set(7, 43)).unwrap();
        assert_eq!(
            r.replication_request(i),
            Some(frame(0, 0, 1, MapOp::set(7, 43)))
        );
        assert_eq!(r.replication_request(2), None);
    }

    #[test]
    fn s4_backup_stores_applies_commit_point_and_acks() {
        let mut b = Replica::new(2);
        let (ack, applied) = b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
        assert!(applied.is_empty(), "entry 0 is not committed yet");
        assert_eq!(
            ack,
            ReplicationAck {
                replica_id: 2,
                last_index: 0
            }
        );
        assert_eq!(b.primary_id(), 0);

        let (ack, applied) = b.on_replicate(&frame(0, 0, 1, MapOp::set(7, 2))).unwrap();
        assert_eq!(applied, &[set(7, 1)], "trails the primary by one");
        assert_eq!(ack.last_index, 1);
        assert_eq!(b.committed_index(), 0);
    }

    #[test]
    fn s4_stream_close_forgets_the_primary() {
        let mut b = Replica::new(2);
        b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
        b.on_stream_closed();
        assert_eq!(b.primary_id(), NO_PRIMARY);
        let mut p = Replica::new(1);
        p.become_primary();
        p.on_stream_closed();
        assert!(p.is_primary(), "a primary keeps its role");
    }

    #[test]
    fn s4_backup_taking_over_commits_what_it_trailed() {
        let mut b = Replica::new(1);
        b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
        b.on_replicate(&frame(0, 0, 1, MapOp::set(7, 2))).unwrap();
        b.on_stream_closed();
        b.become_primary();
        let i = b.append(set(9, 9)).unwrap();
        assert_eq!(i, 2);
        assert_eq!(b.commit_through(i), &[set(7, 2), set(9, 9)]);
    }

    #[test]
    fn new_primary_behind_us_wins() {
        let mut b = Replica::new(2);
        for i in 0..5 {
            b.on_replicate(&frame(0, i - 1, i, MapOp::set(1, i)))
                .unwrap();
        }
        assert_eq!((b.last_index(), b.committed_index()), (4, 3));
        // Server 1 took over with a log ending at 2, commit point 1.
        let (ack, applied) = b.on_replicate(&frame(1, 1, 3, MapOp::set(1, 100))).unwrap();
        assert!(applied.is_empty());
        assert_eq!(ack.last_index, 3, "entry 4 of the old primary is dropped");
        let (_, applied) = b.on_replicate(&frame(1, 3, 4, MapOp::set(1, 101))).unwrap();
        assert_eq!(applied, &[set(1, 2), set(1, 100)]);
    }

    #[test]
    fn a_gap_is_refused_without_change() {
        let mut b = Replica::new(2);
        let gap = b.on_replicate(&frame(0, 9, 10, MapOp::set(5, 5)));
        assert_eq!(
            gap.unwrap_err(),
            StateError::IndexGap {
                index: 10,
                last_index: -1
            }
        );
        b.on_replicate(&frame(0, -1, 0, MapOp::set(5, 5))).unwrap();
        let gap = b.on_replicate(&frame(0, 0, 2, MapOp::set(5, 6)));
        assert!(matches!(gap, Err(StateError::IndexGap { index: 2, .. })));
        assert_eq!((b.last_index(), b.committed_index()), (0, -1));
        assert!(b.on_replicate(&frame(0, 0, 1, MapOp::set(5, 6))).is_ok());
    }

    #[test]
    fn hostile_indexes_are_refused_without_change() {
        let mut b = Replica::new(2);
        let neg = b.on_replicate(&frame(0, -1, -5, MapOp::set(1, 1)));
        assert_eq!(neg.unwrap_err(), StateError::NegativeIndex { index: -5 });
        let neg = b.on_replicate(&frame(0, -1, i32::MIN, MapOp::set(1, 1)));
        assert!(matches!(neg, Err(StateError::NegativeIndex { .. })));
        for index in [1, 2, 1 << 20, i32::MAX - 1, i32::MAX] {
            let far = b.on_replicate(&frame(0, -1, index, MapOp::set(1, 1)));
            assert!(
                matches!(far, Err(StateError::IndexGap { .. })),
                "index {index}"
            );
        }
        assert_eq!((b.last_index(), b.primary_id()), (-1, -1));
        assert_eq!(b.log().range(0, i32::MAX).len(), 0, "nothing allocated");
    }

    #[test]
    fn indexes_before_a_snapshot_are_refused() {
        let mut b = Replica::new(2);
        b.install_snapshot(9, 1, None);
        let old = b.on_replicate(&frame(0, 9, 3, MapOp::set(1, 1)));
        assert_eq!(
            old.unwrap_err(),
            StateError::IndexCompacted {
                index: 3,
                first_index: 10
            }
        );
        let (ack, _) = b.on_replicate(&frame(0, 9, 10, MapOp::set(1, 1))).unwrap();
        assert_eq!(ack.last_index, 10);
    }

    #[test]
    fn commit_index_beyond_the_entry_is_refused_and_below_minus_one_clamped() {
        let mut b = Replica::new(2);
        let far = b.on_replicate(&frame(0, i32::MAX, 0, MapOp::set(1, 1)));
        assert_eq!(
            far.unwrap_err(),
            StateError::CommitBeyondEntry {
                committed_index: i32::MAX,
                index: 0
            }
        );
        assert_eq!((b.last_index(), b.committed_index()), (-1, -1));
        b.on_replicate(&frame(0, -1, 0, MapOp::set(1, 1))).unwrap();
        // The commit notice: the last entry again, now counted as committed.
        let (_, applied) = b.on_replicate(&frame(0, 0, 0, MapOp::set(1, 1))).unwrap();
        assert_eq!(applied, &[set(1, 1)]);
        assert_eq!(b.committed_index(), 0);
        let (_, applied) = b
            .on_replicate(&frame(0, i32::MIN, 1, MapOp::set(1, 2)))
            .unwrap();
        assert!(applied.is_empty());
        assert_eq!(b.committed_index(), -1);
    }

    // Native rules (issue 4): epochs, appends with a consistency check,
    // snapshots, the in-sync set.

    fn native(epoch: Epoch, customer: i32, order: i32) -> Entry {
        Entry::set(epoch, customer, order)
    }

    fn in_sync(ids: &[i32]) -> Entry {
        Entry {
            epoch: 1,
            op: Op::InSync(MemberSet::from_ids(ids.iter().copied()).unwrap()),
        }
    }

    #[test]
    fn epochs_are_ordered_and_unique_per_server() {
        let a = next_epoch(0, 1);
        let b = next_epoch(0, 2);
        assert!(a != b && a >> 16 == b >> 16);
        assert!(next_epoch(b, 1) > b && next_epoch(a, 2) > a);
        let mut r = Replica::new(1);
        assert!(r.adopt_epoch(b));
        assert!(!r.adopt_epoch(a), "an older epoch is not adopted");
        assert_eq!(r.epoch(), b);
    }

    #[test]
    fn append_checks_the_previous_entry() {
        let mut b = Replica::new(2);
        let first = b
            .on_append(-1, 0, &[native(1, 7, 1), native(1, 7, 2)])
            .unwrap();
        assert_eq!(
            first,
            LogChange {
                truncated_from: None,
                first_appended: 0,
                appended: 2
            }
        );
        let err = b.on_append(5, 1, &[native(1, 7, 3)]).unwrap_err();
        assert_eq!(
            err,
            StateError::LogMismatch {
                prev_index: 5,
                last_index: 1
            }
        );
        let err = b.on_append(1, 9, &[native(9, 7, 3)]).unwrap_err();
        assert!(
            matches!(err, StateError::LogMismatch { .. }),
            "wrong epoch at prev"
        );
        assert_eq!(b.last_index(), 1, "a refused append changes nothing");
    }

    #[test]
    fn repeated_appends_are_idempotent() {
        let mut b = Replica::new(2);
        let entries = [native(1, 7, 1), native(1, 8, 1)];
        b.on_append(-1, 0, &entries).unwrap();
        let again = b.on_append(-1, 0, &entries).unwrap();
        assert_eq!(again.appended, 0);
        assert_eq!(again.truncated_from, None);
        assert_eq!(b.last_index(), 1);
    }

    #[test]
    fn a_divergent_suffix_is_truncated() {
        let mut b = Replica::new(2);
        b.on_append(-1, 0, &[native(1, 1, 1), native(1, 1, 2), native(1, 1, 3)])
            .unwrap();
        // The epoch-2 primary kept only entry 0 of epoch 1.
        let change = b.on_append(0, 1, &[native(2, 5, 5)]).unwrap();
        assert_eq!(
            change,
            LogChange {
                truncated_from: Some(1),
                first_appended: 1,
                appended: 1
            }
        );
        assert_eq!((b.last_index(), b.last_epoch()), (1, 2));
    }

    #[test]
    fn in_sync_set_follows_the_log() {
        let mut r = Replica::new(0);
        assert_eq!(r.in_sync(), None, "never known");
        r.append(in_sync(&[0, 1, 2])).unwrap();
        r.append(native(1, 5, 5)).unwrap();
        r.append(in_sync(&[0, 2])).unwrap();
        assert_eq!(r.in_sync().unwrap().ids(), &[0, 2]);
        assert_eq!(r.in_sync_at(1).unwrap().ids(), &[0, 1, 2]);
        let mut b = Replica::new(1);
        b.on_append(-1, 0, &[in_sync(&[0, 1]), native(1, 1, 1), in_sync(&[0])])
            .unwrap();
        b.on_append(0, 1, &[native(2, 1, 2)]).unwrap();
        assert_eq!(
            b.in_sync().unwrap().ids(),
            &[0, 1],
            "truncation drops later changes"
        );
    }

    #[test]
    fn snapshot_install_and_compaction() {
        let mut b = Replica::new(1);
        b.on_append(-1, 0, &[native(1, 1, 1)]).unwrap();
        let set = MemberSet::from_ids([0, 1]).unwrap();
        b.install_snapshot(99, 3, Some(set));
        assert_eq!(
            (b.last_index(), b.last_epoch(), b.committed_index()),
            (99, 3, 99)
        );
        assert_eq!(b.in_sync(), Some(set));
        assert!(b.on_append(99, 3, &[native(3, 2, 2)]).is_ok());

        let mut p = Replica::new(0);
        p.append(in_sync(&[0, 1])).unwrap();
        for i in 0..10 {
            p.append(native(1, i, i)).unwrap();
        }
        p.commit_through(6);
        p.compact_through(8);
        assert_eq!(p.log().first_index(), 7, "never past the commit point");
        assert_eq!(p.in_sync().unwrap().ids(), &[0, 1]);
        assert_eq!(p.log().epoch_at(6), Some(1));
    }

    #[test]
    fn restored_replicas_are_not_trusted() {
        let mut log = Log::new();
        log.append(native(4, 1, 1));
        let r = Replica::restore(3, log, None, 5, 7);
        assert!(!r.trusted());
        assert_eq!(
            (r.epoch(), r.committed_index(), r.primary_id()),
            (5, 0, NO_PRIMARY)
        );
    }
}

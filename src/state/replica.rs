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
    /// The primary and epoch of the streams open now, and how many: a
    /// primary's reconnects may overlap its old connections (and a link
    /// that held connections may deliver several at once), so the primary
    /// is forgotten only when the last of them closes.
    streams: ((i32, Epoch), u32),
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
            streams: ((NO_PRIMARY, 0), 0),
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
            if let Op::InSync(set) = &entry.op {
                self.in_sync_changes.push((i, **set));
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
        let in_sync = match &entry.op {
            Op::InSync(set) => Some(**set),
            _ => None,
        };
        let index = self.log.append(entry).ok_or(StateError::LogFull)?;
        if let Some(set) = in_sync {
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
        self.commit_through_indexed(index).1
    }

    /// [`Self::commit_through`], with the index of the first entry returned
    /// (string writes are applied at their index, their version).
    pub fn commit_through_indexed(&mut self, index: i32) -> (i32, &[Entry]) {
        let from = self.committed_index + 1;
        let target = index.min(self.last_index());
        if target < from {
            return (from, &[]);
        }
        self.committed_index = target;
        (
            from.max(self.log.first_index()),
            self.log.range(from, target),
        )
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
        self.on_replicate_indexed(req)
            .map(|(ack, _, entries)| (ack, entries))
    }

    /// [`Self::on_replicate`], with the index of the first entry returned.
    ///
    /// # Errors
    /// As [`Self::on_replicate`].
    pub fn on_replicate_indexed(
        &mut self,
        req: &ReplicationRequest,
    ) -> Result<(ReplicationAck, i32, &[Entry]), StateError> {
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
        let first = (old + 1).max(self.log.first_index());
        Ok((ack, first, self.log.range(old + 1, target)))
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
            self.append(entry.clone())?;
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

    /// Backup: follows `primary` of `epoch` through a new stream.
    pub fn follow_stream(&mut self, primary: i32, epoch: Epoch) {
        self.primary_id = primary;
        let (of, open) = &mut self.streams;
        if *of != (primary, epoch) {
            *of = (primary, epoch);
            *open = 0;
        }
        *open += 1;
    }

    /// Backup: a stream of `primary` in `epoch` closed. Forgets the
    /// primary when it was the last one open and nothing else has changed
    /// since (no newer primary or epoch, not primary itself). Returns
    /// whether it did.
    pub fn on_stream_of_closed(&mut self, primary: i32, epoch: Epoch) -> bool {
        let (of, open) = &mut self.streams;
        if *of != (primary, epoch) {
            return false;
        }
        *open = open.saturating_sub(1);
        if *open > 0 || self.is_primary() || self.primary_id != primary || self.epoch != epoch {
            return false;
        }
        self.on_stream_closed();
        true
    }

    /// Backup: the primary's stream closed, so no primary is known.
    pub fn on_stream_closed(&mut self) {
        if !self.is_primary() {
            self.primary_id = NO_PRIMARY;
        }
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;

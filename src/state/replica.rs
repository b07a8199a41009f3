//! One server's view of the replicated log, and the v1 rules that move it.
//!
//! Ports the original's `RobotFactory` bookkeeping (PROTOCOL.md §4): the
//! primary appends, replicates, then commits everything up to its last entry;
//! a backup stores each entry it is sent, applies up to the commit index the
//! frame carries and acknowledges its `last_index`. Departures: indexes read
//! off the wire are bounded ([`MAX_V1_GAP`]) instead of growing the log
//! without limit, and a commit index is never taken past the log's end.

use std::fmt;

use super::log::Log;
use crate::wire::{MapOp, ReplicationAck, ReplicationRequest};

/// `primary_id` when no primary is known.
pub const NO_PRIMARY: i32 = -1;

/// The index of "nothing": an empty log, nothing committed.
pub const NO_INDEX: i32 = -1;

/// How far past our last entry a v1 frame may point. The original grows its
/// log to any index it is sent; a gap appears legitimately when a new
/// primary's log is longer than ours, and its holes stay no-ops exactly as
/// in the original. Beyond this bound the frame is refused instead.
pub const MAX_V1_GAP: i32 = 1 << 20;

/// Why a replication frame or an append was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The frame's entry index is negative.
    NegativeIndex { index: i32 },
    /// The frame's entry index is more than [`MAX_V1_GAP`] past our log.
    IndexTooFar { index: i32, last_index: i32 },
    /// The log cannot address another entry with an i32.
    LogFull,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NegativeIndex { index } => {
                write!(f, "entry index {index} is negative")
            }
            StateError::IndexTooFar { index, last_index } => write!(
                f,
                "entry index {index} is more than {MAX_V1_GAP} past our last index {last_index}"
            ),
            StateError::LogFull => write!(f, "the log is full (i32 indexes exhausted)"),
        }
    }
}

impl std::error::Error for StateError {}

/// The log, its indexes and who is primary, for server `id`.
#[derive(Debug, Clone)]
pub struct Replica {
    id: i32,
    log: Log,
    committed_index: i32,
    primary_id: i32,
}

impl Replica {
    /// An empty replica for server `id`: no entries, no primary.
    pub fn new(id: i32) -> Self {
        Replica {
            id,
            log: Log::new(),
            committed_index: NO_INDEX,
            primary_id: NO_PRIMARY,
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

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Takes the primary role (the original does so on its first write).
    /// Returns true when this changed the role.
    pub fn become_primary(&mut self) -> bool {
        let changed = !self.is_primary();
        self.primary_id = self.id;
        changed
    }

    /// Primary: appends `op` at `last_index + 1` and returns that index.
    ///
    /// # Errors
    /// [`StateError::LogFull`] when no further index exists.
    pub fn append(&mut self, op: MapOp) -> Result<i32, StateError> {
        self.log.append(op).ok_or(StateError::LogFull)
    }

    /// Primary: the v1 frame that replicates the entry at `index`. As in the
    /// original it carries the current commit point, which does not include
    /// the entry itself.
    pub fn replication_request(&self, index: i32) -> Option<ReplicationRequest> {
        self.log.get(index).map(|op| ReplicationRequest {
            primary_id: self.id,
            committed_index: self.committed_index,
            last_index: index,
            op: *op,
        })
    }

    /// Commits through `index` (clamped to the log) and returns the entries
    /// that became committed, in order, for the caller to apply.
    pub fn commit_through(&mut self, index: i32) -> &[MapOp] {
        let from = self.committed_index + 1;
        let target = index.min(self.last_index());
        if target < from {
            return &[];
        }
        self.committed_index = target;
        self.log.range(from, target)
    }

    /// Backup: handles one v1 frame. Stores its op as the entry at its index
    /// (dropping any later entries, since the sender's log is the truth),
    /// adopts its primary and commit point, and returns the ack to send with
    /// the entries that became committed, for the caller to apply.
    ///
    /// # Errors
    /// A negative index, or one too far past our log; nothing changes then.
    pub fn on_replicate(
        &mut self,
        req: &ReplicationRequest,
    ) -> Result<(ReplicationAck, &[MapOp]), StateError> {
        self.check_index(req.last_index)?;
        self.primary_id = req.primary_id;
        self.log.store_last(req.last_index as usize, req.op);
        // Like the original, take the primary's commit point even when it is
        // behind ours (a new primary with a shorter log): its entries at those
        // indexes are then applied as they commit, so we converge on its log.
        let old = self.committed_index.min(self.last_index());
        let target = req.committed_index.clamp(NO_INDEX, self.last_index());
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
        if index as i64 - last_index as i64 > MAX_V1_GAP as i64 || !Log::can_grow_to(index) {
            return Err(StateError::IndexTooFar { index, last_index });
        }
        Ok(())
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
        assert_eq!(r.append(MapOp::set(7, 1)), Ok(0));
        assert_eq!(r.append(MapOp::set(8, 2)), Ok(1));
        assert_eq!(r.committed_index(), -1);
        assert_eq!(r.commit_through(1), &[MapOp::set(7, 1), MapOp::set(8, 2)]);
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
        r.append(MapOp::set(7, 42)).unwrap();
        r.commit_through(0);
        let i = r.append(MapOp::set(7, 43)).unwrap();
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
        assert_eq!(applied, &[MapOp::set(7, 1)], "trails the primary by one");
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
        let i = b.append(MapOp::set(9, 9)).unwrap();
        assert_eq!(i, 2);
        assert_eq!(b.commit_through(i), &[MapOp::set(7, 2), MapOp::set(9, 9)]);
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
        assert_eq!(applied, &[MapOp::set(1, 2), MapOp::set(1, 100)]);
    }

    #[test]
    fn gap_is_filled_with_noops_within_bound() {
        let mut b = Replica::new(2);
        let (ack, applied) = b.on_replicate(&frame(0, 9, 10, MapOp::set(5, 5))).unwrap();
        assert_eq!(ack.last_index, 10);
        assert_eq!(applied.len(), 10);
        assert!(applied.iter().all(|op| op.as_set().is_none()));
    }

    #[test]
    fn hostile_indexes_are_refused_without_change() {
        let mut b = Replica::new(2);
        let neg = b.on_replicate(&frame(0, -1, -5, MapOp::set(1, 1)));
        assert_eq!(neg.unwrap_err(), StateError::NegativeIndex { index: -5 });
        let far = b.on_replicate(&frame(0, -1, i32::MAX, MapOp::set(1, 1)));
        assert!(matches!(far, Err(StateError::IndexTooFar { .. })));
        let far = b.on_replicate(&frame(0, -1, MAX_V1_GAP, MapOp::set(1, 1)));
        assert!(matches!(far, Err(StateError::IndexTooFar { .. })));
        assert_eq!((b.last_index(), b.primary_id()), (-1, -1));
        assert!(b
            .on_replicate(&frame(0, -1, MAX_V1_GAP - 1, MapOp::set(1, 1)))
            .is_ok());
    }

    #[test]
    fn commit_index_beyond_log_or_below_minus_one_is_clamped() {
        let mut b = Replica::new(2);
        let (_, applied) = b
            .on_replicate(&frame(0, i32::MAX, 0, MapOp::set(1, 1)))
            .unwrap();
        assert_eq!(applied, &[MapOp::set(1, 1)]);
        assert_eq!(b.committed_index(), 0);
        let (_, applied) = b
            .on_replicate(&frame(0, i32::MIN, 1, MapOp::set(1, 2)))
            .unwrap();
        assert!(applied.is_empty());
        assert_eq!(b.committed_index(), -1);
    }
}

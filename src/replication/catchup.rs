//! How a primary brings a backup that just told it where its log ends
//! (`CatchUp { last_index, last_epoch }`) to exactly the primary's log.

use crate::state::Log;
use crate::wire::Epoch;

/// What the primary sends first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpPlan {
    /// Entries after `prev_index`, which both logs hold with `prev_epoch`.
    /// The backup drops anything of its own after that point that differs.
    Suffix { prev_index: i32, prev_epoch: Epoch },
    /// The backup's log cannot be matched (its last entry was compacted
    /// away here, or no entry here has its position and epoch): send the
    /// record map, then the entries after it.
    Snapshot,
}

/// Chooses how to catch a backup up. Logs agree up to an entry they both
/// hold with the same index and epoch (each epoch's primary appends in
/// order), so a backup whose last entry the primary holds needs only the
/// suffix after it.
pub fn plan_catch_up(log: &Log, backup_last: i32, backup_epoch: Epoch) -> CatchUpPlan {
    let held = backup_last >= log.first_index() - 1 && backup_last <= log.last_index();
    match log.epoch_at(backup_last) {
        Some(epoch) if held && epoch == backup_epoch => CatchUpPlan::Suffix {
            prev_index: backup_last,
            prev_epoch: epoch,
        },
        _ => CatchUpPlan::Snapshot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Entry;

    fn log_of(epochs: &[u64]) -> Log {
        let mut log = Log::new();
        for (i, &e) in epochs.iter().enumerate() {
            log.append(Entry::set(e, i as i32, 0));
        }
        log
    }

    #[test]
    fn an_empty_backup_of_a_full_log_gets_every_entry() {
        let log = log_of(&[1, 1, 1]);
        assert_eq!(
            plan_catch_up(&log, -1, 0),
            CatchUpPlan::Suffix {
                prev_index: -1,
                prev_epoch: 0
            }
        );
    }

    #[test]
    fn a_backup_behind_gets_the_missing_suffix() {
        let log = log_of(&[1, 1, 2, 2]);
        assert_eq!(
            plan_catch_up(&log, 1, 1),
            CatchUpPlan::Suffix {
                prev_index: 1,
                prev_epoch: 1
            }
        );
        assert_eq!(
            plan_catch_up(&log, 3, 2),
            CatchUpPlan::Suffix {
                prev_index: 3,
                prev_epoch: 2
            },
            "an up-to-date backup gets nothing more"
        );
    }

    #[test]
    fn a_divergent_or_longer_backup_gets_a_snapshot() {
        let log = log_of(&[1, 1, 2]);
        assert_eq!(
            plan_catch_up(&log, 2, 1),
            CatchUpPlan::Snapshot,
            "other epoch at 2"
        );
        assert_eq!(
            plan_catch_up(&log, 5, 1),
            CatchUpPlan::Snapshot,
            "beyond our log"
        );
    }

    #[test]
    fn a_backup_behind_the_compacted_part_gets_a_snapshot() {
        let mut log = log_of(&[1, 1, 1, 1, 1]);
        log.compact_through(2);
        assert_eq!(plan_catch_up(&log, 0, 1), CatchUpPlan::Snapshot);
        assert_eq!(plan_catch_up(&log, -1, 0), CatchUpPlan::Snapshot);
        assert_eq!(
            plan_catch_up(&log, 2, 1),
            CatchUpPlan::Suffix {
                prev_index: 2,
                prev_epoch: 1
            },
            "the snapshot's last entry still matches"
        );
    }
}

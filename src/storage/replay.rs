//! Replay: folding the log file's records into the state they describe, and
//! deciding where a torn tail starts. Pure functions over a byte slice, so
//! every cut point can be tested without a file; [`super::DiskLog::open`]
//! reads the file and acts on the result.
//!
//! [`LogState`] holds the rules an append, truncation, epoch or commit
//! record obeys. Replay and the live [`super::DiskLog`] apply records through
//! the same function, so what a running server believes and what a
//! restarted one recovers cannot drift apart.

use super::record::{read_frame, Frame, Record};
use crate::wire::{Entry, Epoch};

/// The bookkeeping the log's records add up to (everything but the entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogState {
    /// Index of the first entry after the snapshot.
    pub first_index: i32,
    /// Index the next appended entry must have.
    pub next_index: i32,
    /// Highest epoch recorded (0 if none).
    pub epoch: Epoch,
    /// Highest committed index recorded, never past the last entry.
    pub committed: i32,
}

impl LogState {
    /// The state of an empty log continuing at `first_index`.
    pub(crate) fn new(first_index: i32) -> Self {
        LogState {
            first_index,
            next_index: first_index,
            epoch: 0,
            committed: -1,
        }
    }

    /// Index of the last entry (the snapshot's last index when there is none).
    pub(crate) fn last_index(&self) -> i32 {
        self.next_index - 1
    }

    /// Applies one record.
    ///
    /// # Errors
    /// A description when the record breaks the index rules: an entry that
    /// is not the next one, or a truncation into the snapshot.
    pub(crate) fn apply(&mut self, record: &Record) -> Result<(), String> {
        match *record {
            Record::Entry { index, .. } => {
                if index != self.next_index {
                    return Err(format!(
                        "entry at index {index}, expected {}",
                        self.next_index
                    ));
                }
                self.next_index = index.checked_add(1).ok_or("entry index overflows")?;
            }
            Record::Truncate { from } => {
                if from < self.first_index {
                    return Err(format!(
                        "truncation from {from}, before the first index {}",
                        self.first_index
                    ));
                }
                // A commit note cannot vouch for entries that were dropped.
                self.next_index = self.next_index.min(from);
                self.committed = self.committed.min(self.last_index());
            }
            Record::Epoch(epoch) => self.epoch = self.epoch.max(epoch),
            // Clamped here rather than only at the end so that a later
            // truncation and re-append cannot resurrect the claim.
            Record::Commit { index } => {
                self.committed = self.committed.max(index.min(self.last_index()));
            }
        }
        Ok(())
    }
}

/// What a replay of the log file found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Replay {
    /// The bookkeeping after the last good record.
    pub state: LogState,
    /// The entries from `state.first_index`, truncations applied.
    pub entries: Vec<Entry>,
    /// Where the good records end: the end of the buffer, or the offset of
    /// the torn tail.
    pub valid_len: usize,
    /// True when a torn tail starts at `valid_len`.
    pub torn: bool,
}

/// A bad record that cannot be a torn tail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReplayError {
    /// Offset of the bad record in the buffer.
    pub offset: usize,
    /// What is wrong with it.
    pub detail: String,
}

/// Replays the records in `buf[start..]` (the bytes after the file header)
/// for a log whose first entry has index `first_index`.
///
/// # Errors
/// [`ReplayError`] for a record that fails its CRC or index rules and is
/// followed by more data, or that decodes badly despite a good CRC.
pub(crate) fn replay(buf: &[u8], start: usize, first_index: i32) -> Result<Replay, ReplayError> {
    let mut state = LogState::new(first_index);
    let mut entries = Vec::new();
    let mut at = start;
    while at < buf.len() {
        let (payload, end) = match read_frame(buf, at) {
            Frame::Whole { payload, end } => (payload, end),
            Frame::Cut => return Ok(torn(state, entries, at)),
            Frame::Bad { end, .. } if is_blank(&buf[end..]) => {
                return Ok(torn(state, entries, at));
            }
            Frame::Bad { detail, .. } => return Err(ReplayError { offset: at, detail }),
        };
        // A good CRC means the record was written whole: failing to decode
        // or to fit is damage (or a writer bug), never a torn write.
        let bad = |detail| ReplayError { offset: at, detail };
        let record = Record::decode(payload).map_err(bad)?;
        state.apply(&record).map_err(bad)?;
        match record {
            Record::Entry { entry, .. } => entries.push(entry),
            Record::Truncate { .. } => entries.truncate(held(&state)),
            Record::Epoch(_) | Record::Commit { .. } => {}
        }
        at = end;
    }
    Ok(Replay {
        state,
        entries,
        valid_len: at,
        torn: false,
    })
}

/// The result for a torn tail at `at`.
fn torn(state: LogState, entries: Vec<Entry>, at: usize) -> Replay {
    Replay {
        state,
        entries,
        valid_len: at,
        torn: true,
    }
}

/// Number of entries the state says are held after the snapshot.
fn held(state: &LogState) -> usize {
    // next_index >= first_index always holds: truncation stops at first_index.
    (state.next_index - state.first_index) as usize
}

/// True when `rest` is empty or all zeros. A bad frame followed only by
/// zeros is a torn tail too: after a crash some filesystems leave the file
/// extended over blocks whose data never reached the disk.
fn is_blank(rest: &[u8]) -> bool {
    rest.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            r.encode(&mut out);
        }
        out
    }

    fn entry(index: i32, order: i32) -> Record {
        Record::Entry {
            index,
            entry: Entry::set(1, 7, order),
        }
    }

    #[test]
    fn truncation_drops_entries_and_commit_claims() {
        let buf = encode(&[
            entry(3, 0),
            entry(4, 1),
            Record::Commit { index: 4 },
            Record::Truncate { from: 4 },
            entry(4, 2),
            Record::Commit { index: 9 },
        ]);
        let r = replay(&buf, 0, 3).unwrap();
        assert_eq!(r.entries, vec![Entry::set(1, 7, 0), Entry::set(1, 7, 2)]);
        assert_eq!(r.state.next_index, 5);
        assert_eq!(r.state.committed, 4);
        assert!(!r.torn);
    }

    #[test]
    fn index_rules_are_enforced() {
        let gap = encode(&[entry(0, 0), entry(2, 0)]);
        let err = replay(&gap, 0, 0).unwrap_err();
        assert_eq!(err.offset, 30);
        assert!(err.detail.contains("expected 1"), "{}", err.detail);
        let into_snapshot = encode(&[Record::Truncate { from: 4 }]);
        assert!(replay(&into_snapshot, 0, 5).is_err());
        // Truncating past the end is harmless.
        let past = encode(&[entry(5, 0), Record::Truncate { from: 9 }]);
        assert_eq!(replay(&past, 0, 5).unwrap().entries.len(), 1);
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut buf = encode(&[entry(0, 0), Record::Epoch(3)]);
        let good = buf.len();
        buf.extend_from_slice(&[0; 100]);
        let r = replay(&buf, 0, 0).unwrap();
        assert_eq!((r.valid_len, r.torn, r.state.epoch), (good, true, 3));
    }

    #[test]
    fn a_bad_record_with_data_after_it_is_an_error() {
        let mut buf = encode(&[entry(0, 0), entry(1, 0), entry(2, 0)]);
        buf[30 + 12] ^= 0x80;
        assert_eq!(replay(&buf, 0, 0).unwrap_err().offset, 30);
    }
}

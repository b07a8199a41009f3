//! [`DiskLog`]: the durable log a server writes as it appends, truncates,
//! changes epoch and commits, and compacts into a snapshot. The replication
//! layer owns one per server and calls it under its own lock; a `DiskLog`
//! is not shared between threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::files::{self, LOG, LOG_PREV, LOG_TMP, SNAPSHOT, SNAPSHOT_PREV, SNAPSHOT_TMP};
use super::log_file::{encode_header, LogFile};
use super::record::Record;
use super::recovery::{open_dir, Recovered};
use super::replay::LogState;
use super::snapshot::{write_file, Snapshot};
use super::{FsyncPolicy, StorageError};
use crate::wire::{Entry, Epoch};

/// The durable log of one server: `DIR/log`, and `DIR/snapshot` once one is
/// installed.
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    log: LogFile,
    /// What the records written so far add up to, by the same rules replay
    /// applies.
    state: LogState,
    /// Generation of the installed snapshot (0: none).
    generation: u64,
    policy: FsyncPolicy,
    last_fsync: Option<Instant>,
}

impl DiskLog {
    /// Opens or creates the data directory `dir` (creating the directory
    /// itself if missing) and replays it.
    ///
    /// A torn or corrupt *last* record (a write cut short by a crash) is cut
    /// off with a warning and reported in [`Recovered::truncated_tail`].
    /// Leftovers of an interrupted [`DiskLog::install_snapshot`] are
    /// finished or removed.
    ///
    /// # Errors
    /// - [`StorageError::Corrupt`]: a bad record followed by more data, a
    ///   record that breaks the index rules, or a damaged snapshot. The
    ///   server must not start on such a directory.
    /// - [`StorageError::BadHeader`]: a file that is not a factory log or
    ///   snapshot, an unsupported format version, or a log that does not
    ///   belong to the snapshot next to it.
    /// - [`StorageError::Io`]: the directory or a file could not be read or
    ///   written.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<(DiskLog, Recovered), StorageError> {
        let opened = open_dir(dir, fsync)?;
        let disk_log = DiskLog {
            dir: dir.to_path_buf(),
            log: opened.log,
            state: opened.state,
            generation: opened.generation,
            policy: fsync,
            last_fsync: None,
        };
        Ok((disk_log, opened.recovered))
    }

    /// Appends `entries` at indexes `first_index..`. Buffered: durable after
    /// [`DiskLog::sync`].
    ///
    /// # Errors
    /// [`StorageError::NotNext`] unless `first_index` is the last index + 1;
    /// [`StorageError::OutOfRange`] past index `i32::MAX`;
    /// [`StorageError::Io`] if a write fails (the `DiskLog` is then unusable
    /// until reopened).
    pub fn append(&mut self, first_index: i32, entries: &[Entry]) -> Result<(), StorageError> {
        if first_index != self.state.next_index {
            return Err(StorageError::NotNext {
                expected: self.state.next_index,
                got: first_index,
            });
        }
        let out_of_range = StorageError::OutOfRange {
            first_index,
            count: entries.len(),
        };
        // The index after the last entry must itself be a valid i32.
        let end = i32::try_from(entries.len())
            .ok()
            .and_then(|n| first_index.checked_add(n));
        if end.is_none() {
            return Err(out_of_range);
        }
        for (index, entry) in (first_index..).zip(entries) {
            self.write(Record::Entry {
                index,
                entry: entry.clone(),
            })?;
        }
        Ok(())
    }

    /// Drops the entries at index `>= from` (a divergent suffix). Recorded
    /// in the log; durable after [`DiskLog::sync`]. Nothing is recorded when
    /// there are no such entries. A commit note past `from - 1` is pulled
    /// back to it.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] when `from` is before the first entry
    /// after the snapshot; [`StorageError::Io`] if a write fails.
    pub fn truncate_from(&mut self, from: i32) -> Result<(), StorageError> {
        if from < self.state.first_index {
            return Err(StorageError::Compacted {
                from,
                first_index: self.state.first_index,
            });
        }
        if from >= self.state.next_index {
            return Ok(());
        }
        self.write(Record::Truncate { from })
    }

    /// Records the current epoch and makes it durable before returning
    /// (with everything buffered before it): fsync unless the policy is
    /// [`FsyncPolicy::Never`]. On reopen the highest epoch recorded wins.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the write or fsync fails.
    pub fn set_epoch(&mut self, epoch: Epoch) -> Result<(), StorageError> {
        self.write(Record::Epoch(epoch))?;
        if self.policy.durable() {
            self.fsync_now()?;
        } else {
            self.log.flush()?;
        }
        Ok(())
    }

    /// Records that entries up to `index` are committed. No fsync of its
    /// own: it rides with the next [`DiskLog::sync`]. `index` is clamped to
    /// the last entry (a log cannot vouch for entries it does not hold), and
    /// a note that does not raise the committed index writes nothing.
    ///
    /// # Errors
    /// [`StorageError::Io`] if a write fails.
    pub fn note_commit(&mut self, index: i32) -> Result<(), StorageError> {
        let index = index.min(self.state.last_index());
        if index <= self.state.committed {
            return Ok(());
        }
        self.write(Record::Commit { index })
    }

    /// Writes buffered records and fsyncs per the policy: `Always` fsyncs
    /// now; `Batch` fsyncs if at least [`super::BATCH_INTERVAL`] passed
    /// since the last fsync (else only writes); `Never` only writes.
    /// Returns whether it fsynced.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the write or fsync fails (the `DiskLog` is
    /// then unusable until reopened).
    pub fn sync(&mut self) -> Result<bool, StorageError> {
        if self.policy.wants_fsync(self.last_fsync, Instant::now()) {
            self.fsync_now()?;
            Ok(true)
        } else {
            self.log.flush()?;
            Ok(false)
        }
    }

    /// Atomically replaces the base snapshot with `snapshot` and rewrites
    /// the log to hold only `entries_after` (at `snapshot.last_index + 1..`),
    /// keeping the epoch and the committed index (clamped to the new last
    /// entry). Used for compaction and to install a primary's snapshot.
    ///
    /// Crash-safe in every [`FsyncPolicy`]: both files are written under
    /// temporary names and fsynced, the current generation is kept as
    /// `snapshot.prev` and `log.prev`, then `snapshot.tmp` is renamed into
    /// place, the directory fsynced, `log.tmp` renamed, the directory
    /// fsynced. A crash at any point leaves the old or the new state for
    /// [`DiskLog::open`] to load.
    ///
    /// # Errors
    /// [`StorageError::OutOfRange`] for `last_index` outside
    /// `-1..i32::MAX` or entries past `i32::MAX`; [`StorageError::Io`] if a step fails. A failure while
    /// writing the temporary files leaves this `DiskLog` as it was; a
    /// failure from the renames on leaves it unusable, and reopening the
    /// directory loads the old or (if the snapshot was renamed) the new state.
    pub fn install_snapshot(
        &mut self,
        snapshot: &Snapshot,
        entries_after: &[Entry],
    ) -> Result<(), StorageError> {
        let generation = self.generation + 1;
        let (log_bytes, state) = self.compacted_log(generation, snapshot, entries_after)?;
        // Durable in every policy, `Never` included: a snapshot renamed into
        // place before its bytes reach the disk leaves, after a power cut, a
        // torn snapshot that replaced a good one. An install is rare (once
        // per `2 * --log-retain` entries), so the fsyncs cost little.
        let snap_tmp = self.dir.join(SNAPSHOT_TMP);
        let log_tmp = self.dir.join(LOG_TMP);
        files::write_file_with(&snap_tmp, true, |out| write_file(out, generation, snapshot))?;
        files::write_file(&log_tmp, &log_bytes, true)?;
        self.keep_previous_generation()?;
        // From the first rename on, the old `DIR/log` may no longer match the
        // snapshot: nothing more may be appended to it, even if a step fails.
        self.log.poison();
        files::rename_into_place(&self.dir, &snap_tmp, &self.dir.join(SNAPSHOT), true)?;
        let log_path = self.dir.join(LOG);
        files::rename_into_place(&self.dir, &log_tmp, &log_path, true)?;
        self.log = LogFile::open(&log_path, log_bytes.len() as u64)?;
        self.state = state;
        self.generation = generation;
        // The new log was just fsynced as a whole.
        self.last_fsync = Some(Instant::now());
        Ok(())
    }

    /// Keeps the current generation under `snapshot.prev` and `log.prev`
    /// (hard links, so no copy) for recovery to fall back to should the new
    /// snapshot ever be found torn. The old log is fsynced first so that the
    /// fallback holds what it held. The links become durable with the
    /// directory fsync after the first rename.
    fn keep_previous_generation(&mut self) -> Result<(), StorageError> {
        // A log that already failed cannot be synced; its fallback copy then
        // ends where its last good write did, which replay handles.
        if let Err(e) = self.log.sync() {
            log::warn!("{e}: the previous generation is kept as it stands");
        }
        files::link_as(&self.dir.join(SNAPSHOT), &self.dir.join(SNAPSHOT_PREV))?;
        files::link_as(&self.dir.join(LOG), &self.dir.join(LOG_PREV))?;
        Ok(())
    }

    /// The bytes of the log that follows `snapshot`, and its state.
    fn compacted_log(
        &self,
        generation: u64,
        snapshot: &Snapshot,
        entries_after: &[Entry],
    ) -> Result<(Vec<u8>, LogState), StorageError> {
        let first_index = snapshot.last_index.saturating_add(1);
        let count = entries_after.len();
        // Every entry index, and the one after the last, must be a valid i32
        // (open() refuses a snapshot at i32::MAX for the same reason).
        let fits = i32::try_from(count)
            .ok()
            .and_then(|n| first_index.checked_add(n))
            .is_some();
        if snapshot.last_index < -1 || snapshot.last_index == i32::MAX || !fits {
            return Err(StorageError::OutOfRange { first_index, count });
        }
        let mut state = LogState::new(first_index);
        let mut bytes = encode_header(generation);
        let mut records = Vec::with_capacity(count + 2);
        if self.state.epoch > 0 {
            records.push(Record::Epoch(self.state.epoch));
        }
        records.extend(
            (first_index..)
                .zip(entries_after)
                .map(|(index, e)| Record::Entry {
                    index,
                    entry: e.clone(),
                }),
        );
        let last_index = first_index - 1 + count as i32;
        let committed = self.state.committed.min(last_index);
        if committed >= 0 {
            records.push(Record::Commit { index: committed });
        }
        for record in &records {
            record.encode(&mut bytes);
            // Indexes were checked above, so the rules cannot fail.
            let applied = state.apply(record);
            debug_assert!(applied.is_ok(), "{applied:?}");
        }
        Ok((bytes, state))
    }

    /// Number of entries held in the log file after the snapshot
    /// (truncations applied), to decide when to compact.
    pub fn entry_count(&self) -> usize {
        // next_index never drops below first_index.
        (self.state.next_index - self.state.first_index) as usize
    }

    /// Size of the log file in bytes, counting buffered records (dead
    /// records of truncated entries included).
    pub fn log_bytes(&self) -> u64 {
        self.log.len()
    }

    /// Index of the first entry after the snapshot (`snapshot.last_index + 1`).
    pub fn first_index(&self) -> i32 {
        self.state.first_index
    }

    /// Index of the last entry (the snapshot's last index when the log file
    /// holds none; -1 when there is nothing at all).
    pub fn last_index(&self) -> i32 {
        self.state.last_index()
    }

    /// Highest epoch recorded (0 if none).
    pub fn epoch(&self) -> Epoch {
        self.state.epoch
    }

    /// Highest committed index recorded (-1 if none).
    pub fn committed_index(&self) -> i32 {
        self.state.committed
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file's path.
    pub fn log_path(&self) -> PathBuf {
        self.log.path().to_path_buf()
    }

    /// Buffers `record` and applies it to the state.
    fn write(&mut self, record: Record) -> Result<(), StorageError> {
        self.log.push(&record)?;
        // Callers check the index rules first, with their own errors.
        let applied = self.state.apply(&record);
        debug_assert!(applied.is_ok(), "{applied:?}");
        Ok(())
    }

    fn fsync_now(&mut self) -> Result<(), StorageError> {
        self.log.sync()?;
        self.last_fsync = Some(Instant::now());
        Ok(())
    }
}

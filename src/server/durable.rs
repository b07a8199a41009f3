//! The server's durable copy of its log, when it runs with `--data-dir`:
//! a thin layer over [`crate::storage::DiskLog`] that does nothing without
//! a data directory, and the recovery of a replica from disk at start.
//!
//! Lock order: the replica lock may be held while this one is taken (a
//! backup persists an append before it acknowledges), never the reverse.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::metrics::Histogram;

use crate::state::{Log, LogChange, RecordTable, Replica};
use crate::storage::{DiskLog, FsyncPolicy, Snapshot, StorageError};
use crate::wire::{Entry, Epoch};

/// The log on disk, if any.
#[derive(Default)]
pub(crate) struct Durable {
    disk: Mutex<Option<DiskLog>>,
    /// A commit note is written but not yet synced.
    commit_pending: AtomicBool,
    /// How long each fsync took (`factory_fsync_seconds`).
    fsync: Histogram,
}

impl Durable {
    pub(crate) fn new(disk: Option<DiskLog>) -> Self {
        Durable {
            disk: Mutex::new(disk),
            commit_pending: AtomicBool::new(false),
            fsync: Histogram::latency(),
        }
    }

    pub(crate) fn fsync_histogram(&self) -> &Histogram {
        &self.fsync
    }

    /// Syncs per the policy, timing the fsync when there is one.
    fn sync(&self, disk: &mut DiskLog) -> Result<(), StorageError> {
        let started = Instant::now();
        if disk.sync()? {
            self.fsync.observe_duration(started.elapsed());
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<DiskLog>> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut DiskLog) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        self.lock().as_mut().map(f).transpose()
    }

    /// Writes `entries` (at `first_index`...) and syncs per the fsync policy.
    pub(crate) fn append(&self, first_index: i32, entries: &[Entry]) -> Result<(), StorageError> {
        self.with(|d| {
            d.append(first_index, entries)?;
            self.sync(d)
        })
        .map(drop)
    }

    /// Mirrors a backup's log change (truncation, then the `appended`
    /// entries), notes the commit point `commit`, and syncs: the commit
    /// point becomes durable with the entries.
    pub(crate) fn apply_change(
        &self,
        change: &LogChange,
        appended: &[Entry],
        commit: i32,
    ) -> Result<(), StorageError> {
        if change.truncated_from.is_none() && change.appended == 0 {
            return Ok(());
        }
        self.commit_pending.store(false, Ordering::Relaxed);
        self.with(|d| {
            if let Some(from) = change.truncated_from {
                d.truncate_from(from)?;
            }
            if change.appended > 0 {
                d.append(change.first_appended, appended)?;
            }
            d.note_commit(commit)?;
            self.sync(d)
        })
        .map(drop)
    }

    /// Records a new epoch durably.
    pub(crate) fn set_epoch(&self, epoch: Epoch) -> Result<(), StorageError> {
        self.with(|d| d.set_epoch(epoch)).map(drop)
    }

    /// Records the commit point (durable with the next sync).
    pub(crate) fn note_commit(&self, index: i32) -> Result<(), StorageError> {
        let noted = self.with(|d| d.note_commit(index))?;
        if noted.is_some() {
            self.commit_pending.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Syncs a commit note still waiting for the next write, so that a
    /// restart applies everything committed before the server went idle.
    pub(crate) fn flush_commit(&self) -> Result<(), StorageError> {
        if self.commit_pending.swap(false, Ordering::Relaxed) {
            self.with(|d| self.sync(d)).map(drop)
        } else {
            Ok(())
        }
    }

    /// Replaces the durable state with `snapshot` and the entries after it.
    pub(crate) fn install_snapshot(
        &self,
        snapshot: &Snapshot,
        entries_after: &[Entry],
    ) -> Result<(), StorageError> {
        self.with(|d| d.install_snapshot(snapshot, entries_after))
            .map(drop)
    }

    /// Writes out everything buffered, fsyncs the log file whatever the
    /// fsync policy, and closes it: after a graceful stop a restart finds
    /// every acknowledged write and no torn tail. Later calls do nothing.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        let Some(mut disk) = self.lock().take() else {
            return Ok(());
        };
        disk.sync()?;
        let path = disk.log_path();
        drop(disk);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|source| StorageError::Io { path, source })
    }

    /// Bytes of the log file (0 without a data dir).
    pub(crate) fn log_bytes(&self) -> u64 {
        self.lock().as_ref().map_or(0, DiskLog::log_bytes)
    }

    /// Entries in the log file after its snapshot (0 without a data dir).
    pub(crate) fn entry_count(&self) -> usize {
        self.lock().as_ref().map_or(0, DiskLog::entry_count)
    }
}

/// What a server starts from.
pub(crate) struct Recovered {
    pub replica: Replica,
    pub records: RecordTable,
    pub disk: Option<DiskLog>,
}

/// Opens `dir` (if given) and rebuilds the replica and the records it
/// holds: the snapshot, then the committed entries after it.
pub(crate) fn recover(
    id: i32,
    dir: Option<&Path>,
    fsync: FsyncPolicy,
) -> Result<Recovered, StorageError> {
    let records = RecordTable::new();
    let Some(dir) = dir else {
        return Ok(Recovered {
            replica: Replica::new(id),
            records,
            disk: None,
        });
    };
    let (disk, mut found) = DiskLog::open(dir, fsync)?;
    let (mut log, base_in_sync) = match &mut found.snapshot {
        Some(s) => {
            records.replace_all(&s.records);
            records.replace_kv(std::mem::take(&mut s.kv));
            (
                Log::after_snapshot(s.last_index, s.last_epoch),
                Some(s.in_sync).filter(|m| !m.is_empty()),
            )
        }
        None => (Log::new(), None),
    };
    for entry in &found.entries {
        log.append(entry.clone());
    }
    let snapshot_end = log.first_index() - 1;
    let mut replica = Replica::restore(id, log, base_in_sync, found.epoch, snapshot_end);
    let (first, committed) = replica.commit_through_indexed(found.committed_index);
    records.apply(first, committed);
    log::info!(
        "factory {id}: recovered {} from {}: snapshot through index {snapshot_end}, {} entries after it, committed through index {}, epoch {}",
        if found.truncated_tail.is_some() { "(torn tail truncated)" } else { "cleanly" },
        dir.display(),
        found.entries.len(),
        replica.committed_index(),
        crate::logging::epoch(found.epoch)
    );
    Ok(Recovered {
        replica,
        records,
        disk: Some(disk),
    })
}

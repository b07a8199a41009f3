//! Opening a data directory: load the snapshot, settle an interrupted
//! snapshot install, replay the log, cut a torn tail. Called only by
//! [`super::DiskLog::open`]; the result is the pieces a `DiskLog` is built
//! from plus the [`Recovered`] report handed to the caller.

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{self, LOG, LOG_TMP, SNAPSHOT, SNAPSHOT_TMP};
use super::log_file::{encode_header, parse_header, LogFile, LOG_HEADER_LEN};
use super::replay::{replay, LogState};
use super::snapshot::{decode_file, Snapshot};
use super::{FsyncPolicy, StorageError};
use crate::wire::{Entry, Epoch};

/// What [`super::DiskLog::open`] found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Highest epoch ever recorded with `set_epoch` (0 if none).
    pub epoch: Epoch,
    /// The base snapshot, if one was installed.
    pub snapshot: Option<Snapshot>,
    /// Index of `entries[0]`: `snapshot.last_index + 1`, or 0.
    pub first_index: i32,
    /// The log after the snapshot, in order, truncations applied.
    pub entries: Vec<Entry>,
    /// Highest index recorded with `note_commit` (-1 if none), never beyond
    /// the last entry (or the snapshot's last index when there are none).
    pub committed_index: i32,
    /// `Some((file, offset))` when a torn or corrupt last record was cut
    /// off at `offset`.
    pub truncated_tail: Option<(PathBuf, u64)>,
}

/// Everything a `DiskLog` is built from.
pub(crate) struct Opened {
    pub log: LogFile,
    pub state: LogState,
    pub generation: u64,
    pub recovered: Recovered,
}

/// Opens (creating if needed) the data directory `dir` and replays it.
///
/// # Errors
/// See [`super::DiskLog::open`].
pub(crate) fn open_dir(dir: &Path, policy: FsyncPolicy) -> Result<Opened, StorageError> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let snapshot = load_snapshot(dir)?;
    let generation = snapshot.as_ref().map_or(0, |(g, _)| *g);
    let snapshot = snapshot.map(|(_, s)| s);
    let log_path = dir.join(LOG);
    let bytes = settle_log(dir, generation, policy.durable())?;
    let first_index = snapshot.as_ref().map_or(0, |s| s.last_index + 1);
    let replayed = replay(&bytes, LOG_HEADER_LEN, first_index)
        .map_err(|e| StorageError::corrupt(&log_path, e.offset as u64, e.detail))?;
    let valid_len = replayed.valid_len as u64;
    let truncated_tail = if replayed.torn {
        log::warn!(
            "{}: cutting off a torn or corrupt last record at offset {valid_len} ({} bytes)",
            log_path.display(),
            bytes.len() as u64 - valid_len
        );
        files::cut_file(&log_path, valid_len, policy.durable())?;
        Some((log_path.clone(), valid_len))
    } else {
        None
    };
    let state = replayed.state;
    let recovered = Recovered {
        epoch: state.epoch,
        snapshot,
        first_index,
        entries: replayed.entries,
        committed_index: state.committed,
        truncated_tail,
    };
    Ok(Opened {
        log: LogFile::open(&log_path, valid_len)?,
        state,
        generation,
        recovered,
    })
}

/// The snapshot and its generation, if `DIR/snapshot` exists.
fn load_snapshot(dir: &Path) -> Result<Option<(u64, Snapshot)>, StorageError> {
    let path = dir.join(SNAPSHOT);
    let Some(bytes) = files::read_optional(&path)? else {
        return Ok(None);
    };
    let (generation, snap) = decode_file(&path, &bytes)?;
    // The first entry after it must have an index in 0..=i32::MAX.
    if snap.last_index < -1 || snap.last_index == i32::MAX {
        let detail = format!("last index {} outside -1..{}", snap.last_index, i32::MAX);
        return Err(StorageError::corrupt(&path, 28, detail));
    }
    Ok(Some((generation, snap)))
}

/// Returns the bytes of a log file that continues snapshot `generation`,
/// finishing an interrupted install or creating a fresh log as needed, and
/// removes leftover temporary files.
fn settle_log(dir: &Path, generation: u64, durable: bool) -> Result<Vec<u8>, StorageError> {
    let path = dir.join(LOG);
    let existing = files::read_optional(&path)?.filter(|b| !b.is_empty());
    let found = match &existing {
        Some(bytes) => Some(parse_header(&path, bytes)?),
        None => None,
    };
    let bytes = match (existing, found) {
        (Some(bytes), Some(g)) if g == generation => bytes,
        // No log yet and no snapshot: a new data directory.
        (None, _) if generation == 0 => create_fresh_log(dir, durable)?,
        (_, found) => match finish_install(dir, generation, durable)? {
            Some(bytes) => bytes,
            None => return Err(mismatch(&path, found, generation)),
        },
    };
    remove_leftovers(dir)?;
    Ok(bytes)
}

/// The crash came after `snapshot.tmp` was renamed into place but before
/// `log.tmp` was: if `log.tmp` continues the new snapshot, rename it too.
/// `log.tmp` was fsynced before the snapshot was renamed, so it is whole.
fn finish_install(
    dir: &Path,
    generation: u64,
    durable: bool,
) -> Result<Option<Vec<u8>>, StorageError> {
    let tmp = dir.join(LOG_TMP);
    let Some(bytes) = files::read_optional(&tmp)? else {
        return Ok(None);
    };
    if parse_header(&tmp, &bytes).ok() != Some(generation) {
        return Ok(None);
    }
    log::info!(
        "{}: finishing an interrupted snapshot install (generation {generation})",
        dir.display()
    );
    files::rename_into_place(dir, &tmp, &dir.join(LOG), durable)?;
    Ok(Some(bytes))
}

/// Writes a log holding only a header (generation 0) and returns its bytes.
/// It goes through a temporary name so that a crash never leaves a log with
/// a partial header, which would be refused on the next start.
fn create_fresh_log(dir: &Path, durable: bool) -> Result<Vec<u8>, StorageError> {
    let header = encode_header(0);
    let tmp = dir.join(LOG_TMP);
    files::write_file(&tmp, &header, durable)?;
    files::rename_into_place(dir, &tmp, &dir.join(LOG), durable)?;
    Ok(header)
}

/// Removes temporary files an interrupted install left behind. They are
/// never needed once the log matches the snapshot.
fn remove_leftovers(dir: &Path) -> Result<(), StorageError> {
    for name in [LOG_TMP, SNAPSHOT_TMP] {
        let path = dir.join(name);
        if files::remove_if_present(&path)? {
            log::info!("{}: removed a leftover temporary file", path.display());
        }
    }
    Ok(())
}

fn mismatch(path: &Path, found: Option<u64>, generation: u64) -> StorageError {
    let detail = match found {
        Some(g) => format!(
            "log continues snapshot generation {g}, but the snapshot is generation {generation}"
        ),
        None => format!("log is missing or empty, but a snapshot (generation {generation}) exists"),
    };
    StorageError::bad_header(path, detail)
}

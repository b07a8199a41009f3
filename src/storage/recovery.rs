//! Opening a data directory: load the snapshot (falling back to the
//! previous generation when it is torn), settle an interrupted snapshot
//! install or a log that never reached the disk, replay the log, cut a
//! torn tail. Called only by
//! [`super::DiskLog::open`]; the result is the pieces a `DiskLog` is built
//! from plus the [`Recovered`] report handed to the caller.

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{self, LOG, LOG_PREV, LOG_TMP, SNAPSHOT, SNAPSHOT_PREV, SNAPSHOT_TMP};
use super::log_file::{
    encode_header, header_version, parse_header, upgrade_header, LogFile, LOG_HEADER_LEN,
    LOG_VERSION,
};
use super::record::Record;
use super::replay::{replay, LogState};
use super::snapshot::{load, Loaded, Snapshot};
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
    let log_path = dir.join(LOG);
    let bytes = settle_log(dir, snapshot.as_ref(), policy)?;
    let generation = snapshot.as_ref().map_or(0, |(g, _)| *g);
    let snapshot = snapshot.map(|(_, s)| s);
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
    if header_version(&bytes) != LOG_VERSION {
        log::info!(
            "{}: upgrading the log header to format version {LOG_VERSION}",
            log_path.display()
        );
        upgrade_header(&log_path)?;
    }
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

/// The snapshot and its generation, if `DIR/snapshot` exists. A torn one
/// is replaced by the previous generation first.
fn load_snapshot(dir: &Path) -> Result<Option<(u64, Snapshot)>, StorageError> {
    let path = dir.join(SNAPSHOT);
    match load(&path)? {
        None => Ok(None),
        Some(Loaded::Torn(len)) => {
            fall_back(dir, len)?;
            load_whole(&path)
        }
        Some(Loaded::Whole(generation, snap)) => checked(&path, generation, snap).map(Some),
    }
}

/// The snapshot at `path`, which must not be torn.
fn load_whole(path: &Path) -> Result<Option<(u64, Snapshot)>, StorageError> {
    match load(path)? {
        None => Ok(None),
        Some(Loaded::Torn(len)) => Err(StorageError::corrupt(
            path,
            0,
            format!("torn ({len} bytes)"),
        )),
        Some(Loaded::Whole(generation, snap)) => checked(path, generation, snap).map(Some),
    }
}

fn checked(path: &Path, generation: u64, snap: Snapshot) -> Result<(u64, Snapshot), StorageError> {
    // The first entry after it must have an index in 0..=i32::MAX.
    if snap.last_index < -1 || snap.last_index == i32::MAX {
        let detail = format!("last index {} outside -1..{}", snap.last_index, i32::MAX);
        return Err(StorageError::corrupt(path, 28, detail));
    }
    Ok((generation, snap))
}

/// `DIR/snapshot` is torn (`len` bytes): puts the generation before it back
/// in place, from the `snapshot.prev` and `log.prev` an install keeps
/// (no `snapshot.prev` when that generation was 0, which has none).
///
/// # Errors
/// [`StorageError::BadHeader`] when there is no complete previous
/// generation; [`StorageError::Corrupt`] when `snapshot.prev` is damaged.
fn fall_back(dir: &Path, len: u64) -> Result<(), StorageError> {
    let path = dir.join(SNAPSHOT);
    let (log_prev, snap_prev) = (dir.join(LOG_PREV), dir.join(SNAPSHOT_PREV));
    let nothing = || {
        let detail =
            format!("torn ({len} bytes) and no complete previous generation to fall back to");
        StorageError::bad_header(&path, detail)
    };
    let log_generation = match files::read_optional(&log_prev)? {
        Some(bytes) => parse_header(&log_prev, &bytes).map_err(|_| nothing())?,
        None => return Err(nothing()),
    };
    let generation = match load_whole(&snap_prev)? {
        Some((generation, _)) => generation,
        None => 0,
    };
    if generation != log_generation {
        return Err(nothing());
    }
    log::warn!(
        "{}: torn ({len} bytes: its data never reached the disk); falling back to snapshot \
         generation {generation} and its log: what this server wrote after that install is lost \
         here, and comes back from its peers",
        path.display()
    );
    if generation == 0 {
        files::remove_if_present(&path)?;
    } else {
        fs::rename(&snap_prev, &path).map_err(|e| StorageError::io(&snap_prev, e))?;
    }
    files::rename_into_place(dir, &log_prev, &dir.join(LOG), true)
}

/// Returns the bytes of a log file that continues `snapshot` (generation 0
/// when there is none), finishing an interrupted install or creating a
/// fresh log as needed, and removes leftover temporary files.
fn settle_log(
    dir: &Path,
    snapshot: Option<&(u64, Snapshot)>,
    policy: FsyncPolicy,
) -> Result<Vec<u8>, StorageError> {
    let generation = snapshot.map_or(0, |(g, _)| *g);
    let path = dir.join(LOG);
    let existing = files::read_optional(&path)?;
    let found = existing.as_deref().map(|b| parse_header(&path, b));
    let bytes = match (existing, found) {
        (Some(bytes), Some(Ok(g))) if g == generation => bytes,
        (existing, found) => match finish_install(dir, generation)? {
            Some(bytes) => bytes,
            None => no_matching_log(dir, snapshot, existing.as_deref(), found, policy)?,
        },
    };
    remove_leftovers(dir)?;
    Ok(bytes)
}

/// No log continues the snapshot and no interrupted install can be
/// finished. The rule:
///
/// - a log with a header from another generation, or a non-empty file
///   that is not a log, is refused ([`StorageError::BadHeader`]);
/// - a log that is missing, empty or all zeros (bytes that never reached
///   the disk) with no snapshot and no `log.prev` is a new data directory,
///   with a warning unless the file is simply absent;
/// - the same next to a snapshot means data existed. Under
///   [`FsyncPolicy::Never`] the server starts from the snapshot alone, with
///   a warning (the log after it was never fsynced: what `never` may lose).
///   Under `always` and `batch` it is refused: the log's header is fsynced
///   before the snapshot that it continues is renamed into place, so a
///   power cut cannot cause it; the directory is damaged.
fn no_matching_log(
    dir: &Path,
    snapshot: Option<&(u64, Snapshot)>,
    existing: Option<&[u8]>,
    found: Option<Result<u64, StorageError>>,
    policy: FsyncPolicy,
) -> Result<Vec<u8>, StorageError> {
    let path = dir.join(LOG);
    let generation = snapshot.map_or(0, |(g, _)| *g);
    let unwritten = existing.is_none_or(|b| b.iter().all(|&x| x == 0));
    match found {
        Some(Ok(g)) => return Err(mismatch(&path, Some(g), generation)),
        Some(Err(e)) if !unwritten => return Err(e),
        _ => {}
    }
    let len = existing.map_or(0, <[u8]>::len);
    let Some((_, snap)) = snapshot else {
        if dir.join(LOG_PREV).exists() {
            let detail = format!("{len} bytes and no header, but log.prev shows data existed");
            return Err(StorageError::bad_header(&path, detail));
        }
        if existing.is_some() {
            log::warn!(
                "{}: {len} bytes and no header (never fsynced), and no snapshot: \
                 starting as a new data directory",
                path.display()
            );
        }
        return create_fresh_log(dir, 0, 0);
    };
    if policy != FsyncPolicy::Never {
        return Err(mismatch(&path, None, generation));
    }
    log::warn!(
        "{}: {len} bytes and no header next to snapshot generation {generation} \
         (--fsync never): starting from the snapshot alone, through index {}; \
         entries after it are lost here",
        path.display(),
        snap.last_index
    );
    create_fresh_log(dir, generation, snap.last_epoch)
}

/// The crash came after `snapshot.tmp` was renamed into place but before
/// `log.tmp` was: if `log.tmp` continues the new snapshot, rename it too.
/// `log.tmp` was fsynced before the snapshot was renamed, so it is whole.
fn finish_install(dir: &Path, generation: u64) -> Result<Option<Vec<u8>>, StorageError> {
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
    files::rename_into_place(dir, &tmp, &dir.join(LOG), true)?;
    Ok(Some(bytes))
}

/// Writes a log continuing snapshot `generation` that holds only a header
/// (and `epoch`, when not 0) and returns its bytes. It goes through a
/// temporary name and is fsynced in every policy, so that a power cut never
/// leaves a log without its header: that would be taken for damage.
fn create_fresh_log(dir: &Path, generation: u64, epoch: Epoch) -> Result<Vec<u8>, StorageError> {
    let mut bytes = encode_header(generation);
    if epoch > 0 {
        Record::Epoch(epoch).encode(&mut bytes);
    }
    let tmp = dir.join(LOG_TMP);
    files::write_file(&tmp, &bytes, true)?;
    files::rename_into_place(dir, &tmp, &dir.join(LOG), true)?;
    Ok(bytes)
}

/// Removes temporary files an interrupted install left behind. They are
/// never needed once the log matches the snapshot. (`snapshot.prev` and
/// `log.prev` stay: they are the fallback.)
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
        None => format!(
            "log is missing or empty, but a snapshot (generation {generation}) exists; its \
             header was fsynced before the snapshot was installed, so the directory is damaged"
        ),
    };
    StorageError::bad_header(path, detail)
}

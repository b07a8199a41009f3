//! The data directory's file names and the few filesystem steps the rest of
//! the module builds on: read a whole file if it exists, write a file
//! durably under a temporary name, rename it into place, fsync a directory.
//! Every error names the path it concerns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::StorageError;

/// The log file, under the data directory.
pub(crate) const LOG: &str = "log";
/// The snapshot file, under the data directory.
pub(crate) const SNAPSHOT: &str = "snapshot";
/// Where a new log is written before it is renamed to [`LOG`].
pub(crate) const LOG_TMP: &str = "log.tmp";
/// Where a new snapshot is written before it is renamed to [`SNAPSHOT`].
pub(crate) const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// The snapshot of the generation before the current one (a hard link
/// made by an install), kept so that recovery can fall back to it.
pub(crate) const SNAPSHOT_PREV: &str = "snapshot.prev";
/// The log of the generation before the current one, as [`SNAPSHOT_PREV`].
pub(crate) const LOG_PREV: &str = "log.prev";

/// The whole of `path`, or `None` when it does not exist.
///
/// # Errors
/// [`StorageError::Io`] for any failure other than "not found".
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Creates (or replaces) `path` holding exactly `bytes`, fsynced when
/// `durable`. Used only for temporary names that are renamed afterwards.
///
/// # Errors
/// [`StorageError::Io`] naming `path`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StorageError> {
    let io = |e| StorageError::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    if durable {
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Creates (or replaces) `path` with what `write` writes to it through a
/// buffer, fsynced when `durable`; for files too large to encode at once.
///
/// # Errors
/// [`StorageError::Io`] naming `path`.
pub(crate) fn write_file_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<()>,
) -> Result<(), StorageError> {
    let io = |e| StorageError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, &file);
    write(&mut out).map_err(io)?;
    out.flush().map_err(io)?;
    drop(out);
    if durable {
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Renames `from` to `to` (replacing it) and, when `durable`, fsyncs the
/// directory so that the rename itself survives a machine crash.
///
/// # Errors
/// [`StorageError::Io`] naming the file or the directory.
pub(crate) fn rename_into_place(
    dir: &Path,
    from: &Path,
    to: &Path,
    durable: bool,
) -> Result<(), StorageError> {
    fs::rename(from, to).map_err(|e| StorageError::io(from, e))?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory, making creations, renames and removals in it durable.
///
/// # Errors
/// [`StorageError::Io`] naming the directory.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// Cuts `path` down to `len` bytes (dropping a torn tail), fsynced when
/// `durable`.
///
/// # Errors
/// [`StorageError::Io`] naming `path`.
pub(crate) fn cut_file(path: &Path, len: u64, durable: bool) -> Result<(), StorageError> {
    let io = |e| StorageError::io(path, e);
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.set_len(len).map_err(io)?;
    if durable {
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Makes `to` a second name of `from` (replacing any older `to`), when
/// `from` exists; returns whether it did. A file system without hard links
/// gets a fsynced copy instead. The name is not durable until the
/// directory is fsynced.
///
/// # Errors
/// [`StorageError::Io`] naming the file.
pub(crate) fn link_as(from: &Path, to: &Path) -> Result<bool, StorageError> {
    remove_if_present(to)?;
    match fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(_) => {
            let Some(bytes) = read_optional(from)? else {
                return Ok(false);
            };
            write_file(to, &bytes, true)?;
            Ok(true)
        }
    }
}

/// Removes `path` if it exists; returns whether it did.
///
/// # Errors
/// [`StorageError::Io`] for any failure other than "not found".
pub(crate) fn remove_if_present(path: &Path) -> Result<bool, StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

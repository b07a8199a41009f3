//! [`StorageError`]: why the durable log could not be opened or written.
//!
//! Every variant that concerns a file carries its path, and every message
//! names it, so a server that refuses to start tells the operator which file
//! to look at and (for a corrupt record) at which byte offset.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a [`super::DiskLog`] operation failed.
#[derive(Debug)]
pub enum StorageError {
    /// A read, write, rename or fsync of `path` failed.
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A bad record that is not the file's last one (or a snapshot that
    /// fails its checksum). It cannot be a torn write, so the data
    /// directory is damaged and the server must refuse to start.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the bad record (or field) in the file.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// The file does not start with the expected magic bytes and a
    /// supported format version, or does not match its companion file.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with its header.
        detail: String,
    },
    /// `append` was given a first index that does not continue the log.
    NotNext {
        /// The index the next entry must have (last index + 1).
        expected: i32,
        /// The index it was given.
        got: i32,
    },
    /// `truncate_from` asked to drop entries already folded into the
    /// snapshot, which only `install_snapshot` may replace.
    Compacted {
        /// The index it was given.
        from: i32,
        /// The first index still held in the log file.
        first_index: i32,
    },
    /// Entries would sit outside the log's index range `0..=i32::MAX`
    /// (a snapshot with `last_index < -1`, or a log grown past `i32::MAX`).
    OutOfRange {
        /// The index the first entry would have.
        first_index: i32,
        /// How many entries were given.
        count: usize,
    },
}

impl StorageError {
    /// Wraps an I/O error on `path`.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A `Corrupt` error for `path`.
    pub(crate) fn corrupt(path: &Path, offset: u64, detail: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            detail: detail.into(),
        }
    }

    /// A `BadHeader` error for `path`.
    pub(crate) fn bad_header(path: &Path, detail: impl Into<String>) -> Self {
        StorageError::BadHeader {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            StorageError::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "{}: corrupt record at offset {offset}: {detail} \
                 (not a torn tail; refusing to guess which data is good)",
                path.display()
            ),
            StorageError::BadHeader { path, detail } => {
                write!(f, "{}: bad header: {detail}", path.display())
            }
            StorageError::NotNext { expected, got } => write!(
                f,
                "log append at index {got}, expected the next index {expected}"
            ),
            StorageError::Compacted { from, first_index } => write!(
                f,
                "cannot truncate the log from index {from}: entries before \
                 {first_index} are in the snapshot"
            ),
            StorageError::OutOfRange { first_index, count } => write!(
                f,
                "{count} entries from index {first_index} fall outside the log's \
                 index range 0..={}",
                i32::MAX
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

//! The `DIR/log` file: its header, and [`LogFile`], the append-only writer
//! that buffers framed records and writes them at the file's end.
//! [`super::DiskLog`] owns one; recovery checks the header of every log
//! file it reads.
//!
//! ```text
//! offset  field        type     order
//! 0       magic        8 bytes         "FACTLOG\n"
//! 8       version      u32      BE     2 (1: written before string writes)
//! 12      generation   u64      BE     the snapshot this log continues (0: none)
//! 20      records      ...             see record.rs
//! ```
//!
//! Version 2 added string-write entries (larger records). A version 1 log
//! is a valid version 2 log, so it is read as one, and its header is
//! rewritten to version 2 on open, before anything new is appended: a
//! build that reads only version 1 then refuses the directory by its
//! header rather than meeting an entry kind it does not know.
//!
//! The generation ties the log to `DIR/snapshot`: installing a snapshot
//! replaces both files by two renames, and on reopen a mismatch tells which
//! of the two renames happened (see the module doc of `storage`).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::Record;
use super::StorageError;

/// Magic bytes at the start of `DIR/log`.
pub(crate) const LOG_MAGIC: &[u8; 8] = b"FACTLOG\n";
/// The log format this code writes.
pub(crate) const LOG_VERSION: u32 = 2;
/// The previous format, still read (and upgraded in place).
pub(crate) const LOG_VERSION_1: u32 = 1;
/// Bytes of the log file header.
pub(crate) const LOG_HEADER_LEN: usize = 20;

/// Buffered bytes beyond which an append writes to the file without
/// waiting for `sync`, so a caller that never syncs cannot grow memory.
const FLUSH_AT: usize = 64 * 1024;

/// The header of a log continuing snapshot generation `generation`.
pub(crate) fn encode_header(generation: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN);
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_be_bytes());
    out.extend_from_slice(&generation.to_be_bytes());
    out
}

/// The format version of a log whose header [`parse_header`] accepted.
pub(crate) fn header_version(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}

/// Rewrites the version field of the log at `path` to [`LOG_VERSION`],
/// fsynced in every policy (see the module doc).
///
/// # Errors
/// [`StorageError::Io`] naming `path`.
pub(crate) fn upgrade_header(path: &Path) -> Result<(), StorageError> {
    use std::io::{Seek, SeekFrom};
    let io = |e| StorageError::io(path, e);
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.seek(SeekFrom::Start(8)).map_err(io)?;
    file.write_all(&LOG_VERSION.to_be_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// Checks the header at the start of `bytes` (read from `path`) and returns
/// its generation.
///
/// # Errors
/// [`StorageError::BadHeader`] for a file shorter than the header, a wrong
/// magic or an unsupported version.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<u64, StorageError> {
    let Some(header) = bytes.get(..LOG_HEADER_LEN) else {
        let detail = format!("{} bytes, shorter than the log header", bytes.len());
        return Err(StorageError::bad_header(path, detail));
    };
    if &header[..8] != LOG_MAGIC {
        return Err(StorageError::bad_header(
            path,
            "not a factory log (wrong magic)",
        ));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != LOG_VERSION && version != LOG_VERSION_1 {
        let detail = format!(
            "log format version {version}, this build reads {LOG_VERSION_1} and {LOG_VERSION}"
        );
        return Err(StorageError::bad_header(path, detail));
    }
    let mut generation = [0; 8];
    generation.copy_from_slice(&header[12..20]);
    Ok(u64::from_be_bytes(generation))
}

/// An open log file that records are appended to.
///
/// Records are encoded into a buffer and written by [`LogFile::flush`].
/// After any failed write or fsync the file is marked broken and refuses
/// further work: the file may end in a partial record, and anything written
/// after it would turn a torn tail into mid-file corruption. Reopening the
/// log (which cuts the torn tail) is the way back.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Bytes already in the file.
    written: u64,
    broken: bool,
}

impl LogFile {
    /// Opens `path`, which holds `len` good bytes, for appending.
    ///
    /// # Errors
    /// [`StorageError::Io`] naming `path`.
    pub(crate) fn open(path: &Path, len: u64) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            pending: Vec::new(),
            written: len,
            broken: false,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file once buffered records are written.
    pub(crate) fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Buffers `record`, writing the buffer out once it is large.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file is broken or the write fails.
    pub(crate) fn push(&mut self, record: &Record) -> Result<(), StorageError> {
        self.check()?;
        record.encode(&mut self.pending);
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered records to the file (no fsync).
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file is broken or the write fails.
    pub(crate) fn flush(&mut self) -> Result<(), StorageError> {
        self.check()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            return Err(self.fail(e));
        }
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Flushes and fsyncs the file's data.
    ///
    /// # Errors
    /// [`StorageError::Io`] if the file is broken, or the write or fsync
    /// fails. A failed fsync breaks the file: the kernel may have dropped
    /// the dirty pages, so a retry could report success for lost data.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        if let Err(e) = self.file.sync_data() {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// Marks the file unusable (the data directory moved on without it).
    pub(crate) fn poison(&mut self) {
        self.broken = true;
    }

    fn fail(&mut self, e: io::Error) -> StorageError {
        self.broken = true;
        StorageError::io(&self.path, e)
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.broken {
            let e = io::Error::other("an earlier write failed; reopen the data directory");
            return Err(StorageError::io(&self.path, e));
        }
        Ok(())
    }
}

// By hand, so that debug output shows the buffer's size, not its bytes.
impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("written", &self.written)
            .field("pending", &self.pending.len())
            .field("broken", &self.broken)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_foreign_files() {
        let path = Path::new("/d/log");
        let header = encode_header(7);
        assert_eq!(header.len(), LOG_HEADER_LEN);
        assert_eq!(&header[..12], b"FACTLOG\n\0\0\0\x02");
        assert_eq!(parse_header(path, &header).unwrap(), 7);
        assert!(parse_header(path, &header[..19]).is_err());
        let mut v1 = header.clone();
        v1[11] = 1;
        assert_eq!(parse_header(path, &v1).unwrap(), 7);
        assert_eq!(header_version(&v1), LOG_VERSION_1);
        let mut v3 = header.clone();
        v3[11] = 3;
        let err = parse_header(path, &v3).unwrap_err();
        assert!(err.to_string().contains("version 3"), "{err}");
    }
}

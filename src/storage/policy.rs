//! [`FsyncPolicy`]: how hard [`super::DiskLog`] works to make writes survive
//! a machine crash. The server parses it from its command line.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Under [`FsyncPolicy::Batch`], the least time between two fsyncs.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// When the log is fsynced.
///
/// Every policy survives a crash of the server process: `sync` always
/// hands buffered records to the kernel. The policies differ in what
/// survives a crash of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every `sync` fsyncs: what `sync` returned for survives.
    Always,
    /// `sync` fsyncs at most every [`BATCH_INTERVAL`]; in between it only
    /// writes, so a `sync` may return (and the write be acknowledged)
    /// before its fsync: the last few milliseconds may be lost.
    Batch,
    /// The log's records are never fsynced (not even epochs): for tests and
    /// benchmarks. Snapshot installs and new log files are still fsynced,
    /// as in every policy, so that a power cut never stops a restart.
    Never,
}

impl FsyncPolicy {
    /// Whether `sync` should fsync now, given when it last did.
    pub(crate) fn wants_fsync(self, last: Option<Instant>, now: Instant) -> bool {
        match self {
            FsyncPolicy::Always => true,
            FsyncPolicy::Never => false,
            FsyncPolicy::Batch => {
                last.is_none_or(|t| now.saturating_duration_since(t) >= BATCH_INTERVAL)
            }
        }
    }

    /// Whether one-off steps (epochs, snapshots, new files) are fsynced.
    pub(crate) fn durable(self) -> bool {
        self != FsyncPolicy::Never
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Never => "never",
        })
    }
}

/// A string that names no [`FsyncPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsePolicyError(pub String);

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown fsync policy {:?} (expected always, batch or never)",
            self.0
        )
    }
}

impl std::error::Error for ParsePolicyError {}

impl FromStr for FsyncPolicy {
    type Err = ParsePolicyError;

    /// Parses `always`, `batch` or `never`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never]
            .into_iter()
            .find(|p| s.eq_ignore_ascii_case(&p.to_string()))
            .ok_or_else(|| ParsePolicyError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_fsyncs_once_per_interval() {
        let t0 = Instant::now();
        let batch = FsyncPolicy::Batch;
        assert!(batch.wants_fsync(None, t0));
        assert!(!batch.wants_fsync(Some(t0), t0 + Duration::from_millis(9)));
        assert!(batch.wants_fsync(Some(t0), t0 + BATCH_INTERVAL));
        assert!(FsyncPolicy::Always.wants_fsync(Some(t0), t0));
        assert!(!FsyncPolicy::Never.wants_fsync(None, t0));
    }
}

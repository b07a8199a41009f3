//! Bounding the log: once it holds more than twice `--log-retain` entries,
//! the in-memory log forgets committed entries beyond the last
//! `--log-retain` (a backup that far behind is caught up by snapshot
//! instead), and the durable log is rewritten as a snapshot of the records
//! at the commit point plus the entries after it.
//!
//! Every server compacts: the primary from its term loop, a backup after
//! each append it acknowledges (`follower`). A backup keeps the same
//! `--log-retain` committed entries in memory, which is what it needs to
//! catch others up by log suffix should it become primary; on disk it keeps
//! everything after its commit point, which it needs to restart.

use super::Shared;
use crate::storage::Snapshot;

/// Bytes of log, in memory or on disk, beyond which it is compacted
/// whatever its entry count, once it is also larger than the string store
/// (string writes make entries of up to 1 MiB: `--log-retain` entries of
/// them could fill the memory and the disk; and compacting a log much
/// smaller than the snapshot it becomes would rewrite the store often).
pub(crate) const LOG_BYTES: usize = 64 << 20;

/// Compacts the in-memory and the durable log if they grew too long.
pub(crate) fn compact(shared: &Shared) {
    let retain = shared.log_retain.max(1) as i64;
    let bound = LOG_BYTES.max(shared.records.kv().memory_bytes());
    let mut replica = shared.replica();
    let held = i64::from(replica.last_index()) - i64::from(replica.log().first_index()) + 1;
    let too_large = replica.log().bytes() > bound;
    if held > 2 * retain || too_large {
        // By bytes, only what is not committed yet stays: a backup behind
        // it is caught up by snapshot.
        let keep = if too_large { 0 } else { retain };
        let through = i64::from(replica.committed_index()) - keep;
        if through >= 0 {
            replica.compact_through(through as i32);
            log::debug!("log compacted through index {through}");
        }
    }
    if shared.durable.entry_count() as i64 <= 2 * retain
        && shared.durable.log_bytes() <= bound as u64
    {
        return;
    }
    // The records are applied under the replica lock: while we hold it they
    // are exactly the state at the commit point.
    let c = replica.committed_index();
    let snapshot = Snapshot {
        last_index: c,
        last_epoch: replica.log().epoch_at(c).unwrap_or(0),
        in_sync: replica.in_sync_at(c).unwrap_or_default(),
        records: shared.records.records(),
        kv: shared.records.kv_clone(),
    };
    let after = replica.log().range(c + 1, replica.last_index()).to_vec();
    match shared.durable.install_snapshot(&snapshot, &after) {
        Ok(()) => log::info!(
            "durable log compacted: snapshot of {} records and {} string keys through index {c}",
            snapshot.records.len(),
            snapshot.kv.len()
        ),
        Err(e) => log::error!("durable log compaction failed: {e}"),
    }
}

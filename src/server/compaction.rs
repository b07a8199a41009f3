//! Bounding the log: once it holds an eighth more than `--log-retain`
//! entries, the in-memory log forgets committed entries beyond the last
//! `--log-retain` (a backup that far behind is caught up by snapshot
//! instead); once the durable log holds twice that many, it is rewritten as
//! a snapshot of the records at the commit point plus the entries after it.
//!
//! Why an eighth: a retained entry costs its 32-byte slot (its record is
//! the store's, see `state::versioned`), and the slots in use at the peak
//! stay touched memory. Against `--log-retain 1000`, a million-key store
//! paid 6.4 / 5.9 bytes per key (16 / 100-byte values) for the log trimmed
//! at twice `--log-retain`, 3.2 / 4.7 trimmed at an eighth (kvbench.py
//! memory). Trimming more often moves the retained slots down more often:
//! by arithmetic, 256 bytes moved per entry written. The durable log is
//! rewritten less often, since each rewrite writes the whole store.
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
    let committed = i64::from(replica.committed_index());
    if let Some(through) = trim_through(held, retain, committed, too_large) {
        replica.compact_through(through);
        log::debug!("log compacted through index {through}");
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

/// The index through which the in-memory log is trimmed, if it is: when
/// it holds an eighth more than `retain` entries (see the module's note),
/// down to the last `retain` committed ones; when it is `too_large` in
/// bytes, down to what is not committed yet (a backup behind that is
/// caught up by snapshot).
fn trim_through(held: i64, retain: i64, committed: i64, too_large: bool) -> Option<i32> {
    if held <= retain + (retain / 8).max(1) && !too_large {
        return None;
    }
    let keep = if too_large { 0 } else { retain };
    let through = committed - keep;
    // Indexes are i32 (the log never grows past i32::MAX entries).
    (through >= 0).then_some(through as i32)
}

#[cfg(test)]
mod tests {
    use super::trim_through;

    #[test]
    fn the_log_is_trimmed_an_eighth_past_retain_down_to_retain() {
        // 1,000 retained: trimmed from 1,126 held, to the last 1,000 committed.
        assert_eq!(trim_through(1_125, 1_000, 5_000, false), None);
        assert_eq!(trim_through(1_126, 1_000, 5_000, false), Some(4_000));
        // Only committed entries go: with little committed, nothing yet.
        assert_eq!(trim_through(1_126, 1_000, 999, false), None);
        // A tiny retain still leaves room for one more entry.
        assert_eq!(trim_through(2, 1, 10, false), None);
        assert_eq!(trim_through(3, 1, 10, false), Some(9));
        // Too many bytes: down to the commit point, whatever the count.
        assert_eq!(trim_through(10, 1_000, 7, true), Some(7));
    }
}

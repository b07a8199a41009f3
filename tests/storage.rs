//! The durable log on real files in temporary directories: round trips,
//! truncation, epochs and commits, torn tails at every cut point, corruption,
//! foreign files, snapshot installs and crashes in the middle of one.
//!
//! Offsets asserted below follow the format in `src/storage/mod.rs`: a
//! 20-byte log header, and 30 bytes per record of a "set" entry
//! (8 frame header + kind 1 + index 4 + entry 17).

use std::fs;
use std::path::Path;

use factory::storage::{DiskLog, FsyncPolicy, Recovered, Snapshot, StorageError};
use factory::wire::{Entry, MemberSet, Op};

const HEADER: u64 = 20;
const SET_RECORD: u64 = 30;

fn set(order: i32) -> Entry {
    Entry::set(1, 100 + order, order)
}

fn sets(orders: std::ops::Range<i32>) -> Vec<Entry> {
    orders.map(set).collect()
}

fn open(dir: &Path) -> (DiskLog, Recovered) {
    DiskLog::open(dir, FsyncPolicy::Always).expect("open")
}

fn open_err(dir: &Path) -> StorageError {
    DiskLog::open(dir, FsyncPolicy::Always).expect_err("open should fail")
}

/// A data directory holding `n` synced "set" entries; returns the log bytes.
fn log_with_sets(dir: &Path, n: i32) -> Vec<u8> {
    let (mut log, _) = open(dir);
    log.append(0, &sets(0..n)).unwrap();
    log.sync().unwrap();
    fs::read(log.log_path()).unwrap()
}

#[test]
fn append_sync_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/data");
    let (mut log, rec) = open(&dir);
    assert_eq!(rec.entries, vec![]);
    assert_eq!(
        (rec.first_index, rec.committed_index, rec.epoch),
        (0, -1, 0)
    );
    assert!(rec.snapshot.is_none() && rec.truncated_tail.is_none());

    let in_sync = MemberSet::from_ids([1, 2]).unwrap();
    let entries = vec![
        Entry {
            epoch: 5,
            op: Op::InSync(Box::new(in_sync)),
        },
        Entry::set(5, 7, 42),
        Entry {
            epoch: 5,
            op: Op::Noop,
        },
    ];
    log.set_epoch(5).unwrap();
    log.append(0, &entries).unwrap();
    log.note_commit(1).unwrap();
    assert!(log.sync().unwrap(), "Always fsyncs");
    assert_eq!(log.entry_count(), 3);
    assert_eq!(log.log_bytes(), fs::metadata(log.log_path()).unwrap().len());
    assert_eq!(log.log_path(), dir.join("log"));
    drop(log);

    let (log, rec) = open(&dir);
    assert_eq!(rec.entries, entries);
    assert_eq!((rec.first_index, rec.committed_index, rec.epoch), (0, 1, 5));
    assert!(rec.truncated_tail.is_none());
    assert_eq!((log.entry_count(), log.last_index()), (3, 2));
}

#[test]
fn append_must_continue_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.append(0, &sets(0..2)).unwrap();
    let err = log.append(5, &sets(0..1)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::NotNext {
                expected: 2,
                got: 5
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("expected the next index 2"),
        "{err}"
    );
    log.append(2, &[]).unwrap();
    assert_eq!(log.entry_count(), 2);
}

#[test]
fn truncate_from_then_append() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.append(0, &sets(0..5)).unwrap();
    log.truncate_from(3).unwrap();
    assert_eq!(log.entry_count(), 3);
    log.append(3, &sets(30..32)).unwrap();
    log.truncate_from(9).unwrap(); // past the end: nothing to drop
    log.sync().unwrap();
    drop(log);

    let (log, rec) = open(tmp.path());
    let mut expected = sets(0..3);
    expected.extend(sets(30..32));
    assert_eq!(rec.entries, expected);
    assert_eq!(log.last_index(), 4);
}

#[test]
fn epochs_keep_the_max() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.set_epoch(0x0002_0001).unwrap();
    log.set_epoch(0x0001_0003).unwrap();
    drop(log); // set_epoch is durable without sync()
    let (log, rec) = open(tmp.path());
    assert_eq!((rec.epoch, log.epoch()), (0x0002_0001, 0x0002_0001));
}

#[test]
fn commits_never_claim_beyond_the_last_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.note_commit(4).unwrap();
    assert_eq!(log.committed_index(), -1, "no entries to commit");
    log.append(0, &sets(0..3)).unwrap();
    log.note_commit(10).unwrap();
    assert_eq!(log.committed_index(), 2);
    log.note_commit(1).unwrap(); // lower: no change
    log.truncate_from(1).unwrap();
    log.append(1, &sets(10..14)).unwrap();
    log.sync().unwrap();
    drop(log);
    // The truncation pulled the commit back to 0; re-appending does not
    // bring the old claim back.
    let (_, rec) = open(tmp.path());
    assert_eq!((rec.entries.len(), rec.committed_index), (5, 0));
}

#[test]
fn a_torn_last_record_is_cut_at_every_length() {
    let tmp = tempfile::tempdir().unwrap();
    let full = log_with_sets(&tmp.path().join("source"), 3);
    let last = HEADER + 2 * SET_RECORD;
    assert_eq!(full.len() as u64, last + SET_RECORD);
    for kept in 1..SET_RECORD {
        let dir = tmp.path().join(format!("cut{kept}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("log"), &full[..(last + kept) as usize]).unwrap();

        let (mut log, rec) = DiskLog::open(&dir, FsyncPolicy::Never).unwrap();
        assert_eq!(rec.entries, sets(0..2), "kept {kept} bytes");
        assert_eq!(rec.truncated_tail, Some((dir.join("log"), last)));
        assert_eq!(fs::metadata(dir.join("log")).unwrap().len(), last);
        log.append(2, &[set(9)]).unwrap();
        log.sync().unwrap();
        drop(log);

        let (_, rec) = DiskLog::open(&dir, FsyncPolicy::Never).unwrap();
        assert_eq!(rec.entries, vec![set(0), set(1), set(9)]);
        assert_eq!(rec.truncated_tail, None);
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = log_with_sets(tmp.path(), 3);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(tmp.path().join("log"), &bytes).unwrap();
    let (_, rec) = open(tmp.path());
    assert_eq!(rec.entries, sets(0..2));
    let cut = HEADER + 2 * SET_RECORD;
    assert_eq!(rec.truncated_tail, Some((tmp.path().join("log"), cut)));
}

#[test]
fn a_flipped_byte_in_an_earlier_record_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = log_with_sets(tmp.path(), 3);
    let second = HEADER + SET_RECORD; // 50
    bytes[second as usize + 20] ^= 0x01;
    let path = tmp.path().join("log");
    fs::write(&path, &bytes).unwrap();
    let err = open_err(tmp.path());
    match &err {
        StorageError::Corrupt {
            path: p, offset, ..
        } => {
            assert_eq!((p, *offset), (&path, 50));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("offset 50"), "{msg}");
    // Refusing to start must not touch the file.
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn foreign_and_short_files_are_bad_headers_but_an_empty_file_is_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    fs::write(&path, b"NOTALOG\n\0\0\0\x01\0\0\0\0\0\0\0\0").unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    fs::write(&path, b"FACTLOG\n").unwrap();
    assert!(matches!(
        open_err(tmp.path()),
        StorageError::BadHeader { .. }
    ));

    fs::write(&path, b"").unwrap();
    let (mut log, rec) = open(tmp.path());
    assert!(rec.entries.is_empty() && rec.truncated_tail.is_none());
    assert_eq!(log.log_bytes(), HEADER);
    log.append(0, &[set(0)]).unwrap();
    log.sync().unwrap();
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        last_index: 9,
        last_epoch: 3,
        in_sync: MemberSet::from_ids([0, 2]).unwrap(),
        records: vec![(100, 7), (101, 9)],
        kv: Default::default(),
    }
}

#[test]
fn install_snapshot_then_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.set_epoch(3).unwrap();
    log.append(0, &sets(0..12)).unwrap();
    log.note_commit(10).unwrap();
    log.install_snapshot(&sample_snapshot(), &sets(10..12))
        .unwrap();
    assert_eq!((log.first_index(), log.entry_count()), (10, 2));
    assert_eq!(log.log_bytes(), fs::metadata(log.log_path()).unwrap().len());
    let err = log.truncate_from(9).unwrap_err();
    assert!(matches!(
        err,
        StorageError::Compacted {
            from: 9,
            first_index: 10
        }
    ));
    log.append(12, &[set(12)]).unwrap();
    log.sync().unwrap();
    drop(log);

    let (log, rec) = open(tmp.path());
    assert_eq!(rec.snapshot, Some(sample_snapshot()));
    assert_eq!(rec.first_index, 10);
    assert_eq!(rec.entries, sets(10..13));
    assert_eq!((rec.epoch, rec.committed_index), (3, 10));
    assert_eq!(log.last_index(), 12);
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names: Vec<_> = names.iter().map(|n| n.to_str().unwrap()).collect();
    names.sort_unstable();
    // log.prev: the generation before (0, which has no snapshot), kept to
    // fall back to.
    assert_eq!(names, ["log", "log.prev", "snapshot"]);
}

#[test]
fn a_second_install_replaces_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.install_snapshot(&sample_snapshot(), &[]).unwrap();
    let empty = Snapshot {
        last_index: -1,
        ..Snapshot::default()
    };
    log.install_snapshot(&empty, &sets(0..2)).unwrap();
    drop(log);
    let (_, rec) = open(tmp.path());
    assert_eq!(rec.snapshot, Some(empty));
    assert_eq!((rec.first_index, rec.entries), (0, sets(0..2)));
}

#[test]
fn snapshots_outside_the_index_range_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    for last_index in [-2, i32::MAX] {
        let snap = Snapshot {
            last_index,
            ..Snapshot::default()
        };
        let err = log.install_snapshot(&snap, &[]).unwrap_err();
        assert!(matches!(err, StorageError::OutOfRange { .. }), "{err}");
    }
    // Nothing was written, so the log is still usable.
    log.append(0, &[set(0)]).unwrap();
    log.sync().unwrap();
}

#[test]
fn stray_temp_files_from_a_crash_before_the_renames_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.append(0, &sets(0..3)).unwrap();
    log.sync().unwrap();
    drop(log);
    // A crash while install_snapshot wrote its temporary files.
    fs::write(tmp.path().join("snapshot.tmp"), b"FACTSNP\n half").unwrap();
    fs::write(tmp.path().join("log.tmp"), b"FACTLOG\n").unwrap();
    let (_, rec) = open(tmp.path());
    assert_eq!((rec.snapshot, rec.entries), (None, sets(0..3)));
    assert!(!tmp.path().join("snapshot.tmp").exists());
    assert!(!tmp.path().join("log.tmp").exists());
}

#[test]
fn a_crash_between_the_two_renames_finishes_the_install() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    log_with_sets(&old, 12);
    fs::create_dir(&new).unwrap();
    fs::copy(old.join("log"), new.join("log")).unwrap();
    let (mut log, _) = open(&new);
    log.install_snapshot(&sample_snapshot(), &sets(10..12))
        .unwrap();
    drop(log);
    // The old directory as a crash would leave it: new snapshot in place,
    // new log still under its temporary name.
    fs::copy(new.join("snapshot"), old.join("snapshot")).unwrap();
    fs::copy(new.join("log"), old.join("log.tmp")).unwrap();

    let (_, rec) = open(&old);
    assert_eq!(rec.snapshot, Some(sample_snapshot()));
    assert_eq!((rec.first_index, rec.entries), (10, sets(10..12)));
    assert!(!old.join("log.tmp").exists());
}

#[test]
fn a_log_from_another_snapshot_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.install_snapshot(&sample_snapshot(), &[]).unwrap();
    drop(log);
    fs::remove_file(tmp.path().join("log")).unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("generation 1"), "{err}");
}

#[test]
fn a_damaged_snapshot_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.install_snapshot(&sample_snapshot(), &[]).unwrap();
    drop(log);
    let path = tmp.path().join("snapshot");
    let mut bytes = fs::read(&path).unwrap();
    bytes[30] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = open_err(tmp.path());
    assert!(
        matches!(err, StorageError::Corrupt { offset: 20, .. }),
        "{err}"
    );
}

#[test]
fn sync_follows_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    for (policy, first_sync) in [
        (FsyncPolicy::Always, true),
        (FsyncPolicy::Batch, true),
        (FsyncPolicy::Never, false),
    ] {
        let dir = tmp.path().join(policy.to_string());
        let (mut log, _) = DiskLog::open(&dir, policy).unwrap();
        log.append(0, &[set(0)]).unwrap();
        assert_eq!(log.sync().unwrap(), first_sync, "{policy}");
        drop(log);
        // Every policy hands the records to the kernel.
        assert_eq!(open(&dir).1.entries, vec![set(0)], "{policy}");
    }
}

#[test]
fn fsync_policies_parse_and_print() {
    for (text, policy) in [
        ("always", FsyncPolicy::Always),
        ("batch", FsyncPolicy::Batch),
        ("never", FsyncPolicy::Never),
    ] {
        assert_eq!(text.parse::<FsyncPolicy>(), Ok(policy));
        assert_eq!(policy.to_string(), text);
    }
    assert_eq!("BATCH".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Batch));
    let err = "sometimes".parse::<FsyncPolicy>().unwrap_err();
    assert!(err.to_string().contains("\"sometimes\""), "{err}");
}

fn other_snapshot() -> Snapshot {
    Snapshot {
        last_index: 13,
        last_epoch: 3,
        in_sync: MemberSet::from_ids([0]).unwrap(),
        records: vec![(100, 12), (101, 13)],
        kv: Default::default(),
    }
}

/// A directory after two installs (generations 1 and 2) and one entry
/// appended after each.
fn two_generations(dir: &Path) {
    let (mut log, _) = open(dir);
    log.set_epoch(3).unwrap();
    log.append(0, &sets(0..12)).unwrap();
    log.note_commit(10).unwrap();
    log.install_snapshot(&sample_snapshot(), &sets(10..12))
        .unwrap();
    log.append(12, &sets(12..15)).unwrap();
    log.note_commit(14).unwrap();
    log.sync().unwrap();
    log.install_snapshot(&other_snapshot(), &sets(14..15))
        .unwrap();
    log.append(15, &[set(15)]).unwrap();
    log.sync().unwrap();
}

#[test]
fn a_torn_snapshot_falls_back_to_the_previous_generation() {
    let whole = {
        let tmp = tempfile::tempdir().unwrap();
        two_generations(tmp.path());
        fs::read(tmp.path().join("snapshot")).unwrap()
    };
    // Empty (renamed into place before its data reached the disk), a cut
    // header, a cut body, zeros.
    let torn = [
        Vec::new(),
        whole[..10].to_vec(),
        whole[..whole.len() - 3].to_vec(),
        vec![0; whole.len()],
    ];
    for (i, bytes) in torn.iter().enumerate() {
        for policy in [FsyncPolicy::Always, FsyncPolicy::Never] {
            let tmp = tempfile::tempdir().unwrap();
            two_generations(tmp.path());
            fs::write(tmp.path().join("snapshot"), bytes).unwrap();
            let (mut log, rec) = DiskLog::open(tmp.path(), policy).expect("falls back");
            // Generation 1 and its log as the second install found it.
            assert_eq!(rec.snapshot, Some(sample_snapshot()), "case {i}");
            assert_eq!((rec.first_index, rec.entries), (10, sets(10..15)));
            assert_eq!((rec.epoch, rec.committed_index), (3, 14));
            log.append(15, &[set(15)]).unwrap();
            log.install_snapshot(&other_snapshot(), &sets(14..16))
                .unwrap();
            drop(log);
            let (_, rec) = open(tmp.path());
            assert_eq!(rec.snapshot, Some(other_snapshot()));
        }
    }
}

#[test]
fn a_torn_first_snapshot_falls_back_to_the_log_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut log, _) = open(tmp.path());
    log.append(0, &sets(0..12)).unwrap();
    log.install_snapshot(&sample_snapshot(), &sets(10..12))
        .unwrap();
    drop(log);
    fs::write(tmp.path().join("snapshot"), b"").unwrap();
    let (_, rec) = open(tmp.path());
    assert_eq!((rec.snapshot, rec.entries), (None, sets(0..12)));
    assert!(!tmp.path().join("snapshot").exists());
}

#[test]
fn a_torn_snapshot_without_a_previous_generation_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    two_generations(tmp.path());
    fs::write(tmp.path().join("snapshot"), b"").unwrap();
    fs::remove_file(tmp.path().join("log.prev")).unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("torn (0 bytes)"), "{err}");
}

#[test]
fn an_empty_log_next_to_a_snapshot_is_never_taken_for_a_new_directory() {
    for bytes in [&b""[..], &[0; 20][..]] {
        let tmp = tempfile::tempdir().unwrap();
        two_generations(tmp.path());
        fs::write(tmp.path().join("log"), bytes).unwrap();
        // always and batch fsync the log's header before the snapshot it
        // continues is installed: an empty log is damage, refused.
        for policy in [FsyncPolicy::Always, FsyncPolicy::Batch] {
            let err = DiskLog::open(tmp.path(), policy).unwrap_err();
            assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
            assert!(err.to_string().contains("generation 2"), "{err}");
        }
        // never may lose the log after a snapshot: start from the snapshot
        // alone, keeping its epoch.
        let (mut log, rec) = DiskLog::open(tmp.path(), FsyncPolicy::Never).unwrap();
        assert_eq!(rec.snapshot, Some(other_snapshot()));
        assert_eq!((rec.first_index, rec.entries.len()), (14, 0));
        assert_eq!((rec.epoch, log.last_index()), (3, 13));
        log.append(14, &[set(14)]).unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, rec) = open(tmp.path());
        assert_eq!((rec.epoch, rec.entries), (3, vec![set(14)]));
    }
}

#[test]
fn an_empty_log_with_no_other_evidence_is_a_new_directory_but_not_with_log_prev() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("log"), [0; 7]).unwrap();
    let (_, rec) = open(tmp.path());
    assert!(rec.snapshot.is_none() && rec.entries.is_empty());
    fs::write(tmp.path().join("log"), b"").unwrap();
    fs::write(tmp.path().join("log.prev"), encode_header_bytes()).unwrap();
    let err = open_err(tmp.path());
    assert!(err.to_string().contains("log.prev"), "{err}");
}

fn encode_header_bytes() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path()));
    fs::read(tmp.path().join("log")).unwrap()
}

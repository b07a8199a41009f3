//! A data directory written by the format before string writes (log and
//! snapshot format version 1, as written by commit 9435311, which has the
//! same storage format as 749747e) opens, keeps everything it held, is
//! upgraded to the current version and takes string writes afterwards.
//!
//! `tests/data/v1-data-dir` was made by that commit's `DiskLog`: ten sets
//! (customers 0..4) at epoch 0x10000, committed and folded into snapshot
//! generation 1 at index 9 (in-sync set {0, 1, 2}); then epoch 0x20001,
//! sets of customers 10..15 at indexes 10..14, an in-sync entry {0, 1} at
//! 15, a set of customer 2 at 16, committed through 16.

use std::fs;
use std::path::{Path, PathBuf};

use factory::state::kv::KvWrite;
use factory::storage::{DiskLog, FsyncPolicy};
use factory::wire::{Entry, MemberSet, Op};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-data-dir")
}

/// A copy of the fixture, so the test never changes the checked-in files.
fn copy_fixture(to: &Path) {
    fs::create_dir_all(to).unwrap();
    for file in fs::read_dir(fixture()).unwrap() {
        let file = file.unwrap();
        fs::copy(file.path(), to.join(file.file_name())).unwrap();
    }
}

fn version(file: &Path) -> u32 {
    let bytes = fs::read(file).unwrap();
    u32::from_be_bytes(bytes[8..12].try_into().unwrap())
}

#[test]
fn the_fixture_is_format_version_1() {
    assert_eq!(version(&fixture().join("log")), 1);
    assert_eq!(version(&fixture().join("snapshot")), 1);
}

#[test]
fn a_version_1_directory_opens_with_everything_it_held() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    let (log, found) = DiskLog::open(&dir, FsyncPolicy::Always).expect("open v1 dir");
    assert_eq!(found.epoch, 0x2_0001);
    let snap = found.snapshot.expect("snapshot");
    assert_eq!(snap.last_index, 9);
    assert_eq!(snap.last_epoch, 0x1_0000);
    assert_eq!(snap.in_sync, MemberSet::from_ids([0, 1, 2]).unwrap());
    let mut records = snap.records.clone();
    records.sort_unstable();
    assert_eq!(records, [(0, 108), (1, 109), (2, 106), (3, 107)]);
    assert_eq!(found.first_index, 10);
    let mut expected: Vec<Entry> = (10..15).map(|i| Entry::set(0x2_0001, i, 200 + i)).collect();
    expected.push(Entry {
        epoch: 0x2_0001,
        op: Op::InSync(Box::new(MemberSet::from_ids([0, 1]).unwrap())),
    });
    expected.push(Entry::set(0x2_0001, 2, 999));
    assert_eq!(found.entries, expected);
    assert_eq!(found.committed_index, 16);
    assert_eq!(log.last_index(), 16);
}

#[test]
fn the_upgraded_directory_takes_string_writes_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    let (mut log, _) = DiskLog::open(&dir, FsyncPolicy::Always).unwrap();
    assert_eq!(version(&dir.join("log")), 2, "log header upgraded on open");
    let write = Entry::kv(0x2_0001, KvWrite::put(b"key", &vec![0xee; 100_000]));
    log.append(17, std::slice::from_ref(&write)).unwrap();
    log.note_commit(17).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, found) = DiskLog::open(&dir, FsyncPolicy::Always).unwrap();
    assert_eq!(found.entries.len(), 8);
    assert_eq!(found.entries.last(), Some(&write));
    assert_eq!(found.committed_index, 17);
    assert_eq!(log.last_index(), 17);
}

#[test]
fn a_snapshot_with_string_keys_installs_and_reopens() {
    use factory::state::kv::{KvStore, Versioned};
    use factory::storage::Snapshot;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_fixture(&dir);
    let (mut log, _) = DiskLog::open(&dir, FsyncPolicy::Always).unwrap();
    let mut kv = KvStore::new();
    for i in 0..5u8 {
        let version = 20 + u64::from(i);
        kv.restore(Versioned::new(version, &[i; 3], &vec![i; 900_000]));
    }
    let snap = Snapshot {
        last_index: 16,
        last_epoch: 0x2_0001,
        in_sync: MemberSet::from_ids([0, 1]).unwrap(),
        records: vec![(0, 108), (2, 999)],
        kv,
    };
    log.install_snapshot(&snap, &[]).unwrap();
    drop(log);
    assert_eq!(
        version(&dir.join("snapshot")),
        2,
        "written in the new format"
    );
    let (_, found) = DiskLog::open(&dir, FsyncPolicy::Always).unwrap();
    assert_eq!(found.snapshot, Some(snap));
}

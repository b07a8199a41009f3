//! Each test names the rule of PROTOCOL.md §4 it checks.
use super::*;
use crate::wire::MapOp;

fn set(customer: i32, order: i32) -> Entry {
    Entry::set(V1_EPOCH, customer, order)
}

fn frame(primary: i32, committed: i32, index: i32, op: MapOp) -> ReplicationRequest {
    ReplicationRequest {
        primary_id: primary,
        committed_index: committed,
        last_index: index,
        op,
    }
}

#[test]
fn new_replica_has_empty_indexes() {
    let r = Replica::new(3);
    assert_eq!(
        (r.last_index(), r.committed_index(), r.primary_id()),
        (-1, -1, -1)
    );
    assert!(!r.is_primary());
}

#[test]
fn primary_role_is_taken_in_an_epoch() {
    let mut r = Replica::new(1);
    let epoch = next_epoch(0, 1);
    r.become_primary_in(epoch);
    assert!(r.is_primary() && r.trusted());
    assert_eq!((r.primary_id(), r.epoch()), (1, epoch));
}

#[test]
fn s4_primary_appends_then_commits_and_applies_range() {
    let mut r = Replica::new(0);
    r.become_primary_in(next_epoch(r.epoch(), r.id()));
    assert_eq!(r.append(set(7, 1)), Ok(0));
    assert_eq!(r.append(set(8, 2)), Ok(1));
    assert_eq!(r.committed_index(), -1);
    assert_eq!(r.commit_through(1), &[set(7, 1), set(8, 2)]);
    assert_eq!(r.committed_index(), 1);
    assert!(r.commit_through(1).is_empty(), "nothing is applied twice");
    assert!(r.commit_through(0).is_empty(), "commit never moves back");
    assert!(r.commit_through(50).is_empty(), "clamped to the log");
    assert_eq!(r.committed_index(), 1);
}

#[test]
fn s3_frame_carries_commit_point_before_the_entry() {
    let mut r = Replica::new(0);
    r.become_primary_in(next_epoch(r.epoch(), r.id()));
    r.append(set(7, 42)).unwrap();
    r.commit_through(0);
    let i = r.append(set(7, 43)).unwrap();
    assert_eq!(
        r.replication_request(i),
        Some(frame(0, 0, 1, MapOp::set(7, 43)))
    );
    assert_eq!(r.replication_request(2), None);
}

#[test]
fn s4_backup_stores_applies_commit_point_and_acks() {
    let mut b = Replica::new(2);
    let (ack, applied) = b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
    assert!(applied.is_empty(), "entry 0 is not committed yet");
    assert_eq!(
        ack,
        ReplicationAck {
            replica_id: 2,
            last_index: 0
        }
    );
    assert_eq!(b.primary_id(), 0);

    let (ack, applied) = b.on_replicate(&frame(0, 0, 1, MapOp::set(7, 2))).unwrap();
    assert_eq!(applied, &[set(7, 1)], "trails the primary by one");
    assert_eq!(ack.last_index, 1);
    assert_eq!(b.committed_index(), 0);
}

#[test]
fn s4_stream_close_forgets_the_primary() {
    let mut b = Replica::new(2);
    b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
    b.on_stream_closed();
    assert_eq!(b.primary_id(), NO_PRIMARY);
    let mut p = Replica::new(1);
    p.become_primary_in(next_epoch(p.epoch(), p.id()));
    p.on_stream_closed();
    assert!(p.is_primary(), "a primary keeps its role");
}

#[test]
fn s4_backup_taking_over_commits_what_it_trailed() {
    let mut b = Replica::new(1);
    b.on_replicate(&frame(0, -1, 0, MapOp::set(7, 1))).unwrap();
    b.on_replicate(&frame(0, 0, 1, MapOp::set(7, 2))).unwrap();
    b.on_stream_closed();
    b.become_primary_in(next_epoch(b.epoch(), b.id()));
    let i = b.append(set(9, 9)).unwrap();
    assert_eq!(i, 2);
    assert_eq!(b.commit_through(i), &[set(7, 2), set(9, 9)]);
}

#[test]
fn new_primary_behind_us_wins() {
    let mut b = Replica::new(2);
    for i in 0..5 {
        b.on_replicate(&frame(0, i - 1, i, MapOp::set(1, i)))
            .unwrap();
    }
    assert_eq!((b.last_index(), b.committed_index()), (4, 3));
    // Server 1 took over with a log ending at 2, commit point 1.
    let (ack, applied) = b.on_replicate(&frame(1, 1, 3, MapOp::set(1, 100))).unwrap();
    assert!(applied.is_empty());
    assert_eq!(ack.last_index, 3, "entry 4 of the old primary is dropped");
    let (_, applied) = b.on_replicate(&frame(1, 3, 4, MapOp::set(1, 101))).unwrap();
    assert_eq!(applied, &[set(1, 2), set(1, 100)]);
}

#[test]
fn a_gap_is_refused_without_change() {
    let mut b = Replica::new(2);
    let gap = b.on_replicate(&frame(0, 9, 10, MapOp::set(5, 5)));
    assert_eq!(
        gap.unwrap_err(),
        StateError::IndexGap {
            index: 10,
            last_index: -1
        }
    );
    b.on_replicate(&frame(0, -1, 0, MapOp::set(5, 5))).unwrap();
    let gap = b.on_replicate(&frame(0, 0, 2, MapOp::set(5, 6)));
    assert!(matches!(gap, Err(StateError::IndexGap { index: 2, .. })));
    assert_eq!((b.last_index(), b.committed_index()), (0, -1));
    assert!(b.on_replicate(&frame(0, 0, 1, MapOp::set(5, 6))).is_ok());
}

#[test]
fn hostile_indexes_are_refused_without_change() {
    let mut b = Replica::new(2);
    let neg = b.on_replicate(&frame(0, -1, -5, MapOp::set(1, 1)));
    assert_eq!(neg.unwrap_err(), StateError::NegativeIndex { index: -5 });
    let neg = b.on_replicate(&frame(0, -1, i32::MIN, MapOp::set(1, 1)));
    assert!(matches!(neg, Err(StateError::NegativeIndex { .. })));
    for index in [1, 2, 1 << 20, i32::MAX - 1, i32::MAX] {
        let far = b.on_replicate(&frame(0, -1, index, MapOp::set(1, 1)));
        assert!(
            matches!(far, Err(StateError::IndexGap { .. })),
            "index {index}"
        );
    }
    assert_eq!((b.last_index(), b.primary_id()), (-1, -1));
    assert_eq!(b.log().range(0, i32::MAX).len(), 0, "nothing allocated");
}

#[test]
fn indexes_before_a_snapshot_are_refused() {
    let mut b = Replica::new(2);
    b.install_snapshot(9, 1, None);
    let old = b.on_replicate(&frame(0, 9, 3, MapOp::set(1, 1)));
    assert_eq!(
        old.unwrap_err(),
        StateError::IndexCompacted {
            index: 3,
            first_index: 10
        }
    );
    let (ack, _) = b.on_replicate(&frame(0, 9, 10, MapOp::set(1, 1))).unwrap();
    assert_eq!(ack.last_index, 10);
}

#[test]
fn commit_index_beyond_the_entry_is_refused_and_below_minus_one_clamped() {
    let mut b = Replica::new(2);
    let far = b.on_replicate(&frame(0, i32::MAX, 0, MapOp::set(1, 1)));
    assert_eq!(
        far.unwrap_err(),
        StateError::CommitBeyondEntry {
            committed_index: i32::MAX,
            index: 0
        }
    );
    assert_eq!((b.last_index(), b.committed_index()), (-1, -1));
    b.on_replicate(&frame(0, -1, 0, MapOp::set(1, 1))).unwrap();
    // The commit notice: the last entry again, now counted as committed.
    let (_, applied) = b.on_replicate(&frame(0, 0, 0, MapOp::set(1, 1))).unwrap();
    assert_eq!(applied, &[set(1, 1)]);
    assert_eq!(b.committed_index(), 0);
    let (_, applied) = b
        .on_replicate(&frame(0, i32::MIN, 1, MapOp::set(1, 2)))
        .unwrap();
    assert!(applied.is_empty());
    assert_eq!(b.committed_index(), -1);
}

// Native rules (issue 4): epochs, appends with a consistency check,
// snapshots, the in-sync set.

fn native(epoch: Epoch, customer: i32, order: i32) -> Entry {
    Entry::set(epoch, customer, order)
}

fn in_sync(ids: &[i32]) -> Entry {
    Entry {
        epoch: 1,
        op: Op::InSync(Box::new(MemberSet::from_ids(ids.iter().copied()).unwrap())),
    }
}

#[test]
fn epochs_are_ordered_and_unique_per_server() {
    let a = next_epoch(0, 1);
    let b = next_epoch(0, 2);
    assert!(a != b && a >> 16 == b >> 16);
    assert!(next_epoch(b, 1) > b && next_epoch(a, 2) > a);
    let mut r = Replica::new(1);
    assert!(r.adopt_epoch(b));
    assert!(!r.adopt_epoch(a), "an older epoch is not adopted");
    assert_eq!(r.epoch(), b);
}

#[test]
fn append_checks_the_previous_entry() {
    let mut b = Replica::new(2);
    let first = b
        .on_append(-1, 0, &[native(1, 7, 1), native(1, 7, 2)])
        .unwrap();
    assert_eq!(
        first,
        LogChange {
            truncated_from: None,
            first_appended: 0,
            appended: 2
        }
    );
    let err = b.on_append(5, 1, &[native(1, 7, 3)]).unwrap_err();
    assert_eq!(
        err,
        StateError::LogMismatch {
            prev_index: 5,
            last_index: 1
        }
    );
    let err = b.on_append(1, 9, &[native(9, 7, 3)]).unwrap_err();
    assert!(
        matches!(err, StateError::LogMismatch { .. }),
        "wrong epoch at prev"
    );
    assert_eq!(b.last_index(), 1, "a refused append changes nothing");
}

#[test]
fn repeated_appends_are_idempotent() {
    let mut b = Replica::new(2);
    let entries = [native(1, 7, 1), native(1, 8, 1)];
    b.on_append(-1, 0, &entries).unwrap();
    let again = b.on_append(-1, 0, &entries).unwrap();
    assert_eq!(again.appended, 0);
    assert_eq!(again.truncated_from, None);
    assert_eq!(b.last_index(), 1);
}

#[test]
fn a_divergent_suffix_is_truncated() {
    let mut b = Replica::new(2);
    b.on_append(-1, 0, &[native(1, 1, 1), native(1, 1, 2), native(1, 1, 3)])
        .unwrap();
    // The epoch-2 primary kept only entry 0 of epoch 1.
    let change = b.on_append(0, 1, &[native(2, 5, 5)]).unwrap();
    assert_eq!(
        change,
        LogChange {
            truncated_from: Some(1),
            first_appended: 1,
            appended: 1
        }
    );
    assert_eq!((b.last_index(), b.last_epoch()), (1, 2));
}

#[test]
fn in_sync_set_follows_the_log() {
    let mut r = Replica::new(0);
    assert_eq!(r.in_sync(), None, "never known");
    r.append(in_sync(&[0, 1, 2])).unwrap();
    r.append(native(1, 5, 5)).unwrap();
    r.append(in_sync(&[0, 2])).unwrap();
    assert_eq!(r.in_sync().unwrap().ids(), &[0, 2]);
    assert_eq!(r.in_sync_at(1).unwrap().ids(), &[0, 1, 2]);
    let mut b = Replica::new(1);
    b.on_append(-1, 0, &[in_sync(&[0, 1]), native(1, 1, 1), in_sync(&[0])])
        .unwrap();
    b.on_append(0, 1, &[native(2, 1, 2)]).unwrap();
    assert_eq!(
        b.in_sync().unwrap().ids(),
        &[0, 1],
        "truncation drops later changes"
    );
}

#[test]
fn snapshot_install_and_compaction() {
    let mut b = Replica::new(1);
    b.on_append(-1, 0, &[native(1, 1, 1)]).unwrap();
    let set = MemberSet::from_ids([0, 1]).unwrap();
    b.install_snapshot(99, 3, Some(set));
    assert_eq!(
        (b.last_index(), b.last_epoch(), b.committed_index()),
        (99, 3, 99)
    );
    assert_eq!(b.in_sync(), Some(set));
    assert!(b.on_append(99, 3, &[native(3, 2, 2)]).is_ok());

    let mut p = Replica::new(0);
    p.append(in_sync(&[0, 1])).unwrap();
    for i in 0..10 {
        p.append(native(1, i, i)).unwrap();
    }
    p.commit_through(6);
    p.compact_through(8);
    assert_eq!(p.log().first_index(), 7, "never past the commit point");
    assert_eq!(p.in_sync().unwrap().ids(), &[0, 1]);
    assert_eq!(p.log().epoch_at(6), Some(1));
}

#[test]
fn restored_replicas_are_not_trusted() {
    let mut log = Log::new();
    log.append(native(4, 1, 1));
    let r = Replica::restore(3, log, None, 5, 7);
    assert!(!r.trusted());
    assert_eq!(
        (r.epoch(), r.committed_index(), r.primary_id()),
        (5, 0, NO_PRIMARY)
    );
}

#[test]
fn s4_the_primary_is_forgotten_only_when_its_last_open_stream_closes() {
    let mut b = Replica::new(1);
    b.adopt_epoch(5);
    // Three streams of primary 0 at once (a link that held connections
    // delivers them together); the newest one to open closes first.
    for _ in 0..3 {
        b.follow_stream(0, 5);
    }
    assert!(!b.on_stream_of_closed(0, 5), "two streams still open");
    assert!(!b.on_stream_of_closed(0, 5), "one stream still open");
    assert_eq!(b.primary_id(), 0);
    assert!(b.on_stream_of_closed(0, 5), "the last one closed");
    assert_eq!(b.primary_id(), NO_PRIMARY);
}

#[test]
fn s4_a_stream_of_an_earlier_term_closing_late_keeps_the_newer_primary() {
    let mut b = Replica::new(1);
    b.adopt_epoch(5);
    b.follow_stream(0, 5);
    b.adopt_epoch(7);
    b.follow_stream(2, 7);
    assert!(!b.on_stream_of_closed(0, 5), "another term's stream");
    assert_eq!(b.primary_id(), 2);
    assert!(b.on_stream_of_closed(2, 7));
    assert_eq!(b.primary_id(), NO_PRIMARY);
}

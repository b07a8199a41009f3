//! When a server may answer a client's read from its own records (G6:
//! a read returns at least every write acknowledged before it began, and
//! never less than an earlier completed read), as a function of what the
//! server knows. `server::session::reads` gathers the inputs, carries out each
//! step and asks again, until the answer is [`ReadStep::Serve`] or the
//! read's deadline passes (then the client's connection is closed).
//!
//! The rule per role (docs/protocol.md, "Reads"):
//! - **Primary**: answers once it has applied every entry it inherited
//!   from earlier epochs, which its term's first commit (the takeover's
//!   in-sync entry, of its own epoch) does; before that it waits. (One
//!   whose log had nothing past its commit point answers at once.)
//! - **Backup following a Rust primary, in sync ("trusted")**: read-index.
//!   It asks the primary for its commit point (which covers every write
//!   acknowledged so far), waits until it has applied that index itself,
//!   then answers. Reads stay spread over the replicas, at the cost of a
//!   round trip to the primary (shared by the reads that wait together).
//! - **Backup not in sync** (catching up, just restarted) **or following an
//!   original primary** (which cannot answer a read-index request): the
//!   read is forwarded to the primary.
//! - **No primary known** (restarted, or between primaries): waits for
//!   one; a server alone in its cluster, or one that saw no primary for
//!   the patience bound, makes one as a write would (the takeover rules
//!   decide who, and refuse when unsure).

/// What the server knows when it decides, read without the replica lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadView {
    /// This server's id.
    pub me: i32,
    /// The primary it follows, itself, or -1.
    pub primary: i32,
    /// The primary may be an original server (this one followed a v1
    /// stream): it knows no read-index request.
    pub v1_primary: bool,
    /// Known to hold every committed entry (a member of the in-sync set).
    pub trusted: bool,
    /// Index of the last entry applied to the records.
    pub applied: i32,
    /// As primary: every entry of an earlier epoch is applied (its term's
    /// first commit, an entry of its own epoch, did that).
    pub established: bool,
    /// No peers are configured: this server is the whole cluster.
    pub alone: bool,
}

/// The next thing to do for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// Answer from our records now.
    Serve,
    /// Primary that has not applied what it inherited yet: wait.
    AwaitEstablished,
    /// Ask this primary for its commit point (read-index).
    AskCommitPoint(i32),
    /// Wait until our applied index reaches this commit point.
    AwaitApplied(i32),
    /// Send the read to this primary and relay its answer.
    Forward(i32),
    /// No primary known: wait for one.
    AwaitPrimary,
    /// No primary known and none will come by itself: make one as a write
    /// would (take over, or learn who is primary).
    MakePrimary,
}

use crate::state::{Replica, NO_PRIMARY};

/// The next step of a read. `learned` is a commit point the primary gave
/// for this read (read-index), if one was asked already; `patience_over`
/// says that no primary was seen for longer than a primary reconnecting
/// to a restarted server takes.
pub fn next_step(view: &ReadView, learned: Option<i32>, patience_over: bool) -> ReadStep {
    if view.primary == view.me {
        return if view.established {
            ReadStep::Serve
        } else {
            ReadStep::AwaitEstablished
        };
    }
    if view.primary == NO_PRIMARY {
        return if view.alone || patience_over {
            ReadStep::MakePrimary
        } else {
            ReadStep::AwaitPrimary
        };
    }
    if view.v1_primary || !view.trusted {
        return ReadStep::Forward(view.primary);
    }
    match learned {
        None => ReadStep::AskCommitPoint(view.primary),
        Some(point) if view.applied >= point => ReadStep::Serve,
        Some(point) => ReadStep::AwaitApplied(point),
    }
}

/// True when no entry of an earlier epoch lies past `replica`'s commit
/// point: as primary, its records then hold every write acknowledged
/// before its term (its own entries are acknowledged only once applied).
/// Its term's first commit, the in-sync entry, makes this true.
pub fn applied_all_inherited(replica: &Replica) -> bool {
    let next = replica.committed_index().saturating_add(1);
    match replica.log().epoch_at(next) {
        Some(epoch) => epoch == replica.epoch(),
        None => true,
    }
}

/// What a server answers to a read-index request: its commit point when
/// it is an established primary, else nothing (the asker then looks
/// elsewhere). `view.applied` is the primary's commit point, since it
/// applies what it commits before acknowledging it.
pub fn commit_point_for_asker(view: &ReadView) -> Option<i32> {
    (view.primary == view.me && view.established).then_some(view.applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backup(trusted: bool, applied: i32) -> ReadView {
        ReadView {
            me: 2,
            primary: 0,
            v1_primary: false,
            trusted,
            applied,
            established: false,
            alone: false,
        }
    }

    fn primary(established: bool) -> ReadView {
        ReadView {
            primary: 2,
            established,
            trusted: true,
            ..backup(true, 10)
        }
    }

    fn no_primary(alone: bool) -> ReadView {
        ReadView {
            primary: NO_PRIMARY,
            alone,
            ..backup(false, 10)
        }
    }

    #[test]
    fn a_primary_serves_only_once_it_applied_what_it_inherited() {
        assert_eq!(next_step(&primary(true), None, false), ReadStep::Serve);
        assert_eq!(
            next_step(&primary(false), None, false),
            ReadStep::AwaitEstablished,
            "a new primary has not applied what it inherited yet"
        );
        assert_eq!(
            next_step(&primary(false), Some(3), true),
            ReadStep::AwaitEstablished,
            "nothing learned elsewhere replaces its own first commit"
        );
    }

    #[test]
    fn a_trusted_backup_asks_the_primary_then_waits_until_it_applied_that_point() {
        let b = backup(true, 10);
        assert_eq!(next_step(&b, None, false), ReadStep::AskCommitPoint(0));
        assert_eq!(next_step(&b, Some(12), false), ReadStep::AwaitApplied(12));
        assert_eq!(next_step(&b, Some(10), false), ReadStep::Serve);
        assert_eq!(next_step(&b, Some(4), false), ReadStep::Serve);
    }

    #[test]
    fn a_trusted_backup_never_serves_without_a_commit_point() {
        // However far it has applied: the primary may have committed more.
        for applied in [-1, 0, 1_000_000] {
            assert_eq!(
                next_step(&backup(true, applied), None, true),
                ReadStep::AskCommitPoint(0)
            );
        }
    }

    #[test]
    fn an_untrusted_backup_or_one_under_an_original_primary_forwards() {
        for learned in [None, Some(3)] {
            assert_eq!(
                next_step(&backup(false, 10), learned, false),
                ReadStep::Forward(0),
                "catching up: its records may be older than the client saw"
            );
        }
        let v1 = ReadView {
            v1_primary: true,
            ..backup(true, 10)
        };
        assert_eq!(next_step(&v1, None, false), ReadStep::Forward(0));
    }

    #[test]
    fn with_no_primary_a_server_waits_unless_alone_or_out_of_patience() {
        assert_eq!(
            next_step(&no_primary(false), None, false),
            ReadStep::AwaitPrimary
        );
        assert_eq!(
            next_step(&no_primary(false), Some(20), false),
            ReadStep::AwaitPrimary,
            "a restarted server never answers from its own records"
        );
        assert_eq!(
            next_step(&no_primary(false), None, true),
            ReadStep::MakePrimary
        );
        assert_eq!(
            next_step(&no_primary(true), None, false),
            ReadStep::MakePrimary
        );
    }

    #[test]
    fn a_new_primary_has_applied_what_it_inherited_once_its_first_entry_commits() {
        use crate::wire::{Entry, MemberSet, Op};
        let (old, new) = (1 << 16, 2 << 16);
        let mut r = Replica::new(2);
        r.adopt_epoch(old);
        for order in 0..3 {
            r.append(Entry::set(old, 7, order)).unwrap();
        }
        r.commit_through(1);
        r.become_primary_in(new);
        assert!(
            !applied_all_inherited(&r),
            "entry 2 (epoch {old}) is not applied"
        );
        let set = MemberSet::from_ids([2]).unwrap();
        r.append(Entry {
            epoch: new,
            op: Op::InSync(Box::new(set)),
        })
        .unwrap();
        assert!(!applied_all_inherited(&r), "appended, not committed");
        r.commit_through(3);
        assert!(applied_all_inherited(&r), "its in-sync entry is committed");
        r.append(Entry::set(new, 7, 9)).unwrap();
        assert!(
            applied_all_inherited(&r),
            "its own later entries do not count"
        );
    }

    #[test]
    fn a_primary_with_nothing_past_its_commit_point_inherited_nothing_unapplied() {
        let mut r = Replica::new(0);
        r.become_primary_in(1 << 16);
        assert!(applied_all_inherited(&r), "an empty log");
        r.append(crate::wire::Entry::set(1 << 16, 1, 1)).unwrap();
        assert!(applied_all_inherited(&r), "only its own entry is pending");
    }

    fn any_view() -> impl Strategy<Value = ReadView> {
        (
            (-1i32..3, -1i32..3, any::<bool>(), any::<bool>()),
            (-1i32..20, any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |((me, primary, v1_primary, trusted), (applied, established, alone))| ReadView {
                    me: me.max(0),
                    primary,
                    v1_primary,
                    trusted,
                    applied,
                    established,
                    alone,
                },
            )
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 1024,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/replication_reads.txt",
                ),
            )),
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the view, a read is served from our own records only
        /// by a primary that applied what it inherited, or by an in-sync
        /// backup of a Rust primary that has applied a commit point the
        /// primary gave for this read.
        #[test]
        fn served_only_when_the_records_are_known_to_be_up_to_date(
            view in any_view(),
            learned in proptest::option::of(-1i32..20),
            patience_over in any::<bool>(),
        ) {
            if next_step(&view, learned, patience_over) == ReadStep::Serve {
                let as_primary = view.primary == view.me && view.established;
                let as_backup = view.primary != view.me
                    && view.primary != NO_PRIMARY
                    && view.trusted
                    && !view.v1_primary
                    && learned.is_some_and(|p| view.applied >= p);
                prop_assert!(as_primary || as_backup, "{view:?} {learned:?}");
            }
        }
    }

    #[test]
    fn only_an_established_primary_gives_a_commit_point() {
        assert_eq!(commit_point_for_asker(&primary(true)), Some(10));
        assert_eq!(commit_point_for_asker(&primary(false)), None);
        assert_eq!(commit_point_for_asker(&backup(true, 10)), None);
        assert_eq!(commit_point_for_asker(&no_primary(true)), None);
    }
}

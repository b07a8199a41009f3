//! Which server the balancer sends a request to, from the servers' answers
//! to the status request (pure: no sockets; `upstream` does the I/O).
//!
//! Writes go to the primary with the newest epoch. With none reported, to
//! any server that answered (a backup forwards the write to its primary, or
//! takes over when that primary is gone, which is how a cluster changes
//! primary today).
//!
//! Reads go round robin over [`readers`]: the newest primary and every
//! server that reports following it. Each of them answers under G6 (a
//! backup learns the primary's commit point through its read index, or
//! forwards the read, before it answers), so spreading costs nothing in
//! correctness. An original server (no status) is never among them: it
//! answers from its own records, which may lag.
//! With no primary reported, a read goes to a server whose records hold
//! every write acknowledged before the status was taken:
//! - when every server answered, one that has committed (and so applied)
//!   everything any of them holds: its commit index is the highest last
//!   index reported. An acknowledged write is in the log of every in-sync
//!   server, so it is covered. (The highest *commit* index would not do: a
//!   primary that acknowledged a write and was restarted without its data
//!   directory no longer reports that commit.) A fresh cluster, all at -1,
//!   is read at once;
//! - otherwise, one that says it is trusted (holds every committed entry)
//!   and has applied everything it holds (`commit_index == last_index`).
//!
//! Original servers (no status) come last, for reads and writes alike:
//! nothing is known of them, and the original's own rules apply.

use crate::client::status::ServerStatus;
use crate::wire::status::{Role, StatusReport};

/// What is being routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A write (or anything that must reach the primary).
    Write,
    /// A read, which must see every acknowledged write.
    Read,
}

/// Where to send a request: the server's index, and whether it is a
/// primary (worth remembering for the next requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index into the server list.
    pub index: usize,
    /// It reported itself primary.
    pub primary: bool,
}

/// The server to try for `kind`, from `statuses` (one per server, in list
/// order); ties go to the first in rotation order from `start`. `None`:
/// nobody can serve it now (retry after a pause).
pub fn pick(kind: Kind, statuses: &[ServerStatus], start: usize) -> Option<Target> {
    let n = statuses.len();
    let rotation = (0..n).map(|i| (start + i) % n);
    let report = |i: usize| statuses[i].report();
    let newest_primary = rotation
        .clone()
        .filter_map(|i| {
            report(i)
                .filter(|r| r.role == Role::Primary)
                .map(|r| (r.epoch, i))
        })
        // max_by_key keeps the last maximum; reversed rotation keeps the first.
        .rev()
        .max_by_key(|&(epoch, _)| epoch);
    if let Some((_, index)) = newest_primary {
        return Some(Target {
            index,
            primary: true,
        });
    }
    let all_answered = statuses.iter().all(|s| s.report().is_some());
    let highest_last = statuses
        .iter()
        .filter_map(|s| s.report().map(|r| r.last_index))
        .max();
    let usable = |r: &StatusReport| match kind {
        Kind::Write => true,
        Kind::Read if all_answered => Some(r.commit_index) >= highest_last,
        Kind::Read => r.trusted && r.commit_index == r.last_index,
    };
    rotation
        .clone()
        .find(|&i| report(i).is_some_and(usable))
        .or_else(|| {
            rotation
                .clone()
                .find(|&i| statuses[i] == ServerStatus::NoStatus)
        })
        .map(|index| Target {
            index,
            primary: false,
        })
}

/// The servers a read may be spread over, in list order: the primary with
/// the newest epoch and every server that names it as its primary. Empty
/// when no primary is reported ([`pick`] then chooses one server).
pub fn readers(statuses: &[ServerStatus]) -> Vec<usize> {
    let Some(Target { index, .. }) = pick(Kind::Write, statuses, 0).filter(|t| t.primary) else {
        return Vec::new();
    };
    let Some(primary) = statuses[index].report().map(|r| r.factory_id) else {
        return Vec::new();
    };
    statuses
        .iter()
        .enumerate()
        .filter(|&(i, s)| {
            i == index
                || s.report()
                    .is_some_and(|r| r.role == Role::Backup && r.primary_id == primary)
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::Lease;

    fn report(role: Role, epoch: u64, trusted: bool, last: i32, commit: i32) -> ServerStatus {
        ServerStatus::Report(StatusReport {
            factory_id: 0,
            role,
            epoch,
            primary_id: -1,
            lease: Lease::None,
            lease_ms: 0,
            trusted,
            in_sync: vec![],
            last_index: last,
            commit_index: commit,
            peers: vec![],
            clients: 0,
            uptime_ms: 0,
            balancer: None,
        })
    }

    fn following(id: i32, primary_id: i32, role: Role) -> ServerStatus {
        let ServerStatus::Report(mut r) = report(role, 1 << 16, true, 3, 3) else {
            unreachable!()
        };
        r.factory_id = id;
        r.primary_id = primary_id;
        ServerStatus::Report(r)
    }

    #[test]
    fn reads_spread_over_the_primary_and_its_backups_only() {
        let s = [
            following(0, 1, Role::Backup),
            following(1, 1, Role::Primary),
            ServerStatus::NoStatus,
            following(3, 1, Role::Backup),
            following(4, 7, Role::Backup), // follows someone else
            ServerStatus::Unreachable("down".into()),
            following(6, -1, Role::Unknown),
        ];
        assert_eq!(readers(&s), [0, 1, 3]);
        let no_primary = [following(0, -1, Role::Backup), ServerStatus::NoStatus];
        assert_eq!(readers(&no_primary), Vec::<usize>::new());
        assert_eq!(readers(&[]), Vec::<usize>::new());
    }

    fn at(index: usize, primary: bool) -> Option<Target> {
        Some(Target { index, primary })
    }

    #[test]
    fn the_newest_primary_serves_reads_and_writes() {
        let s = [
            report(Role::Primary, 1 << 16, true, 5, 5),
            report(Role::Backup, 2 << 16, true, 9, 9),
            report(Role::Primary, 2 << 16, true, 9, 8),
        ];
        for start in 0..3 {
            assert_eq!(pick(Kind::Write, &s, start), at(2, true));
            assert_eq!(pick(Kind::Read, &s, start), at(2, true));
        }
    }

    #[test]
    fn equal_epochs_go_to_the_first_in_rotation() {
        let s = [
            report(Role::Primary, 7, true, 1, 1),
            report(Role::Primary, 7, true, 1, 1),
        ];
        assert_eq!(pick(Kind::Write, &s, 0), at(0, true));
        assert_eq!(pick(Kind::Write, &s, 1), at(1, true));
    }

    #[test]
    fn without_a_primary_writes_go_to_anyone_who_answered() {
        let s = [
            ServerStatus::Unreachable("refused".into()),
            report(Role::Backup, 1, false, 4, 3),
            report(Role::Unknown, 1, false, -1, -1),
        ];
        assert_eq!(pick(Kind::Write, &s, 0), at(1, false));
        assert_eq!(pick(Kind::Write, &s, 2), at(2, false));
    }

    #[test]
    fn without_a_primary_reads_need_a_trusted_fully_applied_server() {
        let s = [
            report(Role::Backup, 1, true, 4, 3), // holds an entry not applied
            report(Role::Backup, 1, false, 4, 4), // may miss committed entries
            report(Role::Unknown, 1, true, 4, 4), // fine
            ServerStatus::Invalid("junk".into()),
        ];
        assert_eq!(pick(Kind::Read, &s, 0), at(2, false));
        let none = [
            s[0].clone(),
            s[1].clone(),
            ServerStatus::Unreachable("down".into()),
        ];
        assert_eq!(pick(Kind::Read, &none, 0), None);
        assert_eq!(pick(Kind::Write, &none, 0), at(0, false));
    }

    #[test]
    fn when_every_server_answers_a_read_goes_where_everything_held_is_applied() {
        let s = [
            report(Role::Backup, 1, false, 9, 7),
            report(Role::Unknown, 1, false, 9, 9),
            report(Role::Backup, 1, true, 9, 8),
        ];
        assert_eq!(pick(Kind::Read, &s, 0), at(1, false));
        assert_eq!(pick(Kind::Read, &s, 2), at(1, false));
        // A primary restarted empty after acknowledging entry 5, which a
        // backup holds but has not seen committed: nobody may answer.
        let restarted = [
            report(Role::Unknown, 1, false, -1, -1),
            report(Role::Backup, 1, true, 5, 4),
        ];
        assert_eq!(pick(Kind::Read, &restarted, 0), None);
        assert_eq!(pick(Kind::Write, &restarted, 0), at(0, false));
        // A fresh cluster: nothing committed anywhere, nobody trusted yet.
        let fresh = [
            report(Role::Unknown, 0, false, -1, -1),
            report(Role::Unknown, 0, false, -1, -1),
        ];
        assert_eq!(pick(Kind::Read, &fresh, 1), at(1, false));
        // One server silent: the highest commit seen may not be the highest.
        let partial = [
            report(Role::Unknown, 1, false, 9, 9),
            ServerStatus::Unreachable("down".into()),
        ];
        assert_eq!(pick(Kind::Read, &partial, 0), None);
    }

    #[test]
    fn original_servers_come_last_and_nothing_answers_none() {
        let s = [ServerStatus::NoStatus, report(Role::Backup, 1, true, 2, 2)];
        assert_eq!(pick(Kind::Read, &s, 0), at(1, false));
        let originals = [ServerStatus::NoStatus, ServerStatus::NoStatus];
        assert_eq!(pick(Kind::Read, &originals, 1), at(1, false));
        let down = [ServerStatus::Unreachable("x".into())];
        assert_eq!(pick(Kind::Write, &down, 0), None);
        assert_eq!(pick(Kind::Read, &[], 0), None);
    }
}

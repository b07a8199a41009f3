//! Replication decisions as plain functions of what a server knows: who
//! may take over and from whom, how a backup is brought up to date, and
//! how far the primary may commit. The server's threads gather the inputs
//! (probe replies, acks) and carry out the answers; nothing here does I/O.
//!
//! The rules (crash faults: servers stop and restart, the network holds):
//! - An entry is committed once every member of the in-sync set holds it
//!   durably, so any live member of that set holds every committed entry.
//! - A server becomes primary only when it holds the longest log among the
//!   servers of the last in-sync set it can reach, and only if it can be sure
//!   that log has every committed entry: every member answered, or one that
//!   answered has stayed in sync since it last heard from a primary
//!   ("trusted"). Otherwise it refuses writes (G5).
//! - Each takeover uses a new, higher epoch; a server that sees a higher
//!   epoch follows it. A backup is brought to exactly the primary's log: by
//!   the missing suffix when its last entry is one the primary holds, by a
//!   snapshot otherwise.
//! - A read is answered only from records that include every write
//!   acknowledged before it began ([`next_step`]).

mod catchup;
pub mod election;
#[cfg(test)]
mod election_sim;
#[cfg(test)]
mod election_tests;
pub mod lease;
mod reads;
mod takeover;

pub use catchup::{plan_catch_up, CatchUpPlan};
pub use reads::{applied_all_inherited, commit_point_for_asker, next_step, ReadStep, ReadView};
pub use takeover::{decide_takeover, Decision, PeerView, ProbeOutcome};

use crate::wire::MemberSet;

/// The highest index every member of `in_sync` holds: `own` for this
/// server, `matched(id)` for the others (`-1` when unknown).
pub fn commit_point(in_sync: &MemberSet, me: i32, own: i32, matched: impl Fn(i32) -> i32) -> i32 {
    in_sync
        .ids()
        .iter()
        .map(|&id| if id == me { own } else { matched(id) })
        .min()
        .unwrap_or(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_is_the_slowest_member() {
        let set = MemberSet::from_ids([0, 1, 2]).unwrap();
        let matched = |id| if id == 1 { 7 } else { 4 };
        assert_eq!(commit_point(&set, 0, 9, matched), 4);
        let two = MemberSet::from_ids([0, 1]).unwrap();
        assert_eq!(commit_point(&two, 0, 9, matched), 7);
        assert_eq!(
            commit_point(&two, 0, 5, matched),
            5,
            "own durability counts"
        );
        assert_eq!(commit_point(&MemberSet::new(), 0, 3, matched), 3);
    }
}

//! Whether a server without a live primary may take over, from what the
//! peers answered to its probes.

use crate::wire::{Epoch, MemberSet};

/// What a server knows of its own log, or learned of a peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The server's id.
    pub id: i32,
    /// Its last index.
    pub last_index: i32,
    /// The epoch of its last entry.
    pub last_epoch: Epoch,
    /// True if it held every committed entry since it last was in sync.
    pub trusted: bool,
    /// The in-sync set its log names (`None`: it never saw one).
    pub in_sync: Option<MemberSet>,
}

/// How one peer answered a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It has no live primary and told us where its log ends.
    Answered(PeerView),
    /// It follows (or is) a live primary.
    HasPrimary(i32),
    /// It has seen a higher epoch than ours.
    HigherEpoch(Epoch),
    /// It closed the connection on the native tag: an original server.
    V1,
    /// No connection could be made: it is down.
    Unreachable,
}

/// What the candidate does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Become primary with this in-sync set.
    Lead(MemberSet),
    /// A live primary exists: send writes there.
    Follow(i32),
    /// A higher epoch exists: adopt it and stand back.
    StandBack(Epoch),
    /// Another server holds a longer log: let it take over.
    Defer(i32),
    /// Nobody reachable is sure to hold every committed entry; these
    /// members of the in-sync set did not answer.
    Unsafe(Vec<i32>),
}

/// Decides a takeover by server `me.id`, given the outcome of probing each
/// configured peer. `force` (an operator's explicit choice) skips the
/// safety check of G5 but never the longest-log rule.
pub fn decide_takeover(me: &PeerView, outcomes: &[(i32, ProbeOutcome)], force: bool) -> Decision {
    for (_, outcome) in outcomes {
        match *outcome {
            ProbeOutcome::HasPrimary(id) => return Decision::Follow(id),
            ProbeOutcome::HigherEpoch(epoch) => return Decision::StandBack(epoch),
            _ => {}
        }
    }
    let mut answered = vec![*me];
    answered.extend(outcomes.iter().filter_map(|(_, o)| match o {
        ProbeOutcome::Answered(view) => Some(*view),
        _ => None,
    }));
    let best = longest_log(me, &answered);
    let in_sync = known_in_sync(&best, me.id, outcomes);
    let missing: Vec<i32> = in_sync
        .ids()
        .iter()
        .copied()
        .filter(|id| !answered.iter().any(|v| v.id == *id))
        .collect();
    let sure = missing.is_empty() || answered.iter().any(|v| v.trusted);
    if !sure && !force {
        return Decision::Unsafe(missing);
    }
    if best.id != me.id {
        return Decision::Defer(best.id);
    }
    let members = MemberSet::from_ids(answered.iter().map(|v| v.id)).unwrap_or(in_sync);
    Decision::Lead(members)
}

/// The view with the most up-to-date log (last epoch, then last index);
/// on a tie the candidate itself, so that no one defers needlessly.
fn longest_log(me: &PeerView, answered: &[PeerView]) -> PeerView {
    let key = |v: &PeerView| (v.last_epoch, v.last_index);
    let top = answered.iter().map(key).max().unwrap_or(key(me));
    if key(me) == top {
        return *me;
    }
    *answered
        .iter()
        .filter(|v| key(v) == top)
        .max_by_key(|v| v.id)
        .unwrap_or(me)
}

/// The in-sync set as the most up-to-date log names it; if no log names
/// one, every configured server that is not an original (v1) server.
fn known_in_sync(best: &PeerView, me: i32, outcomes: &[(i32, ProbeOutcome)]) -> MemberSet {
    if let Some(set) = best.in_sync {
        return set;
    }
    let ids = std::iter::once(me).chain(
        outcomes
            .iter()
            .filter(|(_, o)| *o != ProbeOutcome::V1)
            .map(|(id, _)| *id),
    );
    MemberSet::from_ids(ids).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: i32, last_index: i32, last_epoch: Epoch, trusted: bool, isr: &[i32]) -> PeerView {
        PeerView {
            id,
            last_index,
            last_epoch,
            trusted,
            in_sync: if isr.is_empty() {
                None
            } else {
                MemberSet::from_ids(isr.iter().copied())
            },
        }
    }

    fn ids(set: &MemberSet) -> Vec<i32> {
        set.ids().to_vec()
    }

    #[test]
    fn fresh_cluster_with_everyone_up_leads() {
        let me = view(0, -1, 0, false, &[]);
        let out = [
            (1, ProbeOutcome::Answered(view(1, -1, 0, false, &[]))),
            (2, ProbeOutcome::Answered(view(2, -1, 0, false, &[]))),
        ];
        let Decision::Lead(set) = decide_takeover(&me, &out, false) else {
            panic!("expected to lead");
        };
        assert_eq!(ids(&set), vec![0, 1, 2]);
    }

    #[test]
    fn fresh_cluster_with_a_server_down_is_unsure() {
        let me = view(0, -1, 0, false, &[]);
        let out = [
            (1, ProbeOutcome::Answered(view(1, -1, 0, false, &[]))),
            (2, ProbeOutcome::Unreachable),
        ];
        assert_eq!(decide_takeover(&me, &out, false), Decision::Unsafe(vec![2]));
    }

    #[test]
    fn a_trusted_backup_takes_over_from_a_dead_primary() {
        // G4: the primary (0) died; 1 and 2 stayed in sync.
        let me = view(1, 10, 5, true, &[0, 1, 2]);
        let out = [
            (0, ProbeOutcome::Unreachable),
            (2, ProbeOutcome::Answered(view(2, 10, 5, true, &[0, 1, 2]))),
        ];
        let Decision::Lead(set) = decide_takeover(&me, &out, false) else {
            panic!("expected to lead");
        };
        assert_eq!(ids(&set), vec![1, 2]);
    }

    #[test]
    fn the_longest_log_leads_and_others_defer() {
        let me = view(1, 9, 5, true, &[0, 1, 2]);
        let out = [
            (0, ProbeOutcome::Unreachable),
            (2, ProbeOutcome::Answered(view(2, 10, 5, true, &[0, 1, 2]))),
        ];
        assert_eq!(decide_takeover(&me, &out, false), Decision::Defer(2));
        // A newer epoch beats a longer log.
        let me = view(1, 3, 6, true, &[0, 1, 2]);
        let Decision::Lead(_) = decide_takeover(&me, &out, false) else {
            panic!("the newer epoch leads");
        };
    }

    #[test]
    fn g5_restarted_server_with_peers_down_refuses() {
        let me = view(0, 50, 3, false, &[0, 1, 2]);
        let out = [
            (1, ProbeOutcome::Unreachable),
            (2, ProbeOutcome::Unreachable),
        ];
        assert_eq!(
            decide_takeover(&me, &out, false),
            Decision::Unsafe(vec![1, 2])
        );
        let Decision::Lead(set) = decide_takeover(&me, &out, true) else {
            panic!("force overrides");
        };
        assert_eq!(ids(&set), vec![0]);
    }

    #[test]
    fn every_in_sync_member_answering_is_enough() {
        // Full-cluster restart: nobody is trusted, everybody answers.
        let me = view(0, 50, 3, false, &[0, 1, 2]);
        let out = [
            (1, ProbeOutcome::Answered(view(1, 52, 3, false, &[0, 1, 2]))),
            (2, ProbeOutcome::Answered(view(2, 51, 3, false, &[0, 1, 2]))),
        ];
        assert_eq!(decide_takeover(&me, &out, false), Decision::Defer(1));
    }

    #[test]
    fn the_in_sync_set_of_the_longest_log_counts() {
        // 2 was dropped from the in-sync set while down; 0 is dead.
        let me = view(1, 20, 4, false, &[0, 1]);
        let out = [
            (0, ProbeOutcome::Unreachable),
            (2, ProbeOutcome::Answered(view(2, 5, 4, false, &[0, 1, 2]))),
        ];
        assert_eq!(decide_takeover(&me, &out, false), Decision::Unsafe(vec![0]));
    }

    #[test]
    fn live_primaries_and_higher_epochs_win() {
        let me = view(1, 1, 1, true, &[]);
        let out = [
            (0, ProbeOutcome::HasPrimary(0)),
            (2, ProbeOutcome::Unreachable),
        ];
        assert_eq!(decide_takeover(&me, &out, false), Decision::Follow(0));
        let out = [(0, ProbeOutcome::HigherEpoch(99))];
        assert_eq!(decide_takeover(&me, &out, false), Decision::StandBack(99));
    }

    #[test]
    fn original_servers_are_not_in_sync_members() {
        let me = view(0, -1, 0, false, &[]);
        let out = [(1, ProbeOutcome::V1), (2, ProbeOutcome::V1)];
        let Decision::Lead(set) = decide_takeover(&me, &out, false) else {
            panic!("expected to lead");
        };
        assert_eq!(ids(&set), vec![0]);
    }
}

//! Scenario tests of the election rules: each voting rule on its own, the
//! lease arithmetic, and small clusters on an instant, lossless network
//! whose links can be cut (election_sim.rs runs random schedules).

use std::collections::VecDeque;

use super::election::*;
use super::lease::{Millis, Timing};
use crate::wire::{Epoch, MemberSet};

fn cluster(me: i32, n: i32, witnesses: &[i32]) -> Cluster {
    Cluster {
        me,
        voters: (0..n).collect(),
        witnesses: witnesses.to_vec(),
    }
}

fn set(ids: &[i32]) -> MemberSet {
    MemberSet::from_ids(ids.iter().copied()).unwrap()
}

fn epoch_of(counter: u64, id: i32) -> Epoch {
    (counter << 16) | id as u64
}

/// Servers 0..n on a network that delivers at once, unless cut.
struct Net {
    nodes: Vec<Option<Election>>,
    now: Millis,
    queue: VecDeque<(i32, i32, Message)>,
    cut: Vec<(i32, i32)>,
    outputs: Vec<(Millis, i32, Output)>,
    witnesses: Vec<i32>,
}

impl Net {
    fn new(n: i32, witnesses: &[i32]) -> Net {
        let nodes = (0..n)
            .map(|id| {
                Some(
                    Election::new(
                        cluster(id, n, witnesses),
                        Timing::default(),
                        None,
                        LogPos::EMPTY,
                        0,
                        id as u64 * 7919,
                    )
                    .unwrap(),
                )
            })
            .collect();
        Net {
            nodes,
            now: 0,
            queue: VecDeque::new(),
            cut: Vec::new(),
            outputs: Vec::new(),
            witnesses: witnesses.to_vec(),
        }
    }

    fn node(&self, id: i32) -> &Election {
        self.nodes[id as usize].as_ref().expect("a live node")
    }

    fn node_mut(&mut self, id: i32) -> &mut Election {
        self.nodes[id as usize].as_mut().expect("a live node")
    }

    fn handle(&mut self, id: i32, outs: Vec<Output>) {
        for out in outs {
            if let Output::Send { to, msg } = out {
                self.queue.push_back((id, to, msg));
            }
            self.outputs.push((self.now, id, out));
        }
    }

    fn deliver(&mut self) {
        let mut budget = 100_000;
        while let Some((from, to, msg)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "messages never settle");
            if self.cut.contains(&(from, to)) {
                continue;
            }
            let now = self.now;
            let Some(node) = self.nodes[to as usize].as_mut() else {
                continue;
            };
            let outs = node.step(now, msg);
            self.handle(to, outs);
        }
    }

    fn run(&mut self, ms: Millis) {
        for _ in 0..ms {
            self.now += 1;
            for id in 0..self.nodes.len() as i32 {
                let now = self.now;
                if let Some(node) = self.nodes[id as usize].as_mut() {
                    let outs = node.tick(now);
                    self.handle(id, outs);
                }
            }
            self.deliver();
        }
    }

    /// Runs until `cond` holds (at most `ms`); the time it took.
    fn run_until(&mut self, ms: Millis, mut cond: impl FnMut(&Net) -> bool) -> Option<Millis> {
        let start = self.now;
        for _ in 0..ms {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run(1);
        }
        cond(self).then(|| self.now - start)
    }

    fn primaries(&self) -> Vec<i32> {
        (0..self.nodes.len() as i32)
            .filter(|&id| {
                self.nodes[id as usize]
                    .as_ref()
                    .is_some_and(|n| n.role() == Role::Primary)
            })
            .collect()
    }

    fn leased(&self) -> Vec<i32> {
        (0..self.nodes.len() as i32)
            .filter(|&id| {
                self.nodes[id as usize]
                    .as_ref()
                    .is_some_and(|n| n.lease_live(self.now))
            })
            .collect()
    }

    fn isolate(&mut self, group: &[i32]) {
        let n = self.nodes.len() as i32;
        for a in 0..n {
            for b in 0..n {
                if group.contains(&a) != group.contains(&b) {
                    self.cut.push((a, b));
                }
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn kill(&mut self, id: i32) {
        self.nodes[id as usize] = None;
    }

    /// Restarts `id` with the durable state it last persisted.
    fn restart(&mut self, id: i32, hard: Option<HardState>) {
        let n = self.nodes.len() as i32;
        self.nodes[id as usize] = Some(
            Election::new(
                cluster(id, n, &self.witnesses),
                Timing::default(),
                hard,
                LogPos::EMPTY,
                self.now,
                self.now ^ 0xabcdef,
            )
            .unwrap(),
        );
    }

    /// The primary commits its barrier (index `index`) when it may.
    fn commit_barrier(&mut self, id: i32, index: i32) {
        let (now, epoch) = (self.now, self.node(id).epoch());
        assert!(self.node(id).may_commit(now));
        self.node_mut(id).log_appended(LogPos { epoch, index });
        let outs = self.node_mut(id).committed(now, index, epoch);
        self.handle(id, outs);
    }

    /// A fresh cluster elects a primary, which commits its barrier.
    fn establish(&mut self) -> i32 {
        self.run_until(2_000, |net| {
            net.primaries()
                .first()
                .is_some_and(|&p| net.node(p).may_commit(net.now))
        })
        .expect("a primary within 2 s");
        let p = self.primaries()[0];
        self.commit_barrier(p, 0);
        assert!(self.node(p).can_serve(self.now));
        p
    }

    fn propose(&mut self, id: i32, members: MemberSet) -> Result<Vec<Output>, ElectionError> {
        let now = self.now;
        self.node_mut(id).propose_in_sync(now, members)
    }

    fn count(&self, f: impl Fn(&Output) -> bool) -> usize {
        self.outputs.iter().filter(|(_, _, o)| f(o)).count()
    }
}

// ----- a lone voter -----

/// A started server 0 of three, past its start-up grace.
fn voter() -> Election {
    let mut e = Election::new(
        cluster(0, 3, &[]),
        Timing::default(),
        None,
        LogPos {
            epoch: 5,
            index: 10,
        },
        0,
        1,
    )
    .unwrap();
    // Past the start-up grace, before it stands (stand_at > grace).
    let _ = e.tick(360);
    assert_eq!(e.role(), Role::Backup);
    e
}

fn vote(from: i32, counter: u64, last: LogPos) -> Message {
    Message::Vote {
        from,
        epoch: epoch_of(counter, from),
        last,
    }
}

fn reply_of(outs: &[Output]) -> Option<Option<Refusal>> {
    outs.iter().find_map(|o| match o {
        Output::Send {
            msg: Message::VoteReply { refused, .. },
            ..
        } => Some(*refused),
        _ => None,
    })
}

const GOOD: LogPos = LogPos {
    epoch: 5,
    index: 10,
};

#[test]
fn a_vote_is_persisted_before_it_is_sent() {
    let mut e = voter();
    let outs = e.step(361, vote(1, 1, GOOD));
    let persist = outs
        .iter()
        .position(|o| matches!(o, Output::Persist(h) if h.voted_for == Some(1)))
        .expect("the vote is persisted");
    let send = outs
        .iter()
        .position(|o| matches!(o, Output::Send { .. }))
        .expect("the vote is sent");
    assert!(persist < send);
    assert_eq!(reply_of(&outs), Some(None));
    assert_eq!(e.hard_state().epoch, epoch_of(1, 1));
    // Asking again in the same epoch gets the same answer.
    assert_eq!(reply_of(&e.step(362, vote(1, 1, GOOD))), Some(None));
}

#[test]
fn one_vote_per_epoch() {
    let mut e = voter();
    assert_eq!(reply_of(&e.step(361, vote(1, 1, GOOD))), Some(None));
    // Server 2 cannot ask in server 1's epoch (the epoch names its owner),
    assert!(e
        .step(
            362,
            Message::Vote {
                from: 2,
                epoch: epoch_of(1, 1),
                last: GOOD
            }
        )
        .is_empty());
    // nor in an epoch that is not above the one voted in.
    assert_eq!(
        reply_of(&e.step(362, vote(2, 0, GOOD))),
        Some(Some(Refusal::StaleEpoch))
    );
    assert_eq!(e.hard_state().voted_for, Some(1));
}

#[test]
fn a_vote_survives_a_restart() {
    let mut e = voter();
    let _ = e.step(361, vote(1, 1, GOOD));
    let hard = e.hard_state();
    let mut again = Election::new(
        cluster(0, 3, &[]),
        Timing::default(),
        Some(hard),
        GOOD,
        400,
        9,
    )
    .unwrap();
    let _ = again.tick(800);
    assert_eq!(
        reply_of(&again.step(800, vote(2, 0, GOOD))),
        Some(Some(Refusal::StaleEpoch)),
        "the persisted epoch bars a lower one"
    );
    assert_eq!(reply_of(&again.step(800, vote(1, 1, GOOD))), Some(None));
    assert_eq!(again.hard_state().voted_for, Some(1));
}

#[test]
fn no_vote_while_honouring_a_live_primary() {
    let mut e = voter();
    let hb = Message::Heartbeat {
        from: 1,
        epoch: epoch_of(1, 1),
        sent_at: 1000,
        config: e.config(),
    };
    let _ = e.step(400, hb);
    let grace = Timing::default().grace_ms;
    let outs = e.step(400 + grace - 1, vote(2, 2, GOOD));
    assert_eq!(reply_of(&outs), Some(Some(Refusal::LeaseLive(1))));
    assert_eq!(
        e.epoch(),
        epoch_of(1, 1),
        "the candidate's epoch is not taken"
    );
    // A pre-vote is refused likewise.
    let outs = e.step(
        400 + grace - 1,
        Message::PreVote {
            from: 2,
            epoch: 0,
            proposed: epoch_of(2, 2),
            last: GOOD,
        },
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Message::PreVoteReply {
                refused: Some(Refusal::LeaseLive(1)),
                ..
            },
            ..
        }
    )));
    // Once the grace ends, the vote is granted.
    assert_eq!(reply_of(&e.step(400 + grace, vote(2, 2, GOOD))), Some(None));
}

#[test]
fn no_vote_just_after_starting() {
    let mut e = Election::new(cluster(0, 3, &[]), Timing::default(), None, GOOD, 1000, 3).unwrap();
    let grace = Timing::default().grace_ms;
    assert_eq!(
        reply_of(&e.step(1000 + grace - 1, vote(1, 1, GOOD))),
        Some(Some(Refusal::Starting))
    );
    assert_eq!(
        reply_of(&e.step(1000 + grace, vote(1, 1, GOOD))),
        Some(None)
    );
}

#[test]
fn no_vote_for_a_log_behind() {
    let mut e = voter();
    e.log_committed(GOOD);
    for (counter, behind) in [
        (1, LogPos { epoch: 5, index: 9 }),
        (
            2,
            LogPos {
                epoch: 4,
                index: 99,
            },
        ),
    ] {
        assert_eq!(
            reply_of(&e.step(361, vote(1, counter, behind))),
            Some(Some(Refusal::LogBehind))
        );
    }
    // A newer epoch beats a longer log.
    assert_eq!(
        reply_of(&e.step(361, vote(1, 3, LogPos { epoch: 6, index: 0 }))),
        Some(None)
    );
}

#[test]
fn a_longer_log_past_the_commit_point_does_not_refuse() {
    // Entries past the voter's commit point may never have been committed
    // (a member of the in-sync set may lack them); the set's rule, not
    // their length, decides.
    let mut e = voter();
    e.log_committed(LogPos { epoch: 5, index: 5 });
    assert_eq!(
        reply_of(&e.step(361, vote(1, 1, LogPos { epoch: 5, index: 9 }))),
        Some(None)
    );
}

#[test]
fn no_vote_for_a_server_outside_the_in_sync_set() {
    let mut e = voter();
    // The primary of epoch 1:1 settled the set {0, 1}.
    let config = Config {
        id: ConfigId {
            epoch: epoch_of(1, 1),
            version: 1,
        },
        members: set(&[0, 1]),
        floor: LogPos::EMPTY,
    };
    let _ = e.step(
        361,
        Message::Heartbeat {
            from: 1,
            epoch: epoch_of(1, 1),
            sent_at: 5,
            config,
        },
    );
    assert_eq!(e.config(), config);
    let after = 361 + Timing::default().grace_ms;
    assert_eq!(
        reply_of(&e.step(after, vote(2, 3, GOOD))),
        Some(Some(Refusal::NotInSync))
    );
    assert_eq!(
        e.epoch(),
        epoch_of(3, 2),
        "a refusal without a promise in the way takes the epoch"
    );
}

#[test]
fn no_vote_below_the_floor_of_the_in_sync_set() {
    let mut e = voter();
    let floor = LogPos {
        epoch: epoch_of(1, 1),
        index: 20,
    };
    let config = Config {
        id: ConfigId {
            epoch: epoch_of(1, 1),
            version: 0,
        },
        members: set(&[0, 1, 2]),
        floor,
    };
    let _ = e.step(
        361,
        Message::Heartbeat {
            from: 1,
            epoch: epoch_of(1, 1),
            sent_at: 5,
            config,
        },
    );
    let after = 361 + Timing::default().grace_ms;
    // Server 2 is in the set but has not caught up to where 1 was elected.
    assert_eq!(
        reply_of(&e.step(after, vote(2, 3, GOOD))),
        Some(Some(Refusal::LogBehind))
    );
    assert_eq!(reply_of(&e.step(after, vote(2, 4, floor))), Some(None));
}

#[test]
fn witnesses_never_stand_and_candidates_are_never_witnesses() {
    let mut w = Election::new(cluster(2, 3, &[2]), Timing::default(), None, GOOD, 0, 5).unwrap();
    assert_eq!(w.role(), Role::Witness);
    for t in (0..10_000).step_by(10) {
        assert!(w.tick(t).is_empty(), "a witness never stands");
    }
    // It keeps no log: any log passes its log rule.
    assert_eq!(
        reply_of(&w.step(10_000, vote(0, 1, LogPos::EMPTY))),
        Some(None)
    );
    // A vote request from a witness is not a request at all.
    let mut e = voter();
    let mut e3 = Election::new(cluster(0, 3, &[1]), Timing::default(), None, GOOD, 0, 1).unwrap();
    let _ = e3.tick(400);
    assert!(e3.step(400, vote(1, 1, GOOD)).is_empty());
    let _ = e.tick(400);
}

#[test]
fn messages_from_strangers_are_ignored() {
    let mut e = voter();
    assert!(e.step(361, vote(7, 1, GOOD)).is_empty());
    assert!(e.step(361, vote(0, 1, GOOD)).is_empty(), "not from itself");
}

#[test]
fn invalid_clusters_and_timings_are_refused() {
    let bad = |c: Cluster| Election::new(c, Timing::default(), None, GOOD, 0, 0).is_err();
    assert!(bad(Cluster {
        me: 5,
        voters: vec![0, 1],
        witnesses: vec![]
    }));
    assert!(bad(Cluster {
        me: 0,
        voters: vec![0, 0],
        witnesses: vec![]
    }));
    assert!(bad(Cluster {
        me: 0,
        voters: vec![0],
        witnesses: vec![0]
    }));
    assert!(bad(Cluster {
        me: 0,
        voters: vec![0, 1],
        witnesses: vec![3]
    }));
    assert!(bad(Cluster {
        me: 0,
        voters: vec![0, 70_000],
        witnesses: vec![]
    }));
    let short = Timing {
        grace_ms: 300,
        ..Timing::default()
    };
    assert!(matches!(
        Election::new(cluster(0, 3, &[]), short, None, GOOD, 0, 0),
        Err(ElectionError::Timing(_))
    ));
}

// ----- clusters -----

#[test]
fn a_fresh_cluster_elects_one_primary_that_serves_after_its_barrier() {
    let mut net = Net::new(3, &[]);
    let took = net
        .run_until(2_000, |n| !n.primaries().is_empty())
        .expect("elected");
    assert!(
        took >= Timing::default().grace_ms,
        "nobody votes while starting"
    );
    let p = net.primaries()[0];
    net.run_until(100, |n| n.node(p).may_commit(n.now)).unwrap();
    assert!(!net.node(p).can_serve(net.now), "not before the barrier");
    // An entry of an older epoch committing does not make it ready.
    let now = net.now;
    let outs = net.node_mut(p).committed(now, 0, 0);
    assert!(outs.is_empty());
    net.commit_barrier(p, 1);
    assert!(net.node(p).can_serve(net.now));
    assert_eq!(net.count(|o| matches!(o, Output::Ready { .. })), 1);
    for id in 0..3 {
        assert_eq!(net.node(id).primary(), Some(p));
    }
    assert_eq!(net.node(p).commit_set(), set(&[0, 1, 2]));
}

#[test]
fn a_live_primary_is_never_challenged() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let epoch = net.node(p).epoch();
    net.outputs.clear();
    net.run(10_000);
    assert_eq!(net.primaries(), vec![p]);
    for id in 0..3 {
        assert_eq!(net.node(id).epoch(), epoch, "no election in 10 s");
    }
    assert_eq!(
        net.count(|o| matches!(
            o,
            Output::Send {
                msg: Message::PreVote { .. },
                ..
            }
        )),
        0
    );
}

#[test]
fn lease_arithmetic_of_a_running_primary() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let t = Timing::default();
    // Heartbeats are acked at once: the lease runs from the last one.
    let until = net.node(p).lease_until().unwrap();
    assert!(until > net.now && until <= net.now + t.lease_ms);
    // Cut the primary off: the lease ends lease_ms after the last
    // heartbeat that was acked, and LeaseLost is reported at that tick.
    net.isolate(&[p]);
    let cut_at = net.now;
    let until = net.node(p).lease_until().unwrap();
    assert!(until <= cut_at + t.lease_ms);
    net.run_until(1_000, |n| !n.node(p).lease_live(n.now))
        .unwrap();
    assert_eq!(net.now, until);
    net.run(1);
    let lost: Vec<_> = net
        .outputs
        .iter()
        .filter(|(_, id, o)| *id == p && matches!(o, Output::LeaseLost { .. }))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].0, until, "reported when it lapsed");
}

#[test]
fn a_lease_that_ends_while_a_write_is_in_flight_blocks_its_ack() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    // A write is sent while the lease is live ...
    assert!(net.node(p).may_commit(net.now));
    net.isolate(&[p]);
    // ... and its replication stalls until the lease is gone.
    net.run_until(1_000, |n| !n.node(p).lease_live(n.now))
        .unwrap();
    assert!(!net.node(p).may_commit(net.now), "the ack must not go out");
    assert!(!net.node(p).can_serve(net.now), "nor may reads be answered");
}

#[test]
fn competing_candidates_settle_on_one_primary() {
    // Five servers, the primary dies; two backups stand in the same tick.
    let mut net = Net::new(5, &[]);
    let p = net.establish();
    net.kill(p);
    let rest: Vec<i32> = (0..5).filter(|&id| id != p).collect();
    let (a, b) = (rest[0], rest[1]);
    // Backups only act on ticks: skip to a time when both may stand.
    let at = net.now + Timing::default().grace_ms + Timing::default().jitter_ms;
    net.now = at;
    let outs_a = net.node_mut(a).tick(at);
    let outs_b = net.node_mut(b).tick(at);
    net.handle(a, outs_a);
    net.handle(b, outs_b);
    assert_eq!(net.node(a).role(), Role::PreCandidate);
    assert_eq!(net.node(b).role(), Role::PreCandidate);
    net.deliver();
    let took = net
        .run_until(3_000, |n| {
            n.primaries().len() == 1 && n.node(n.primaries()[0]).may_commit(n.now)
        })
        .expect("one of them wins");
    assert!(took < 1_000, "settled in {took} ms");
    let winner = net.primaries()[0];
    let epoch = net.node(winner).epoch();
    assert!(epoch >> 16 <= 4, "epochs stay low: {epoch:#x}");
    for id in rest {
        assert_eq!(net.node(id).primary(), Some(winner));
    }
}

#[test]
fn a_stale_primary_coming_back_steps_down_without_serving() {
    let mut net = Net::new(3, &[]);
    let old = net.establish();
    net.isolate(&[old]);
    let old_until = net.node(old).lease_until().unwrap();
    net.run_until(2_000, |n| n.primaries().iter().any(|&p| p != old))
        .expect("the majority elects a new primary");
    let elected_at = net.now;
    assert!(
        elected_at > old_until,
        "elected at {elected_at}, old lease until {old_until}"
    );
    let new = *net.primaries().iter().find(|&&p| p != old).unwrap();
    net.run(2_000);
    assert!(!net.node(old).lease_live(net.now));
    // Heard by no majority for the grace past its lease, it left its term
    // by itself (and so stopped sending heartbeats).
    assert_eq!(net.node(old).role(), Role::Backup);
    assert_eq!(stepped_down(&net, old), vec![StepDownReason::NoMajority]);
    net.heal();
    net.run_until(500, |n| n.node(old).primary() == Some(new))
        .expect("follows the new primary");
    assert_eq!(net.node(old).role(), Role::Backup);
    assert_eq!(net.primaries(), vec![new]);
    assert_eq!(net.node(new).epoch(), net.node(old).epoch());
}

/// Why server `id` left its terms, in order.
fn stepped_down(net: &Net, id: i32) -> Vec<StepDownReason> {
    net.outputs
        .iter()
        .filter(|(_, from, _)| *from == id)
        .filter_map(|(_, _, o)| match o {
            Output::StepDown { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_primary_back_within_its_grace_steps_down_for_the_higher_epoch() {
    let mut net = Net::new(3, &[]);
    let old = net.establish();
    net.isolate(&[old]);
    net.run_until(2_000, |n| n.primaries().iter().any(|&p| p != old))
        .expect("the majority elects a new primary");
    assert_eq!(net.node(old).role(), Role::Primary, "it cannot know yet");
    net.heal();
    net.run_until(500, |n| n.node(old).role() == Role::Backup)
        .expect("steps down");
    assert!(matches!(
        stepped_down(&net, old)[..],
        [StepDownReason::HigherEpoch(_)]
    ));
}

#[test]
fn a_primary_that_hears_no_majority_steps_down_so_that_backups_elect() {
    // The primary's inbound links cut: its heartbeats still reach the
    // backups, their acks never reach it. Without stepping down it would
    // hold the backups' promises and no one could be elected.
    let mut net = Net::new(3, &[]);
    let old = net.establish();
    for q in (0..3).filter(|&q| q != old) {
        net.cut.push((q, old));
    }
    let mut new = None;
    for _ in 0..3_000 {
        net.run(1);
        assert!(net.leased().len() <= 1, "two leases at {}", net.now);
        if net.node(old).role() == Role::Primary {
            assert!(
                net.node(old).silent_peers(net.now).is_empty(),
                "a primary that hears no majority proposes no drop"
            );
        }
        new = new.or_else(|| net.primaries().into_iter().find(|&p| p != old));
    }
    let new = new.expect("the backups elect a primary");
    assert_eq!(stepped_down(&net, old), vec![StepDownReason::NoMajority]);
    assert!(net.node(new).may_commit(net.now));
    assert_ne!(net.node(old).role(), Role::Primary);
}

fn minority_partition(n: i32, minority_size: usize) {
    let mut net = Net::new(n, &[]);
    let old = net.establish();
    let mut minority = vec![old];
    minority.extend((0..n).filter(|&id| id != old).take(minority_size - 1));
    net.isolate(&minority);
    // The cut-off primary tries to carry on alone: the change to an
    // in-sync set of only its side never settles.
    let side = MemberSet::from_ids(minority.iter().copied()).unwrap();
    let outs = net.propose(old, side).unwrap();
    net.handle(old, outs);
    let old_until = net.node(old).lease_until().unwrap();
    let mut new = None;
    for _ in 0..3_000 {
        net.run(1);
        assert!(net.leased().len() <= 1, "two leases at {}", net.now);
        if net.now < old_until {
            assert!(net.node(old).lease_live(net.now));
        }
        if net.node(old).role() == Role::Primary {
            assert_eq!(net.node(old).pending_config().unwrap().members, side);
            assert_eq!(
                net.node(old).commit_set(),
                MemberSet::from_ids(0..n).unwrap(),
                "commits still need every member of the settled set"
            );
        }
        if new.is_none() {
            new = net.primaries().into_iter().find(|p| !minority.contains(p));
        }
    }
    let new = new.expect("the majority elects a primary");
    assert!(net.node(new).may_commit(net.now));
    assert!(!net.node(old).may_commit(net.now));
    assert_eq!(stepped_down(&net, old), vec![StepDownReason::NoMajority]);
    // Nobody on the minority side elects anyone.
    for &id in &minority[1..] {
        assert_eq!(net.node(id).role(), Role::Backup);
    }
}

#[test]
fn partition_with_the_primary_in_the_minority_of_three() {
    minority_partition(3, 1);
}

#[test]
fn partition_with_the_primary_in_the_minority_of_five() {
    minority_partition(5, 2);
}

#[test]
fn in_sync_changes_take_effect_once_a_majority_holds_them() {
    let mut net = Net::new(5, &[]);
    let p = net.establish();
    let others: Vec<i32> = (0..5).filter(|&id| id != p).collect();
    // Only one peer hears the change: two of five is not a majority.
    for &id in &others[1..] {
        net.cut.push((p, id));
    }
    let smaller = set(&[p, others[0]]);
    let outs = net.propose(p, smaller).unwrap();
    net.handle(p, outs);
    net.run(20);
    assert_eq!(net.node(p).pending_config().unwrap().members, smaller);
    assert_eq!(net.node(p).commit_set(), set(&[0, 1, 2, 3, 4]));
    assert!(net.propose(p, smaller).is_err(), "one change at a time");
    // A third server hears it: settled.
    net.cut.retain(|&(_, to)| to != others[1]);
    net.run(60);
    assert_eq!(net.node(p).pending_config(), None);
    assert_eq!(net.node(p).commit_set(), smaller);
    assert_eq!(net.node(p).config().members, smaller);
    assert!(net
        .outputs
        .iter()
        .any(|(_, _, o)| matches!(o, Output::InSyncCommitted(c) if c.members == smaller)));
    // A backup proposing is refused.
    let now = net.now;
    assert_eq!(
        net.node_mut(others[0]).propose_in_sync(now, smaller),
        Err(ElectionError::NotReadyToPropose)
    );
}

#[test]
fn a_witness_pair_fails_over_and_survives_the_witness() {
    let mut net = Net::new(3, &[2]);
    let p = net.establish();
    assert_ne!(p, 2);
    let b = 1 - p;
    assert_eq!(net.node(p).commit_set(), set(&[0, 1]));
    // The witness dies: the pair keeps its lease.
    net.kill(2);
    net.run(2_000);
    assert!(net.node(p).can_serve(net.now));
    // The witness returns, then the primary dies: the backup takes over.
    net.restart(2, None);
    net.run(1_000);
    net.kill(p);
    net.run_until(2_000, |n| n.node(b).may_commit(n.now))
        .expect("the backup and the witness elect it");
    assert_eq!(net.node(b).commit_set(), set(&[b]));
}

#[test]
fn a_witness_refuses_a_server_dropped_from_the_in_sync_set() {
    let mut net = Net::new(3, &[2]);
    let p = net.establish();
    let b = 1 - p;
    // The backup is cut off; the primary drops it with the witness's accord.
    net.isolate(&[b]);
    let outs = net.propose(p, set(&[p])).unwrap();
    net.handle(p, outs);
    net.run(100);
    assert_eq!(net.node(p).commit_set(), set(&[p]));
    assert_eq!(net.node(2).config().members, set(&[p]));
    // The primary dies; the stale backup comes back and stands.
    net.kill(p);
    net.heal();
    net.run(3_000);
    assert!(net.primaries().is_empty(), "the stale backup must not win");
    assert!(net.outputs.iter().any(|(_, id, o)| *id == 2
        && matches!(
            o,
            Output::Send {
                msg: Message::PreVoteReply {
                    refused: Some(Refusal::NotInSync),
                    ..
                },
                ..
            }
        )));
}

#[test]
fn an_isolated_backup_does_not_inflate_the_epoch() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let epoch = net.node(p).epoch();
    let lone = (0..3).find(|&id| id != p).unwrap();
    net.isolate(&[lone]);
    net.run(10_000);
    assert_eq!(net.node(lone).epoch(), epoch, "pre-votes change nothing");
    let rounds = net.count(|o| {
        matches!(
            o,
            Output::Send {
                msg: Message::PreVote { .. },
                ..
            }
        )
    });
    assert!(
        rounds > 0 && rounds < 2 * 10_000 / 100,
        "{rounds} pre-votes"
    );
    net.heal();
    net.run(1_000);
    assert_eq!(net.primaries(), vec![p], "no disruption at the heal");
    assert_eq!(net.node(p).epoch(), epoch);
    assert_eq!(net.node(lone).primary(), Some(p));
}

#[test]
fn a_bridge_node_does_not_cause_elections() {
    // 0 -- 1 -- 2 with 0 and 2 cut apart; whichever is primary, the other
    // end cannot win: the bridge stands by the primary.
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let epoch = net.node(p).epoch();
    let ends: Vec<i32> = (0..3).filter(|&id| id != p).collect();
    let far = ends[0];
    net.cut.push((p, far));
    net.cut.push((far, p));
    net.run(10_000);
    assert_eq!(net.primaries(), vec![p]);
    assert_eq!(net.node(p).epoch(), epoch);
    assert!(net.node(p).can_serve(net.now));
}

#[test]
fn a_killed_primary_is_replaced_within_the_failover_target() {
    // Instant network: detection is the grace less the time since the
    // last heartbeat, plus the jitter; with defaults well under 500 ms.
    let mut times = Vec::new();
    for seed in 0..50 {
        let mut net = Net::new(3, &[]);
        net.run(seed * 7);
        let p = net.establish();
        net.run(seed * 3);
        net.kill(p);
        let took = net
            .run_until(2_000, |n| {
                n.primaries().iter().any(|&q| n.node(q).may_commit(n.now))
            })
            .expect("a new primary");
        times.push(took);
    }
    times.sort_unstable();
    let worst = *times.last().unwrap();
    eprintln!(
        "failover on an instant network: median {} ms, max {worst} ms over {} kills",
        times[times.len() / 2],
        times.len()
    );
    let t = Timing::default();
    assert!(
        worst <= t.grace_ms + t.jitter_ms,
        "worst failover {worst} ms"
    );
}

#[test]
fn a_restarted_primary_rejoins_as_a_backup() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let hard = net.node(p).hard_state();
    net.kill(p);
    net.run_until(2_000, |n| !n.primaries().is_empty()).unwrap();
    net.restart(p, Some(hard));
    net.run(1_000);
    assert_eq!(net.primaries().len(), 1);
    assert_ne!(net.primaries()[0], p);
    assert_eq!(net.node(p).role(), Role::Backup);
}

#[test]
fn a_rebooted_voter_keeps_the_promise_it_forgot() {
    // 2 stopped hearing the primary long ago (a cut link) and keeps
    // standing; 1 granted the primary's lease, then reboots while the
    // primary is cut off from everyone. Its promise is gone from memory
    // but still counted by the primary: it must not vote for 2 yet.
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let v = (p + 1) % 3;
    let c = (p + 2) % 3;
    net.cut.push((p, c));
    net.cut.push((c, p));
    net.run(1_000);
    assert_eq!(net.primaries(), vec![p], "the bridge stands by the primary");
    net.isolate(&[p]);
    let hard = net.node(v).hard_state();
    net.restart(v, Some(hard));
    let lease_end = net.node(p).lease_until().unwrap();
    assert!(lease_end > net.now);
    let candidate = net.node(c);
    let ask = Message::Vote {
        from: c,
        epoch: crate::state::next_epoch(candidate.epoch(), c),
        last: LogPos {
            epoch: net.node(p).epoch(),
            index: 0,
        },
    };
    let now = net.now;
    let outs = net.node_mut(v).step(now, ask);
    assert_eq!(reply_of(&outs), Some(Some(Refusal::Starting)));
    // And the cluster recovers only after the old lease ended.
    let mut elected = None;
    for _ in 0..3_000 {
        net.run(1);
        assert!(net.leased().len() <= 1);
        if let Some(&q) = net.primaries().iter().find(|&&q| q != p) {
            elected = Some((q, net.now));
            break;
        }
    }
    let (_, at) = elected.expect("the majority side elects a primary");
    assert!(
        at > lease_end,
        "elected at {at}, old lease until {lease_end}"
    );
}

#[test]
fn a_backup_that_stops_acking_is_silent_after_a_lease_period() {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let backups: Vec<i32> = (0..3).filter(|&id| id != p).collect();
    assert!(net.node(p).silent_peers(net.now).is_empty());
    let quiet = backups[0];
    net.cut.push((quiet, p));
    let lease = Timing::default().lease_ms;
    net.run(lease / 2);
    assert!(
        net.node(p).silent_peers(net.now).is_empty(),
        "its last ack still counts"
    );
    net.run(lease);
    assert_eq!(net.node(p).silent_peers(net.now).ids(), [quiet]);
    assert!(
        net.node(p).may_commit(net.now),
        "the other backup keeps the lease"
    );
    net.heal();
    net.run(Timing::default().heartbeat_ms * 2);
    assert!(net.node(p).silent_peers(net.now).is_empty(), "heard again");
}

/// Each listed node's log ends at `index` of `epoch` and is committed
/// through index `committed` (what the replication stream told it).
fn logs(net: &mut Net, ends: &[(i32, i32)], epoch: Epoch, committed: i32) {
    for &(id, index) in ends {
        let node = net.node_mut(id);
        node.log_appended(LogPos { epoch, index });
        node.log_committed(LogPos {
            epoch,
            index: committed.min(index),
        });
    }
}

/// The cluster elects a new primary once `old` is gone (G7).
fn elects_without(net: &mut Net, old: i32) -> i32 {
    net.kill(old);
    net.run_until(5_000, |n| {
        n.primaries().iter().any(|&q| n.node(q).may_commit(n.now))
    })
    .expect("a new primary within 5 s");
    net.primaries()[0]
}

/// Three servers whose primary `p` settled the in-sync set `{p, a}`,
/// dropping `b`.
fn one_dropped() -> (Net, i32, i32, i32) {
    let mut net = Net::new(3, &[]);
    let p = net.establish();
    let (a, b) = ((p + 1) % 3, (p + 2) % 3);
    let outs = net.propose(p, set(&[p, a])).unwrap();
    net.handle(p, outs);
    net.run(200);
    assert_eq!(net.node(p).settled_config().unwrap().members, set(&[p, a]));
    (net, p, a, b)
}

#[test]
fn g7_a_catching_up_backup_with_a_longer_log_does_not_block_the_election() {
    // The primary dropped `b` from the in-sync set; `b` catches up and the
    // primary's stream has brought it further than `a`, the member. Those
    // extra entries are not committed (`a` lacks them): `b` must not
    // refuse `a` for them, or neither could be elected (`a` refuses `b`,
    // which is outside the set).
    let (mut net, p, a, b) = one_dropped();
    let epoch = net.node(p).epoch();
    logs(&mut net, &[(p, 40), (a, 30), (b, 40)], epoch, 30);
    assert_eq!(elects_without(&mut net, p), a);
}

#[test]
fn g7_a_member_holding_an_older_set_can_still_be_elected() {
    // The primary re-admits `b`; `b` holds the new set, `a` missed the
    // heartbeat that carried it (a majority, the primary and `b`, settled
    // it). `b`'s log is longer than `a`'s, past the commit point. `a` has
    // every committed entry and must be electable, for `a` refuses `b`
    // (outside the set `a` holds).
    let (mut net, p, a, b) = one_dropped();
    net.cut.push((p, a));
    let outs = net.propose(p, set(&[p, a, b])).unwrap();
    net.handle(p, outs);
    net.run(20);
    assert_eq!(
        net.node(p).settled_config().unwrap().members,
        set(&[p, a, b])
    );
    assert_eq!(net.node(a).config().members, set(&[p, a]));
    let epoch = net.node(p).epoch();
    logs(&mut net, &[(p, 40), (a, 30), (b, 40)], epoch, 30);
    assert_eq!(elects_without(&mut net, p), a);
}

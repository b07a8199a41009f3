//! A deterministic simulator of the election rules: servers running
//! [`Election`], a message queue with random delays, a virtual real-time
//! clock from which each server's drifting monotonic clock is derived,
//! partitions (two-sided, one-way, single links), crashes, restarts and
//! reboots,
//! and a toy data plane (the primary's whole log shipped to backups,
//! commits once every member of the commit set holds an entry). Each run
//! checks, at every virtual millisecond and every output:
//!
//! - no two servers hold a live lease at the same real time;
//! - at most one server becomes primary in an epoch, the epoch's owner;
//! - a server grants at most one vote per epoch, and only after it
//!   persisted it;
//! - a committed entry is never replaced, and a primary that becomes ready
//!   holds every committed entry;
//! - after the faults stop, a primary is serving again.
//!
//! Writes come in spells with idle spells between them: under a steady
//! write load a cut-off server's log falls behind, and the log rule would
//! hide a broken lease rule.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;

use super::election::*;
use super::lease::{Millis, Timing};
use crate::wire::{Epoch, MemberSet};

/// Each server's clock runs up to this much fast or slow (parts per
/// million): 4.5%, about what the default grace margin (20% over the
/// lease) allows, and far beyond real clocks, so that a rule that relies
/// on less margin shows.
const MAX_DRIFT_PPM: u64 = 45_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `per_million` / 1e6.
    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

#[derive(Clone, Debug)]
enum Payload {
    El(Message),
    Data { epoch: Epoch, log: Rc<Vec<Epoch>> },
    DataAck { epoch: Epoch, len: usize },
}

struct Node {
    id: i32,
    witness: bool,
    el: Option<Election>,
    /// What the server persisted last (it survives crashes).
    hard: Option<HardState>,
    /// The durable log: each entry's epoch.
    log: Rc<Vec<Epoch>>,
    drift_ppm: i64,
    offset: u64,
    /// The primary's data plane: each server's acked length, when it last
    /// acked (local time), the committed length, the next write.
    matched: Vec<usize>,
    acked_at: Vec<Millis>,
    committed: usize,
    next_write: Millis,
    next_ship: Millis,
    /// The epoch of the last shipped log this backup took.
    data_epoch: Epoch,
}

impl Node {
    fn local(&self, t: u64) -> Millis {
        let scaled = (t as i128 * (1_000_000 + self.drift_ppm as i128)) / 1_000_000;
        self.offset + scaled as u64
    }

    fn pos(&self) -> LogPos {
        match self.log.last() {
            Some(&epoch) => LogPos {
                epoch,
                index: self.log.len() as i32 - 1,
            },
            None => LogPos::EMPTY,
        }
    }
}

/// What one run saw, for the report.
#[derive(Default, Debug)]
struct Stats {
    elections: usize,
    max_counter: u64,
    commits: usize,
    readies: usize,
}

struct Sim {
    rng: Rng,
    t: u64,
    n: i32,
    witnesses: Vec<i32>,
    timing: Timing,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(u64, u64, i32, i32)>>,
    payloads: HashMap<u64, Payload>,
    seq: u64,
    cut: Vec<Vec<bool>>,
    epoch_primary: HashMap<Epoch, i32>,
    votes: HashMap<(i32, Epoch), i32>,
    committed: BTreeMap<usize, Epoch>,
    writing: bool,
    stats: Stats,
}

impl Sim {
    fn new(n: i32, witnesses: &[i32], seed: u64) -> Sim {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let timing = Timing::default();
        let nodes = (0..n)
            .map(|id| {
                let drift_ppm = rng.below(2 * MAX_DRIFT_PPM + 1) as i64 - MAX_DRIFT_PPM as i64;
                let offset = rng.below(1_000_000);
                let mut node = Node {
                    id,
                    witness: witnesses.contains(&id),
                    el: None,
                    hard: None,
                    log: Rc::new(Vec::new()),
                    drift_ppm,
                    offset,
                    matched: vec![0; n as usize],
                    acked_at: vec![0; n as usize],
                    committed: 0,
                    next_write: 0,
                    next_ship: 0,
                    data_epoch: 0,
                };
                let now = node.local(0);
                node.el = Some(start(&node, n, witnesses, timing, now, rng.next()));
                node
            })
            .collect();
        Sim {
            rng,
            t: 0,
            n,
            witnesses: witnesses.to_vec(),
            timing,
            nodes,
            queue: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            cut: vec![vec![false; n as usize]; n as usize],
            epoch_primary: HashMap::new(),
            votes: HashMap::new(),
            committed: BTreeMap::new(),
            writing: true,
            stats: Stats::default(),
        }
    }

    fn send(&mut self, from: i32, to: i32, payload: Payload) {
        if self.cut[from as usize][to as usize] {
            return;
        }
        let delay = if self.rng.chance(20_000) {
            20 + self.rng.below(60)
        } else {
            self.rng.below(6)
        };
        self.seq += 1;
        self.queue
            .push(Reverse((self.t + delay, self.seq, from, to)));
        self.payloads.insert(self.seq, payload);
    }

    fn handle(&mut self, id: i32, outs: Vec<Output>) {
        for out in outs {
            if trace()
                && !matches!(
                    out,
                    Output::Send {
                        msg: Message::Heartbeat { .. } | Message::HeartbeatAck { .. },
                        ..
                    }
                )
            {
                eprintln!("t={} {id}: {out:?}", self.t);
            }
            self.check_output(id, &out);
            match out {
                Output::Persist(h) => self.nodes[id as usize].hard = Some(h),
                Output::Send { to, msg } => self.send(id, to, Payload::El(msg)),
                Output::BecomePrimary { epoch, .. } => self.become_primary(id, epoch),
                Output::Ready { .. } => {
                    self.stats.readies += 1;
                    self.check_holds_committed(id);
                }
                _ => {}
            }
        }
    }

    fn check_output(&mut self, id: i32, out: &Output) {
        match *out {
            Output::BecomePrimary { epoch, .. } => {
                assert_eq!(epoch_owner(epoch), id, "primary of another's epoch");
                if let Some(other) = self.epoch_primary.insert(epoch, id) {
                    panic!("two primaries in epoch {epoch:#x}: {other} and {id}");
                }
                self.stats.elections += 1;
                self.stats.max_counter = self.stats.max_counter.max(epoch >> 16);
            }
            Output::Send {
                to,
                msg:
                    Message::VoteReply {
                        epoch,
                        refused: None,
                        ..
                    },
            } => {
                let hard = self.nodes[id as usize].hard.expect("a vote persisted");
                assert!(
                    hard.epoch == epoch && hard.voted_for == Some(to),
                    "server {id} sent a vote for {to} in {epoch:#x} before persisting it"
                );
                if let Some(before) = self.votes.insert((id, epoch), to) {
                    assert_eq!(before, to, "server {id} voted twice in epoch {epoch:#x}");
                }
            }
            _ => {}
        }
    }

    fn become_primary(&mut self, id: i32, epoch: Epoch) {
        let now = self.now_of(id);
        let n = self.n as usize;
        let node = &mut self.nodes[id as usize];
        Rc::make_mut(&mut node.log).push(epoch);
        let pos = node.pos();
        node.matched = vec![0; n];
        node.matched[id as usize] = node.log.len();
        node.acked_at = vec![now; n];
        node.committed = 0;
        node.next_write = now;
        node.next_ship = now;
        if let Some(el) = node.el.as_mut() {
            el.log_appended(pos);
        }
    }

    fn check_holds_committed(&self, id: i32) {
        let log = &self.nodes[id as usize].log;
        for (&i, &epoch) in &self.committed {
            assert_eq!(
                log.get(i),
                Some(&epoch),
                "ready primary {id} lacks committed entry {i} (t={})",
                self.t
            );
        }
    }

    fn now_of(&self, id: i32) -> Millis {
        self.nodes[id as usize].local(self.t)
    }

    fn deliver(&mut self) {
        while let Some(&Reverse((at, seq, from, to))) = self.queue.peek() {
            if at > self.t {
                break;
            }
            self.queue.pop();
            let payload = self.payloads.remove(&seq).expect("queued payload");
            if self.nodes[to as usize].el.is_none() {
                continue;
            }
            let now = self.now_of(to);
            match payload {
                Payload::El(msg) => {
                    let outs = self.nodes[to as usize]
                        .el
                        .as_mut()
                        .map(|el| el.step(now, msg))
                        .unwrap_or_default();
                    self.handle(to, outs);
                }
                Payload::Data { epoch, log } => self.on_data(to, from, epoch, log),
                Payload::DataAck { epoch, len } => self.on_data_ack(to, from, epoch, len, now),
            }
        }
    }

    fn on_data(&mut self, to: i32, from: i32, epoch: Epoch, log: Rc<Vec<Epoch>>) {
        let node = &mut self.nodes[to as usize];
        let Some(el) = node.el.as_mut() else {
            return;
        };
        if node.witness || el.epoch() != epoch || el.primary() != Some(from) {
            return;
        }
        // A stream is ordered: an older copy overtaken by a newer one of
        // the same term is not applied (the queue reorders, TCP does not).
        if node.data_epoch == epoch && log.len() < node.log.len() {
            return;
        }
        node.data_epoch = epoch;
        let len = log.len();
        node.log = log;
        let pos = node.pos();
        if let Some(el) = node.el.as_mut() {
            el.log_appended(pos);
        }
        self.send(to, from, Payload::DataAck { epoch, len });
    }

    fn on_data_ack(&mut self, to: i32, from: i32, epoch: Epoch, len: usize, now: Millis) {
        let node = &mut self.nodes[to as usize];
        let Some(el) = node.el.as_ref() else {
            return;
        };
        if el.role() != Role::Primary || el.epoch() != epoch {
            return;
        }
        node.matched[from as usize] = node.matched[from as usize].max(len);
        node.acked_at[from as usize] = now;
    }

    /// The primary's data plane for one millisecond: writes, shipping,
    /// commits, and in-sync changes.
    fn run_primary(&mut self, id: i32, writes: bool) {
        let now = self.now_of(id);
        let Some(el) = self.nodes[id as usize].el.as_ref() else {
            return;
        };
        if el.role() != Role::Primary {
            return;
        }
        let epoch = el.epoch();
        let serving = el.can_serve(now);
        let commit_set = el.commit_set();
        let may_commit = el.may_commit(now);
        let settled = el.pending_config().is_none();
        let gap = self.rng.below(25) + 2;
        let node = &mut self.nodes[id as usize];
        if writes && serving && now >= node.next_write {
            Rc::make_mut(&mut node.log).push(epoch);
            node.next_write = now + gap;
            let pos = node.pos();
            node.matched[id as usize] = node.log.len();
            if let Some(el) = node.el.as_mut() {
                el.log_appended(pos);
            }
        }
        if now >= node.next_ship {
            node.next_ship = now + 10;
            let log = Rc::clone(&node.log);
            let targets: Vec<i32> = (0..self.n)
                .filter(|&p| p != id && !self.witnesses.contains(&p))
                .collect();
            for p in targets {
                self.send(
                    id,
                    p,
                    Payload::Data {
                        epoch,
                        log: Rc::clone(&log),
                    },
                );
            }
        }
        self.commit(id, commit_set, may_commit, now);
        if settled && may_commit {
            self.change_in_sync(id, commit_set, now);
        }
    }

    fn commit(&mut self, id: i32, commit_set: MemberSet, may_commit: bool, now: Millis) {
        let node = &self.nodes[id as usize];
        let point = commit_set
            .ids()
            .iter()
            .map(|&m| node.matched[m as usize])
            .min()
            .unwrap_or(0);
        if !may_commit || point <= node.committed {
            return;
        }
        let (from, log) = (node.committed, Rc::clone(&node.log));
        for (i, &epoch) in log.iter().enumerate().take(point).skip(from) {
            if let Some(before) = self.committed.insert(i, epoch) {
                assert_eq!(
                    before, epoch,
                    "committed entry {i} replaced by primary {id} (t={})",
                    self.t
                );
            }
            self.stats.commits += 1;
        }
        let node = &mut self.nodes[id as usize];
        node.committed = point;
        let outs = node
            .el
            .as_mut()
            .map(|el| el.committed(now, point as i32 - 1, log[point - 1]))
            .unwrap_or_default();
        self.handle(id, outs);
    }

    /// Drops a member silent for 150 ms; adds a server that holds the
    /// whole log.
    fn change_in_sync(&mut self, id: i32, commit_set: MemberSet, now: Millis) {
        let node = &self.nodes[id as usize];
        let mut next = commit_set;
        if let Some(&gone) = commit_set
            .ids()
            .iter()
            .find(|&&m| m != id && now.saturating_sub(node.acked_at[m as usize]) > 150)
        {
            next.remove(gone);
        } else if let Some(back) = (0..self.n).find(|&p| {
            !commit_set.contains(p)
                && !self.witnesses.contains(&p)
                && node.matched[p as usize] == node.log.len()
        }) {
            next.insert(back);
        } else {
            return;
        }
        let outs = self.nodes[id as usize]
            .el
            .as_mut()
            .and_then(|el| el.propose_in_sync(now, next).ok())
            .unwrap_or_default();
        self.handle(id, outs);
    }

    fn check_leases(&self) {
        let leased: Vec<i32> = self
            .nodes
            .iter()
            .filter(|node| {
                node.el
                    .as_ref()
                    .is_some_and(|el| el.lease_live(node.local(self.t)))
            })
            .map(|node| node.id)
            .collect();
        assert!(
            leased.len() <= 1,
            "servers {leased:?} hold live leases at once (t={})",
            self.t
        );
    }

    fn fault(&mut self) {
        let n = self.n as usize;
        let r = self.rng.below(1_000_000);
        if trace() && r < 7_300 {
            eprintln!("t={} fault {r}", self.t);
        }
        if r < 1_500 {
            // A split: each server on a random side; sometimes one-way.
            let sides: Vec<bool> = (0..n).map(|_| self.rng.below(2) == 0).collect();
            let one_way = self.rng.below(4) == 0;
            for a in 0..n {
                for b in 0..n {
                    if sides[a] != sides[b] && (!one_way || sides[a]) {
                        self.cut[a][b] = true;
                    }
                }
            }
        } else if r < 2_000 {
            // One link, both ways (a bridge forms around it).
            let (a, b) = (
                self.rng.below(n as u64) as usize,
                self.rng.below(n as u64) as usize,
            );
            self.cut[a][b] = true;
            self.cut[b][a] = true;
        } else if r < 4_000 {
            self.heal();
        } else if r < 4_700 {
            let id = self.rng.below(n as u64) as usize;
            self.crash(id);
        } else if r < 7_000 {
            let id = self.rng.below(n as u64) as usize;
            self.restart(id);
        } else if r < 7_300 {
            // A reboot: down and up in the same millisecond, forgetting
            // everything it did not persist.
            let id = self.rng.below(n as u64) as usize;
            self.crash(id);
            self.restart(id);
        }
    }

    fn heal(&mut self) {
        for row in &mut self.cut {
            row.iter_mut().for_each(|c| *c = false);
        }
    }

    fn crash(&mut self, id: usize) {
        self.nodes[id].el = None;
    }

    fn restart(&mut self, id: usize) {
        if self.nodes[id].el.is_some() {
            return;
        }
        let now = self.nodes[id].local(self.t);
        let seed = self.rng.next();
        let el = start(
            &self.nodes[id],
            self.n,
            &self.witnesses,
            self.timing,
            now,
            seed,
        );
        self.nodes[id].el = Some(el);
    }

    fn step(&mut self, faults: bool) {
        self.t += 1;
        if faults {
            self.fault();
        }
        // Idle spells too: with writes flowing, a cut-off server's log
        // falls behind and the log rule alone would refuse it.
        if self.rng.chance(500) {
            self.writing = !self.writing;
        }
        self.deliver();
        for id in 0..self.n {
            let now = self.now_of(id);
            let outs = self.nodes[id as usize]
                .el
                .as_mut()
                .map(|el| el.tick(now))
                .unwrap_or_default();
            self.handle(id, outs);
            self.run_primary(id, self.writing);
        }
        self.check_leases();
    }

    fn serving(&self) -> Option<i32> {
        self.nodes
            .iter()
            .find(|node| {
                node.el
                    .as_ref()
                    .is_some_and(|el| el.can_serve(node.local(self.t)))
            })
            .map(|node| node.id)
    }

    /// Faults for `chaos_ms`, then everyone up and connected: a primary
    /// must serve within `settle_ms`.
    fn run(&mut self, chaos_ms: u64, settle_ms: u64) {
        for _ in 0..chaos_ms {
            self.step(true);
        }
        self.heal();
        for id in 0..self.n as usize {
            self.restart(id);
        }
        let end = self.t + settle_ms;
        while self.t < end && self.serving().is_none() {
            self.step(false);
        }
        assert!(
            self.serving().is_some(),
            "no primary serves {settle_ms} ms after the faults stopped"
        );
        // A little more, to see the survivors agree and commit.
        for _ in 0..500 {
            self.step(false);
        }
        let p = self.serving().expect("still serving");
        self.check_holds_committed(p);
    }
}

fn start(
    node: &Node,
    n: i32,
    witnesses: &[i32],
    timing: Timing,
    now: Millis,
    seed: u64,
) -> Election {
    Election::new(
        Cluster {
            me: node.id,
            voters: (0..n).collect(),
            witnesses: witnesses.to_vec(),
        },
        timing,
        node.hard,
        node.pos(),
        now,
        seed,
    )
    .expect("valid cluster")
}

fn trace() -> bool {
    std::env::var_os("FACTORY_SIM_TRACE").is_some()
}

fn runs() -> u64 {
    std::env::var("FACTORY_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

fn many(n: i32, witnesses: &[i32]) {
    let mut total = Stats::default();
    let only: Option<u64> = std::env::var("FACTORY_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    for seed in 0..runs() {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        if trace() {
            eprintln!("seed {seed}");
        }
        let mut sim = Sim::new(n, witnesses, seed * 1_000 + n as u64);
        sim.run(20_000, 3_000);
        total.elections += sim.stats.elections;
        total.max_counter = total.max_counter.max(sim.stats.max_counter);
        total.commits += sim.stats.commits;
        total.readies += sim.stats.readies;
    }
    eprintln!(
        "{n} servers, witnesses {witnesses:?}, {} runs: {total:?}",
        runs()
    );
    assert!(total.commits > 0 && total.readies > 0, "the runs did work");
}

#[test]
fn random_schedules_of_three_servers() {
    many(3, &[]);
}

#[test]
fn random_schedules_of_five_servers() {
    many(5, &[]);
}

#[test]
fn random_schedules_of_two_servers_and_a_witness() {
    many(3, &[2]);
}

#[test]
fn a_quiet_cluster_elects_once() {
    let mut sim = Sim::new(3, &[], 42);
    for _ in 0..20_000 {
        sim.step(false);
    }
    assert_eq!(sim.stats.elections, 1, "no spurious failover");
    assert!(sim.stats.commits > 100);
}

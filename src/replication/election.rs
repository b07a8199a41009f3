//! Who is primary, decided by a majority of the configured servers: failure
//! detection by heartbeats, the primary's lease, pre-vote and vote rounds,
//! and changes of the in-sync set that count only once a majority holds
//! them. A pure state machine in the manner of raft-rs's `RawNode`: the
//! server's threads feed it ticks with the monotonic time, the messages
//! they received and local events (log appended, entry committed), and
//! carry out what it returns ([`Output`]) in order. It reads no clock and
//! does no I/O; its randomness comes from the seed it is given.
//!
//! docs/failover.md explains the rules and why they hold.

use super::lease::{Lease, Millis, Timing, TimingError};
use crate::state::next_epoch;
pub use crate::wire::election::{Config, ConfigId, LogPos, Message, Refusal};
use crate::wire::{Epoch, MemberSet, MAX_MEMBERS};

/// What a server must keep durably: written (the I/O layer's job) before
/// anything that follows it in the same list of outputs is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardState {
    /// The highest epoch this server has seen.
    pub epoch: Epoch,
    /// The candidate it voted for in `epoch`, if any.
    pub voted_for: Option<i32>,
    /// The latest in-sync set it accepted.
    pub config: Config,
}

/// What a server is in the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a primary, or waits for one.
    Backup,
    /// Asking whether it could win (pre-vote).
    PreCandidate,
    /// Asking for votes in its own epoch.
    Candidate,
    /// Elected for its epoch (serving only while [`Election::can_serve`]).
    Primary,
    /// Votes and grants leases; never stands, holds no log.
    Witness,
}

/// Why a primary stepped down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDownReason {
    /// Another server showed a higher epoch (its id).
    HigherEpoch(i32),
    /// No majority acknowledged its heartbeats for `grace_ms` past the end
    /// of its lease: it stops sending them, so that backups that still
    /// hear it (a link cut one way) stop honouring it and elect another.
    NoMajority,
}

/// What the caller must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write this durably before sending anything after it.
    Persist(HardState),
    /// Send `msg` to server `to`.
    Send { to: i32, msg: Message },
    /// This server won `epoch`: start a term with `in_sync`, append an
    /// entry of this epoch naming it (the barrier), and replicate. Do not
    /// acknowledge or read until [`Election::can_serve`].
    BecomePrimary { epoch: Epoch, in_sync: MemberSet },
    /// The barrier of `epoch` is committed, its in-sync set holds by a
    /// majority and the lease is live: reads and writes may be served.
    Ready { epoch: Epoch },
    /// No longer primary: end the term, answer clients "not primary".
    StepDown {
        epoch: Epoch,
        reason: StepDownReason,
    },
    /// This server follows `primary` in `epoch` (a new primary or epoch).
    Follow { primary: i32, epoch: Epoch },
    /// The primary's lease lapsed: stop acknowledging and reading.
    LeaseLost { epoch: Epoch },
    /// The primary's lease is live again (a majority acked).
    LeaseRegained { epoch: Epoch, until: Millis },
    /// This server granted its vote (for logging).
    Voted { candidate: i32, epoch: Epoch },
    /// This server refused a vote (for logging).
    Refused {
        candidate: i32,
        epoch: Epoch,
        why: Refusal,
    },
    /// A majority accepted this in-sync set; commits now need only it.
    InSyncCommitted(Config),
}

/// Why an [`Election`] cannot be built or a change cannot be proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionError {
    /// The timing options break the lease rule.
    Timing(TimingError),
    /// The server list is malformed (the reason).
    Members(String),
    /// Only a primary whose last change is settled may propose one.
    NotReadyToPropose,
}

impl std::fmt::Display for ElectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElectionError::Timing(e) => write!(f, "election timing: {e}"),
            ElectionError::Members(why) => write!(f, "cluster membership: {why}"),
            ElectionError::NotReadyToPropose => write!(
                f,
                "an in-sync change needs a primary with no other change pending"
            ),
        }
    }
}

impl std::error::Error for ElectionError {}

/// The configured cluster as the election sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This server's id.
    pub me: i32,
    /// Every configured server that votes, this one included.
    pub voters: Vec<i32>,
    /// The voters that are witnesses (never primary, never in sync).
    pub witnesses: Vec<i32>,
}

impl Cluster {
    fn check(&self) -> Result<(), ElectionError> {
        let bad = |why: String| Err(ElectionError::Members(why));
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return bad(format!("duplicate ids in {:?}", self.voters));
        }
        if sorted.len() > MAX_MEMBERS {
            return bad(format!("{} servers, at most {MAX_MEMBERS}", sorted.len()));
        }
        if let Some(id) = sorted.iter().find(|&&id| !(0..=0xffff).contains(&id)) {
            return bad(format!("id {id} outside 0..=65535"));
        }
        if !sorted.contains(&self.me) {
            return bad(format!("this server ({}) is not listed", self.me));
        }
        if let Some(w) = self.witnesses.iter().find(|w| !sorted.contains(w)) {
            return bad(format!("witness {w} is not a listed server"));
        }
        if self.witnesses.len() == sorted.len() {
            return bad("every server is a witness".into());
        }
        Ok(())
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn is_voter(&self, id: i32) -> bool {
        self.voters.contains(&id)
    }

    fn is_witness(&self, id: i32) -> bool {
        self.witnesses.contains(&id)
    }

    /// The in-sync set of a cluster that never had one: every data server.
    fn initial(&self) -> Config {
        let ids = self
            .voters
            .iter()
            .copied()
            .filter(|id| !self.is_witness(*id));
        Config {
            id: ConfigId::default(),
            members: MemberSet::from_ids(ids).unwrap_or_default(),
            floor: LogPos::EMPTY,
        }
    }
}

/// State kept only while this server is primary.
#[derive(Clone, Debug)]
struct Term {
    /// When the term began.
    started: Millis,
    lease: Lease,
    lease_live: bool,
    next_heartbeat: Millis,
    /// The latest of this epoch's sets a majority accepted.
    stable: Option<Config>,
    /// A set proposed and not yet accepted by a majority.
    pending: Option<Config>,
    /// The latest set each peer said it holds.
    accepted: Vec<(i32, ConfigId)>,
    /// An entry of this epoch is committed.
    barrier_committed: bool,
    ready: bool,
}

/// One server's part in the election. See the module comment.
#[derive(Clone, Debug)]
pub struct Election {
    cluster: Cluster,
    timing: Timing,
    hard: HardState,
    role: Role,
    last: LogPos,
    /// Where the local log is known committed.
    committed: LogPos,
    now: Millis,
    /// The primary this server follows (or is).
    primary: Option<i32>,
    /// The primary this server promised to stand by, and until when. Kept
    /// apart from `primary`: a higher epoch seen in passing does not end
    /// the promise, only a heartbeat of a newer primary does.
    honour: Option<(i32, Millis)>,
    /// A server refuses votes until this time after it starts.
    starting_until: Millis,
    /// A backup stands for election at this time.
    stand_at: Millis,
    /// Rounds lost in a row, for the back-off.
    lost_rounds: u32,
    /// A (pre-)candidate's round: the epoch asked for, who agreed, when it ends.
    round_epoch: Epoch,
    round_votes: Vec<i32>,
    round_ends: Millis,
    /// Servers that agreed in this candidacy's pre-vote or vote: the
    /// members of the new in-sync set, as far as the last set allows.
    round_alive: Vec<i32>,
    term: Option<Term>,
    rng: u64,
}

impl Election {
    /// A server of `cluster` starting at `now` with the durable state it
    /// kept (`None`: it never had any) and a log ending at `last`. `seed`
    /// drives the random election delays (any value; give each server and
    /// each start a different one).
    ///
    /// # Errors
    /// Timing that breaks the lease rule, or a malformed server list.
    pub fn new(
        cluster: Cluster,
        timing: Timing,
        hard: Option<HardState>,
        last: LogPos,
        now: Millis,
        seed: u64,
    ) -> Result<Self, ElectionError> {
        timing.validate().map_err(ElectionError::Timing)?;
        cluster.check()?;
        let witness = cluster.is_witness(cluster.me);
        let hard = hard.unwrap_or(HardState {
            epoch: 0,
            voted_for: None,
            config: cluster.initial(),
        });
        let starting_until = now.saturating_add(timing.grace_ms);
        let mut election = Election {
            cluster,
            timing,
            hard,
            role: if witness { Role::Witness } else { Role::Backup },
            last: if witness { LogPos::EMPTY } else { last },
            committed: LogPos::EMPTY,
            now,
            primary: None,
            honour: None,
            starting_until,
            stand_at: 0,
            lost_rounds: 0,
            round_epoch: 0,
            round_votes: Vec::new(),
            round_ends: 0,
            round_alive: Vec::new(),
            term: None,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        };
        election.stand_at = starting_until + election.jitter();
        Ok(election)
    }

    /// The time passed; returns what to do (heartbeats, a new round, a
    /// lapsed lease).
    pub fn tick(&mut self, now: Millis) -> Vec<Output> {
        self.advance(now);
        let mut out = Vec::new();
        match self.role {
            Role::Primary => self.tick_primary(&mut out),
            Role::PreCandidate | Role::Candidate if self.now >= self.round_ends => {
                self.lose_round();
            }
            Role::Backup if self.may_stand() => self.start_pre_vote(&mut out),
            _ => {}
        }
        out
    }

    /// A message arrived; returns what to do.
    pub fn step(&mut self, now: Millis, msg: Message) -> Vec<Output> {
        self.advance(now);
        let mut out = Vec::new();
        let from = msg.from();
        if from == self.cluster.me || !self.cluster.is_voter(from) {
            return out;
        }
        match msg {
            Message::PreVote { proposed, last, .. } => {
                self.on_pre_vote(from, proposed, last, &mut out)
            }
            Message::PreVoteReply {
                epoch,
                proposed,
                refused,
                ..
            } => self.on_pre_vote_reply(from, epoch, proposed, refused, &mut out),
            Message::Vote { epoch, last, .. } => self.on_vote(from, epoch, last, &mut out),
            Message::VoteReply { epoch, refused, .. } => {
                self.on_vote_reply(from, epoch, refused, &mut out)
            }
            Message::Heartbeat {
                epoch,
                sent_at,
                config,
                ..
            } => self.on_heartbeat(from, epoch, sent_at, config, &mut out),
            Message::HeartbeatAck {
                epoch,
                sent_at,
                accepted,
                ok,
                ..
            } => self.on_ack(from, epoch, sent_at, accepted, ok, &mut out),
        }
        out
    }

    /// The local log now ends at `last` (after an append or a truncation).
    pub fn log_appended(&mut self, last: LogPos) {
        if self.role != Role::Witness {
            self.last = last;
        }
    }

    /// The local log is committed through `through` (what the primary's
    /// stream said, or this primary's own commit point).
    pub fn log_committed(&mut self, through: LogPos) {
        if self.role != Role::Witness {
            self.committed = self.committed.max(through);
        }
    }

    /// The local commit point reached `index`, whose entry has `epoch`.
    /// A primary becomes ready once an entry of its own epoch is committed.
    pub fn committed(&mut self, now: Millis, index: i32, epoch: Epoch) -> Vec<Output> {
        self.advance(now);
        let mut out = Vec::new();
        let own = self.hard.epoch;
        self.log_committed(LogPos { epoch, index });
        if let Some(term) = self.term.as_mut() {
            if epoch == own && index >= 0 {
                term.barrier_committed = true;
            }
        }
        self.check_ready(&mut out);
        out
    }

    /// Proposes `members` as the primary's in-sync set. Commits need the
    /// members of both the current and the proposed set until a majority
    /// of the configured servers accepted it ([`Output::InSyncCommitted`]).
    ///
    /// # Errors
    /// [`ElectionError::NotReadyToPropose`] unless this is a primary whose
    /// set of this epoch holds and no other change is pending.
    pub fn propose_in_sync(
        &mut self,
        now: Millis,
        members: MemberSet,
    ) -> Result<Vec<Output>, ElectionError> {
        self.advance(now);
        let me = self.cluster.me;
        let stable = match &self.term {
            Some(Term {
                stable: Some(stable),
                pending: None,
                ..
            }) => *stable,
            _ => return Err(ElectionError::NotReadyToPropose),
        };
        let mut members = MemberSet::from_ids(
            members
                .ids()
                .iter()
                .copied()
                .filter(|&id| self.cluster.is_voter(id) && !self.cluster.is_witness(id)),
        )
        .unwrap_or_default();
        members.insert(me);
        let config = Config {
            id: ConfigId {
                epoch: self.hard.epoch,
                version: stable.id.version + 1,
            },
            members,
            floor: stable.floor,
        };
        let mut out = Vec::new();
        self.hard.config = config;
        out.push(Output::Persist(self.hard));
        if let Some(term) = self.term.as_mut() {
            term.pending = Some(config);
        }
        self.settle_config(&mut out);
        self.send_heartbeats(&mut out);
        Ok(out)
    }

    // ----- queries -----

    /// This server's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The highest epoch this server has seen.
    pub fn epoch(&self) -> Epoch {
        self.hard.epoch
    }

    /// The primary it follows or is, if it knows one.
    pub fn primary(&self) -> Option<i32> {
        self.primary
    }

    /// What must be durable now.
    pub fn hard_state(&self) -> HardState {
        self.hard
    }

    /// The latest in-sync set this server holds.
    pub fn config(&self) -> Config {
        self.hard.config
    }

    /// True while this server is primary and a majority's promises last.
    pub fn lease_live(&self, now: Millis) -> bool {
        match &self.term {
            Some(term) => self.role == Role::Primary && term.lease.live(now),
            None => false,
        }
    }

    /// When the primary's lease ends (`None`: not primary).
    pub fn lease_until(&self) -> Option<Millis> {
        self.term.as_ref().map(|t| t.lease.until())
    }

    /// True if a write may be committed and acknowledged at `now`: the
    /// lease is live and a majority accepted an in-sync set of this epoch.
    /// Check it when the write is acknowledged, not when it was sent: a
    /// lease may end while a write is in flight.
    pub fn may_commit(&self, now: Millis) -> bool {
        self.lease_live(now) && self.term.as_ref().is_some_and(|t| t.stable.is_some())
    }

    /// True if reads and writes may be served at `now`: as
    /// [`Election::may_commit`], and an entry of this epoch is committed.
    pub fn can_serve(&self, now: Millis) -> bool {
        self.may_commit(now) && self.term.as_ref().is_some_and(|t| t.barrier_committed)
    }

    /// The servers that must hold an entry before it is committed: the
    /// settled set and, while a change is pending, the proposed one too.
    /// Empty when not primary.
    pub fn commit_set(&self) -> MemberSet {
        let Some(term) = &self.term else {
            return MemberSet::new();
        };
        let mut set = term.stable.map(|c| c.members).unwrap_or_default();
        if let Some(pending) = term.pending {
            for &id in pending.members.ids() {
                set.insert(id);
            }
        }
        set
    }

    /// The data servers (this primary and witnesses aside) that
    /// acknowledged no heartbeat sent in the last `lease_ms`, once the term
    /// is that old: a backup cut off or paused, which would hold every
    /// commit until its replication link times out (`--peer-timeout`), and
    /// which must not rejoin the in-sync set until it is heard again. A
    /// backup that is only slow to write keeps acking: heartbeats never
    /// wait for a disk. Empty unless the servers still heard make a
    /// majority: a primary that hears no majority is losing its lease, and
    /// a proposal to drop the others would only reach them (a link cut one
    /// way) and leave no one they could elect.
    pub fn silent_peers(&self, now: Millis) -> MemberSet {
        let Some(term) = &self.term else {
            return MemberSet::new();
        };
        if now < term.started.saturating_add(self.timing.lease_ms) {
            return MemberSet::new();
        }
        let me = self.cluster.me;
        let heard = |id: i32| id == me || term.lease.promise_of(id) > now;
        let voters = &self.cluster.voters;
        if voters.iter().filter(|&&id| heard(id)).count() < self.cluster.majority() {
            return MemberSet::new();
        }
        let silent = voters
            .iter()
            .copied()
            .filter(|&id| !heard(id) && !self.cluster.is_witness(id));
        // The voters were checked to fit a set when the election was made.
        MemberSet::from_ids(silent).unwrap_or_default()
    }

    /// The latest of this primary's in-sync sets that a majority accepted
    /// (`None`: not primary, or its first set not settled yet).
    pub fn settled_config(&self) -> Option<Config> {
        self.term.as_ref().and_then(|t| t.stable)
    }

    /// A change of the in-sync set waiting for a majority, if any.
    pub fn pending_config(&self) -> Option<Config> {
        self.term.as_ref().and_then(|t| t.pending)
    }

    // ----- time -----

    fn advance(&mut self, now: Millis) {
        // Monotonic by contract; a caller's slip must not move time back.
        self.now = self.now.max(now);
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: small, and good enough to spread election delays.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn jitter(&mut self) -> Millis {
        self.next_random() % self.timing.jitter_ms
    }

    /// After lost rounds, wait longer (up to eight times the jitter), so
    /// that colliding candidates spread out and the epoch stops climbing.
    fn back_off(&mut self) -> Millis {
        let spread = self.timing.jitter_ms << self.lost_rounds.min(3);
        self.timing.round_ms + self.next_random() % spread
    }

    /// The live primary this server promised to stand by, if any.
    fn honouring(&self) -> Option<i32> {
        if self.lease_live(self.now) {
            return Some(self.cluster.me);
        }
        self.honour
            .filter(|&(_, until)| self.now < until)
            .map(|(p, _)| p)
    }

    fn may_stand(&self) -> bool {
        self.now >= self.stand_at
            && self.honouring().is_none()
            && self.now >= self.starting_until
            && self.hard.config.members.contains(self.cluster.me)
    }

    // ----- the primary -----

    fn tick_primary(&mut self, out: &mut Vec<Output>) {
        let now = self.now;
        let epoch = self.hard.epoch;
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let live = term.lease.live(now);
        if term.lease_live && !live {
            term.lease_live = false;
            out.push(Output::LeaseLost { epoch });
        }
        let majority_last_heard = term.started.max(term.lease.until());
        if !live && now >= majority_last_heard.saturating_add(self.timing.grace_ms) {
            self.become_backup(StepDownReason::NoMajority, out);
            return;
        }
        if now >= term.next_heartbeat {
            self.send_heartbeats(out);
        }
    }

    fn send_heartbeats(&mut self, out: &mut Vec<Output>) {
        let (me, now, epoch, config) =
            (self.cluster.me, self.now, self.hard.epoch, self.hard.config);
        if let Some(term) = self.term.as_mut() {
            term.next_heartbeat = now + self.timing.heartbeat_ms;
        }
        for &to in self.cluster.voters.iter().filter(|&&id| id != me) {
            out.push(Output::Send {
                to,
                msg: Message::Heartbeat {
                    from: me,
                    epoch,
                    sent_at: now,
                    config,
                },
            });
        }
    }

    fn on_ack(
        &mut self,
        from: i32,
        epoch: Epoch,
        sent_at: Millis,
        accepted: ConfigId,
        ok: bool,
        out: &mut Vec<Output>,
    ) {
        if epoch > self.hard.epoch {
            self.adopt(epoch, from, out);
            return;
        }
        if self.role != Role::Primary || epoch != self.hard.epoch || !ok {
            return;
        }
        let (now, epoch) = (self.now, self.hard.epoch);
        let Some(term) = self.term.as_mut() else {
            return;
        };
        term.lease.acked(from, sent_at, now);
        match term.accepted.iter_mut().find(|(id, _)| *id == from) {
            Some((_, held)) => *held = (*held).max(accepted),
            None => term.accepted.push((from, accepted)),
        }
        if !term.lease_live && term.lease.live(now) {
            term.lease_live = true;
            out.push(Output::LeaseRegained {
                epoch,
                until: term.lease.until(),
            });
        }
        self.settle_config(out);
        self.check_ready(out);
    }

    /// Promotes the pending set once a majority (this server included)
    /// holds it or a later one.
    fn settle_config(&mut self, out: &mut Vec<Output>) {
        let majority = self.cluster.majority();
        let Some(term) = self.term.as_mut() else {
            return;
        };
        let Some(pending) = term.pending else {
            return;
        };
        let holders = 1 + term
            .accepted
            .iter()
            .filter(|(_, held)| *held >= pending.id)
            .count();
        if holders >= majority {
            term.stable = Some(pending);
            term.pending = None;
            out.push(Output::InSyncCommitted(pending));
        }
    }

    fn check_ready(&mut self, out: &mut Vec<Output>) {
        let now = self.now;
        let epoch = self.hard.epoch;
        let serving = self.can_serve(now);
        if let Some(term) = self.term.as_mut() {
            if serving && !term.ready {
                term.ready = true;
                out.push(Output::Ready { epoch });
            }
        }
    }

    fn become_primary(&mut self, out: &mut Vec<Output>) {
        let me = self.cluster.me;
        // The new set: this server and the members of the last set it knows
        // that voted for it. Until a member's log reaches this server's end
        // (the floor) it may lack committed entries and cannot be elected.
        let mut members = MemberSet::new();
        members.insert(me);
        for &id in &self.round_alive {
            if self.hard.config.members.contains(id) && !self.cluster.is_witness(id) {
                members.insert(id);
            }
        }
        let config = Config {
            id: ConfigId {
                epoch: self.hard.epoch,
                version: 0,
            },
            members,
            floor: self.last,
        };
        self.hard.config = config;
        out.push(Output::Persist(self.hard));
        self.role = Role::Primary;
        self.primary = Some(me);
        self.lost_rounds = 0;
        self.term = Some(Term {
            started: self.now,
            lease: Lease::new(me, &self.cluster.voters, self.timing.lease_ms),
            lease_live: false,
            next_heartbeat: self.now,
            stable: None,
            pending: Some(config),
            accepted: Vec::new(),
            barrier_committed: false,
            ready: false,
        });
        out.push(Output::BecomePrimary {
            epoch: self.hard.epoch,
            in_sync: members,
        });
        // A cluster of one holds its own lease and majority at once.
        if let Some(term) = self.term.as_mut() {
            term.lease_live = term.lease.live(self.now);
        }
        self.settle_config(out);
        self.send_heartbeats(out);
    }

    /// Leaves any candidacy or term and waits for a primary.
    fn become_backup(&mut self, reason: StepDownReason, out: &mut Vec<Output>) {
        if self.role == Role::Primary {
            out.push(Output::StepDown {
                epoch: self.hard.epoch,
                reason,
            });
        }
        self.term = None;
        if self.role != Role::Witness {
            self.role = Role::Backup;
        }
        if self.primary == Some(self.cluster.me) {
            self.primary = None;
        }
        self.stand_at = self.now + self.timing.grace_ms + self.jitter();
    }

    // ----- backups -----

    fn on_heartbeat(
        &mut self,
        from: i32,
        epoch: Epoch,
        sent_at: Millis,
        config: Config,
        out: &mut Vec<Output>,
    ) {
        let ack = |me: i32, epoch: Epoch, accepted: ConfigId, ok: bool| Output::Send {
            to: from,
            msg: Message::HeartbeatAck {
                from: me,
                epoch,
                sent_at,
                accepted,
                ok,
            },
        };
        if epoch < self.hard.epoch {
            out.push(ack(
                self.cluster.me,
                self.hard.epoch,
                self.hard.config.id,
                false,
            ));
            return;
        }
        if epoch_owner(epoch) != from || self.cluster.is_witness(from) {
            return;
        }
        if epoch > self.hard.epoch {
            self.adopt(epoch, from, out);
        }
        if self.role != Role::Backup && self.role != Role::Witness {
            self.become_backup(StepDownReason::HigherEpoch(from), out);
        }
        if self.primary != Some(from) {
            self.primary = Some(from);
            out.push(Output::Follow {
                primary: from,
                epoch,
            });
        }
        let until = self.now + self.timing.grace_ms;
        self.honour = Some((from, until));
        self.stand_at = until + self.jitter();
        self.lost_rounds = 0;
        if config.id.epoch == epoch && config.id > self.hard.config.id {
            self.hard.config = config;
            out.push(Output::Persist(self.hard));
        }
        out.push(ack(self.cluster.me, epoch, self.hard.config.id, true));
    }

    /// Takes a higher epoch seen from server `from`; any vote is for the
    /// old one, and a primary of the old one steps down.
    fn adopt(&mut self, epoch: Epoch, from: i32, out: &mut Vec<Output>) {
        if self.role == Role::Primary {
            self.become_backup(StepDownReason::HigherEpoch(from), out);
        }
        self.hard.epoch = epoch;
        self.hard.voted_for = None;
        out.push(Output::Persist(self.hard));
        if self.role == Role::PreCandidate || self.role == Role::Candidate {
            self.role = Role::Backup;
        }
        if self.primary.is_some_and(|p| p != epoch_owner(epoch)) {
            self.primary = None;
        }
    }

    // ----- voting -----

    /// The rules every (pre-)vote passes, in the order they are checked.
    fn vote_check(&self, candidate: i32, proposed: Epoch, last: LogPos) -> Option<Refusal> {
        if proposed <= self.hard.epoch {
            return Some(Refusal::StaleEpoch);
        }
        if let Some(p) = self.honouring() {
            return Some(Refusal::LeaseLive(p));
        }
        if self.now < self.starting_until {
            return Some(Refusal::Starting);
        }
        // Only entries known committed count, not this server's log end:
        // past its commit point its log may hold entries that a member of
        // the in-sync set never received (sent to a backup catching up, or
        // to one that holds a newer set), and a rule on length would then
        // refuse the one electable member while that member refuses it.
        if last < self.committed || last < self.hard.config.floor {
            return Some(Refusal::LogBehind);
        }
        if !self.hard.config.members.contains(candidate) {
            return Some(Refusal::NotInSync);
        }
        None
    }

    fn on_pre_vote(&mut self, from: i32, proposed: Epoch, last: LogPos, out: &mut Vec<Output>) {
        if self.cluster.is_witness(from) || epoch_owner(proposed) != from {
            return;
        }
        let refused = self.vote_check(from, proposed, last);
        out.push(Output::Send {
            to: from,
            msg: Message::PreVoteReply {
                from: self.cluster.me,
                epoch: self.hard.epoch,
                proposed,
                refused,
            },
        });
    }

    fn on_vote(&mut self, from: i32, epoch: Epoch, last: LogPos, out: &mut Vec<Output>) {
        if self.cluster.is_witness(from) || epoch_owner(epoch) != from {
            return;
        }
        let voted_here = self.hard.epoch == epoch && self.hard.voted_for == Some(from);
        let mut refused = if voted_here {
            None
        } else {
            self.vote_check(from, epoch, last)
        };
        if matches!(refused, Some(Refusal::LogBehind | Refusal::NotInSync)) {
            // No promise stands in the way: take the epoch, as Raft does,
            // so this server's own next round goes above it.
            self.adopt(epoch, from, out);
        }
        if refused.is_none() && !voted_here {
            self.adopt(epoch, from, out);
            if let Some(other) = self.hard.voted_for.filter(|&v| v != from) {
                refused = Some(Refusal::AlreadyVoted(other));
            } else {
                self.hard.voted_for = Some(from);
                out.push(Output::Persist(self.hard));
                // Give the candidate its round before standing oneself.
                self.stand_at = self.now + self.timing.grace_ms + self.jitter();
            }
        }
        match refused {
            None => out.push(Output::Voted {
                candidate: from,
                epoch,
            }),
            Some(why) => out.push(Output::Refused {
                candidate: from,
                epoch,
                why,
            }),
        }
        out.push(Output::Send {
            to: from,
            msg: Message::VoteReply {
                from: self.cluster.me,
                epoch: self.hard.epoch,
                refused,
            },
        });
    }

    fn start_pre_vote(&mut self, out: &mut Vec<Output>) {
        self.role = Role::PreCandidate;
        self.round_alive.clear();
        self.round_epoch = next_epoch(self.hard.epoch, self.cluster.me);
        self.start_round(out);
    }

    fn start_vote(&mut self, out: &mut Vec<Output>) {
        self.role = Role::Candidate;
        self.hard.epoch = next_epoch(self.hard.epoch, self.cluster.me);
        self.hard.voted_for = Some(self.cluster.me);
        self.primary = None;
        out.push(Output::Persist(self.hard));
        self.round_epoch = self.hard.epoch;
        self.start_round(out);
    }

    /// Asks every other voter, then counts this server's own agreement.
    fn start_round(&mut self, out: &mut Vec<Output>) {
        let me = self.cluster.me;
        self.round_votes = vec![me];
        self.round_ends = self.now + self.timing.round_ms;
        for &to in self.cluster.voters.iter().filter(|&&id| id != me) {
            let msg = if self.role == Role::PreCandidate {
                Message::PreVote {
                    from: me,
                    epoch: self.hard.epoch,
                    proposed: self.round_epoch,
                    last: self.last,
                }
            } else {
                Message::Vote {
                    from: me,
                    epoch: self.hard.epoch,
                    last: self.last,
                }
            };
            out.push(Output::Send { to, msg });
        }
        self.count_round(out);
    }

    fn on_pre_vote_reply(
        &mut self,
        from: i32,
        epoch: Epoch,
        proposed: Epoch,
        refused: Option<Refusal>,
        out: &mut Vec<Output>,
    ) {
        if epoch > self.hard.epoch {
            self.adopt(epoch, from, out);
            self.lose_round();
            return;
        }
        if refused.is_some() || proposed != self.round_epoch {
            return;
        }
        match self.role {
            Role::PreCandidate => self.add_vote(from, out),
            // A late agreement still shows the server is alive and eligible.
            Role::Candidate => self.note_alive(from),
            _ => {}
        }
    }

    fn on_vote_reply(
        &mut self,
        from: i32,
        epoch: Epoch,
        refused: Option<Refusal>,
        out: &mut Vec<Output>,
    ) {
        if epoch > self.hard.epoch {
            self.adopt(epoch, from, out);
            self.lose_round();
            return;
        }
        if self.role == Role::Candidate && epoch == self.hard.epoch && refused.is_none() {
            self.add_vote(from, out);
        }
    }

    fn note_alive(&mut self, from: i32) {
        if !self.round_alive.contains(&from) {
            self.round_alive.push(from);
        }
    }

    fn add_vote(&mut self, from: i32, out: &mut Vec<Output>) {
        self.note_alive(from);
        if !self.round_votes.contains(&from) {
            self.round_votes.push(from);
        }
        self.count_round(out);
    }

    fn count_round(&mut self, out: &mut Vec<Output>) {
        if self.round_votes.len() < self.cluster.majority() {
            return;
        }
        match self.role {
            Role::PreCandidate => self.start_vote(out),
            Role::Candidate => self.become_primary(out),
            _ => {}
        }
    }

    fn lose_round(&mut self) {
        if self.role == Role::PreCandidate || self.role == Role::Candidate {
            self.role = Role::Backup;
        }
        self.lost_rounds = self.lost_rounds.saturating_add(1);
        self.stand_at = self.now + self.back_off();
    }
}

/// The server that took `epoch` (its low 16 bits).
pub fn epoch_owner(epoch: Epoch) -> i32 {
    (epoch & 0xffff) as i32
}

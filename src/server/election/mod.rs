//! The election's I/O: runs one [`Election`] on its own thread, feeds it
//! ticks (every 10 ms, milliseconds of a process-local `Instant`), the
//! frames that arrive on election connections (`FELE`) and the local log's
//! end, and carries out its outputs in order: the durable state saved
//! (with a data directory, fsynced) before anything after it is sent,
//! messages queued to one sender thread per peer, decisions logged and
//! published in [`ElectionStatus`].
//!
//! A server passes [`ElectionHooks`] ([`ElectionService::start_with`]):
//! they are told every decision (become primary, step down, lease lost,
//! follow, in-sync set accepted) and see the election after every step, on
//! the election's thread, and must return at once; that is how the
//! election drives the server's term (`elected`). A witness and
//! the tests start it with only the log end. Connections come either from its own
//! listener ([`ElectionService::listen`], what a witness and the tests
//! use) or are handed over by a server's accept loop
//! ([`ElectionService::serve`]).
//!
//! `originals` tells an original (C++) peer, which never votes, from a
//! factory server whose connection merely dropped.

mod candidacy;
pub(crate) mod elected;
pub(crate) mod originals;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::replication::election::{
    Cluster, Config, Election, ElectionError, HardState, LogPos, Message, Output, Role,
};
use crate::replication::lease::{Millis, Timing};
use crate::storage::election_state;
use crate::wire::election::{check_length, ELECTION_TAG};
use crate::wire::{Epoch, MemberSet};

/// How often the election is ticked when no message arrives.
const TICK: Duration = Duration::from_millis(10);
/// Messages waiting for one peer; more are dropped (the network may drop
/// them too, and a backlog would only deliver stale ones).
const PEER_QUEUE: usize = 128;
/// Connecting to a peer and writing to it give up after this long.
const PEER_IO: Duration = Duration::from_millis(500);
/// Most election connections served at once.
const MAX_INBOUND: usize = 64;
/// An inbound connection silent for this long is closed (its sender
/// reconnects when it next has something to say), so a peer that opens
/// connections and sends nothing, or half a frame, cannot hold the slots.
const INBOUND_IDLE: Duration = Duration::from_secs(10);

/// What an election service is started with.
#[derive(Clone, Debug)]
pub struct ElectionOptions {
    /// This server, every voter and the witnesses among them.
    pub cluster: Cluster,
    /// Heartbeat, lease, grace and election timing.
    pub timing: Timing,
    /// Each other voter's election address.
    pub peers: Vec<(i32, SocketAddr)>,
    /// Where the durable state lives (`None`: in memory only).
    pub data_dir: Option<PathBuf>,
}

/// The election's state as last published, for status requests and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionStatus {
    /// This server's role.
    pub role: Role,
    /// The highest epoch it has seen.
    pub epoch: Epoch,
    /// The primary it follows or is.
    pub primary: Option<i32>,
    /// True if it is primary and its lease was live when published.
    pub lease_live: bool,
    /// True if it may commit (lease live and its epoch's set settled).
    pub may_commit: bool,
    /// The latest in-sync set it holds.
    pub config: Config,
    /// Epochs in which this server became primary, in order.
    pub terms: Vec<Epoch>,
    /// A proposed in-sync set not yet accepted by a majority.
    pub pending: Option<Config>,
    /// What is left of the primary's lease, in ms, when published.
    pub lease_left_ms: Millis,
}

enum Input {
    Frame(Message),
    Committed(i32, Epoch),
    /// A proposed in-sync set, for the primary of this epoch (`None`: any).
    Propose(Option<Epoch>, MemberSet),
    Stop,
}

/// What the server running an election learns from it, on the election's
/// thread. Every call must return at once: in particular it must not take
/// a lock that a thread syncing to disk may hold (the replica's), or
/// heartbeats would wait for the disk and leases would lapse under load.
pub trait ElectionHooks: Send + 'static {
    /// Where the local log ends now (asked before every step).
    fn log_end(&self) -> LogPos;
    /// Where the local log ends and how far it is committed (asked before
    /// every step; a voter refuses a candidate that lacks an entry it knows
    /// committed). Without a commit point, only the end is known.
    fn log_ends(&self) -> (LogPos, LogPos) {
        (self.log_end(), LogPos::EMPTY)
    }
    /// The election's clock: its milliseconds count from `base`.
    fn started(&self, _base: Instant) {}
    /// A decision to carry out: every output but `Persist` and `Send`,
    /// once what came before it was saved and queued.
    fn decided(&self, _out: &Output) {}
    /// The election as it stands after a step at `now`.
    fn stepped(&self, _election: &Election, _now: Millis) {}
    /// A well-formed election message from server `from` arrived: it takes
    /// part in the election, so it is not an original server.
    fn heard(&self, _from: i32) {}
}

/// The hooks of a service that only needs the log's end.
struct LogEndOnly<F>(F);

impl<F: Fn() -> LogPos + Send + 'static> ElectionHooks for LogEndOnly<F> {
    fn log_end(&self) -> LogPos {
        (self.0)()
    }
}

/// A running election; [`ElectionService::stop`] (or drop) ends and joins
/// every thread it started.
pub struct ElectionService {
    inputs: Sender<Input>,
    status: Arc<Mutex<ElectionStatus>>,
    stopping: Arc<AtomicBool>,
    inbound: Arc<Mutex<Streams>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    driver: Option<JoinHandle<()>>,
    listener: Option<(SocketAddr, JoinHandle<()>)>,
}

/// Open inbound connections, by a serial number, so that stopping can
/// shut them down and each reader removes its own when it ends.
#[derive(Default)]
struct Streams {
    next: u64,
    open: Vec<(u64, TcpStream)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ElectionService {
    /// Starts the election; `log_end` reports where the local log ends
    /// (asked before every step; a witness passes `|| LogPos::EMPTY`).
    ///
    /// # Errors
    /// Bad options, an unreadable durable state, or a thread that cannot
    /// be started.
    pub fn start(
        options: ElectionOptions,
        log_end: impl Fn() -> LogPos + Send + 'static,
    ) -> io::Result<ElectionService> {
        Self::start_with(options, Box::new(LogEndOnly(log_end)))
    }

    /// As [`ElectionService::start`], telling `hooks` every decision.
    ///
    /// # Errors
    /// As [`ElectionService::start`].
    pub fn start_with(
        options: ElectionOptions,
        hooks: Box<dyn ElectionHooks>,
    ) -> io::Result<ElectionService> {
        let hard = match &options.data_dir {
            Some(dir) => election_state::load(dir).map_err(io::Error::other)?,
            None => None,
        };
        let base = Instant::now();
        hooks.started(base);
        let seed = seed_for(options.cluster.me);
        let election = Election::new(
            options.cluster.clone(),
            options.timing,
            hard,
            hooks.log_end(),
            0,
            seed,
        )
        .map_err(|e: ElectionError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let status = Arc::new(Mutex::new(status_of(&election, 0, Vec::new())));
        let stopping = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Vec::new();
        for &(id, addr) in &options.peers {
            let (tx, rx) = mpsc::sync_channel(PEER_QUEUE);
            let (me, stop) = (options.cluster.me, Arc::clone(&stopping));
            let handle = thread::Builder::new()
                .name(format!("elect-to-{id}"))
                .spawn(move || send_loop(me, id, addr, &rx, &stop))?;
            lock(&threads).push(handle);
            senders.push((id, tx));
        }
        let (inputs, rx) = mpsc::channel();
        let driver = Driver {
            election,
            base,
            data_dir: options.data_dir.clone(),
            senders,
            status: Arc::clone(&status),
            terms: Vec::new(),
            me: options.cluster.me,
            hooks,
            candidacy: candidacy::Candidacy::default(),
        };
        let driver = thread::Builder::new()
            .name("election".into())
            .spawn(move || driver.run(&rx))?;
        Ok(ElectionService {
            inputs,
            status,
            stopping,
            inbound: Arc::new(Mutex::new(Streams::default())),
            threads,
            driver: Some(driver),
            listener: None,
        })
    }

    /// Serves election connections accepted on `listener` (bound by the
    /// caller, so that peers can be told its address before the start).
    ///
    /// # Errors
    /// The listener's address, or the accept thread's start.
    pub fn listen(&mut self, listener: TcpListener) -> io::Result<SocketAddr> {
        let bound = listener.local_addr()?;
        let handle = self.connection_handler();
        let accept = thread::Builder::new()
            .name(format!("elect-accept-{}", bound.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if handle.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    // The tag is read on the connection's own thread: a
                    // silent or slow peer must not hold up the others.
                    if let Ok(stream) = stream {
                        handle.serve_tagged(stream);
                    }
                }
            })?;
        self.listener = Some((bound, accept));
        Ok(bound)
    }

    /// Serves an election connection whose `FELE` tag was already read,
    /// on a thread of the service's own.
    pub fn serve(&self, stream: TcpStream) {
        self.connection_handler().serve(stream);
    }

    /// A reader for a connection served on the caller's thread (a server's
    /// connection thread, whose registry closes it when the server stops).
    pub fn reader(&self) -> FrameReader {
        FrameReader {
            inputs: self.inputs.clone(),
        }
    }

    fn connection_handler(&self) -> Inbound {
        Inbound {
            inputs: self.inputs.clone(),
            stopping: Arc::clone(&self.stopping),
            streams: Arc::clone(&self.inbound),
            threads: Arc::clone(&self.threads),
        }
    }

    /// The local commit point reached `index`, an entry of `epoch`.
    pub fn committed(&self, index: i32, epoch: Epoch) {
        let _ = self.inputs.send(Input::Committed(index, epoch));
    }

    /// Proposes `members` as the in-sync set (what the term does once a
    /// backup has caught up, or after its link failed); ignored unless
    /// this server is a primary with no change pending.
    pub fn propose_in_sync(&self, members: MemberSet) {
        let _ = self.inputs.send(Input::Propose(None, members));
    }

    /// As [`ElectionService::propose_in_sync`], ignored unless this server
    /// is still primary in `epoch` when the election takes it.
    pub fn propose_in_sync_in(&self, epoch: Epoch, members: MemberSet) {
        let _ = self.inputs.send(Input::Propose(Some(epoch), members));
    }

    /// The state as last published.
    pub fn status(&self) -> ElectionStatus {
        lock(&self.status).clone()
    }

    /// Ends every thread and joins it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.inputs.send(Input::Stop);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
        if let Some((addr, accept)) = self.listener.take() {
            let _ = TcpStream::connect_timeout(&addr, PEER_IO);
            let _ = accept.join();
        }
        for (_, s) in lock(&self.inbound).open.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for ElectionService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads one election connection's frames into the service.
pub struct FrameReader {
    inputs: Sender<Input>,
}

impl FrameReader {
    /// Reads until the peer closes, sends something wrong, or the stream
    /// is shut down; `peer` names it in log lines.
    pub fn run(self, stream: TcpStream, peer: &str) {
        read_loop(stream, peer, &self.inputs);
    }
}

/// What a connection's reader thread needs.
#[derive(Clone)]
struct Inbound {
    inputs: Sender<Input>,
    stopping: Arc<AtomicBool>,
    streams: Arc<Mutex<Streams>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Inbound {
    fn serve(&self, stream: TcpStream) {
        self.spawn_reader(stream, false);
    }

    /// As [`Inbound::serve`], reading and checking the tag first.
    fn serve_tagged(&self, stream: TcpStream) {
        self.spawn_reader(stream, true);
    }

    fn spawn_reader(&self, stream: TcpStream, tagged: bool) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let serial = {
            let mut streams = lock(&self.streams);
            if streams.open.len() >= MAX_INBOUND || self.stopping.load(Ordering::SeqCst) {
                log::warn!("election: {peer}: too many election connections; closing");
                return;
            }
            let Ok(clone) = stream.try_clone() else {
                return;
            };
            streams.next += 1;
            let serial = streams.next;
            streams.open.push((serial, clone));
            serial
        };
        let (inputs, streams) = (self.inputs.clone(), Arc::clone(&self.streams));
        let spawned = thread::Builder::new()
            .name("elect-from".into())
            .spawn(move || {
                if !tagged || read_tag(&stream, &peer) {
                    read_loop(stream, &peer, &inputs);
                }
                lock(&streams).open.retain(|(n, _)| *n != serial);
            });
        if let Ok(handle) = spawned {
            let mut threads = lock(&self.threads);
            threads.retain(|t| !t.is_finished());
            threads.push(handle);
        }
    }
}

/// True if `stream` opens with the `FELE` tag within [`PEER_IO`].
fn read_tag(mut stream: &TcpStream, peer: &str) -> bool {
    let mut tag = [0u8; 8];
    let _ = stream.set_read_timeout(Some(PEER_IO));
    if stream.read_exact(&mut tag).is_ok() && tag == ELECTION_TAG {
        return true;
    }
    log::warn!("election: {peer}: no FELE tag; closing");
    false
}

/// Reads frames until the peer closes, sends something wrong, or the
/// service stops (its stream is shut down).
fn read_loop(mut stream: TcpStream, peer: &str, inputs: &Sender<Input>) {
    if stream.set_read_timeout(Some(INBOUND_IDLE)).is_err() {
        return;
    }
    let mut buf = [0u8; crate::wire::election::MAX_ELECTION_FRAME];
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let len = match check_length(prefix) {
            Ok(len) => len,
            Err(e) => {
                log::warn!("election: {peer}: {e}; closing");
                return;
            }
        };
        if stream.read_exact(&mut buf[..len]).is_err() {
            return;
        }
        match Message::decode(&buf[..len]) {
            Ok(msg) => {
                if inputs.send(Input::Frame(msg)).is_err() {
                    return;
                }
            }
            Err(e) => {
                log::warn!("election: {peer}: {e}; closing");
                return;
            }
        }
    }
}

/// Sends one peer's messages over one connection, reconnecting when it
/// breaks; a message that cannot be sent is dropped.
fn send_loop(me: i32, id: i32, addr: SocketAddr, rx: &Receiver<Message>, stop: &AtomicBool) {
    let mut conn: Option<TcpStream> = None;
    let mut frame = Vec::with_capacity(128);
    while let Ok(msg) = rx.recv() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if conn.is_none() {
            conn = match connect(addr) {
                Ok(stream) => {
                    log::debug!(
                        "election {me}: connected to {id} at {addr} from {:?}",
                        stream.local_addr()
                    );
                    Some(stream)
                }
                Err(e) => {
                    log::debug!("election {me}: cannot reach {id} at {addr}: {e}");
                    None
                }
            };
        }
        let Some(stream) = conn.as_mut() else {
            continue;
        };
        frame.clear();
        msg.encode(&mut frame);
        if let Err(e) = stream.write_all(&frame) {
            log::debug!("election {me}: sending to {id} at {addr} failed: {e}");
            conn = None;
        }
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, PEER_IO)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(PEER_IO))?;
    stream.write_all(&ELECTION_TAG)?;
    Ok(stream)
}

/// One info line per decision, naming the peer it concerns.
fn log_decision(me: i32, out: &Output) {
    use crate::logging::epoch as name;
    match *out {
        Output::Voted { candidate, epoch } => {
            log::info!("factory {me}: voted for server {candidate} in epoch {}", name(epoch))
        }
        Output::Refused {
            candidate,
            epoch,
            why,
        } => log::info!(
            "factory {me}: refused its vote to server {candidate} for epoch {}: {}",
            name(epoch),
            refusal_text(why)
        ),
        Output::StepDown { epoch, reason } => {
            use crate::replication::election::StepDownReason;
            let why = match reason {
                StepDownReason::HigherEpoch(by) => format!("server {by} is in a higher epoch"),
                StepDownReason::NoMajority => {
                    "no majority acknowledged its heartbeats since its lease ended; it stops sending them so that another can be elected".to_string()
                }
            };
            log::info!(
                "factory {me}: election: leaves its term of epoch {}: {why}",
                name(epoch)
            )
        }
        Output::LeaseLost { epoch } => log::info!(
            "factory {me}: lease lost in epoch {}: no majority acknowledged its heartbeats in time; refusing writes and reads",
            name(epoch)
        ),
        Output::LeaseRegained { epoch, .. } => {
            log::info!("factory {me}: lease regained in epoch {}", name(epoch))
        }
        Output::Follow { primary, epoch } => log::info!(
            "factory {me}: election: server {primary} is primary in epoch {}",
            name(epoch)
        ),
        Output::Ready { epoch } => log::info!(
            "factory {me}: ready to serve in epoch {} (an entry of the epoch is committed)",
            name(epoch)
        ),
        Output::InSyncCommitted(config) => log::info!(
            "factory {me}: in-sync set {:?} (epoch {} version {}) accepted by a majority",
            config.members.ids(),
            name(config.id.epoch),
            config.id.version
        ),
        Output::Persist(_) | Output::Send { .. } | Output::BecomePrimary { .. } => {}
    }
}

/// Why a vote was refused, for the log line.
fn refusal_text(why: crate::replication::election::Refusal) -> String {
    use crate::replication::election::Refusal;
    match why {
        Refusal::StaleEpoch => "its epoch is not above this server's".into(),
        Refusal::LeaseLive(p) => format!("this server stands by live primary {p}"),
        Refusal::Starting => "this server started less than a grace period ago".into(),
        Refusal::AlreadyVoted(c) => format!("this server already voted for server {c}"),
        Refusal::LogBehind => {
            "its log ends before this server's commit point or the in-sync set's floor".into()
        }
        Refusal::NotInSync => "it is not in the latest in-sync set this server holds".into(),
    }
}

fn seed_for(me: i32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(me as u32) << 32) ^ u64::from(std::process::id())
}

fn status_of(election: &Election, now: Millis, terms: Vec<Epoch>) -> ElectionStatus {
    ElectionStatus {
        role: election.role(),
        epoch: election.epoch(),
        primary: election.primary(),
        lease_live: election.lease_live(now),
        may_commit: election.may_commit(now),
        config: election.config(),
        terms,
        pending: election.pending_config(),
        lease_left_ms: election
            .lease_until()
            .filter(|_| election.lease_live(now))
            .map_or(0, |u| u.saturating_sub(now)),
    }
}

struct Driver {
    election: Election,
    base: Instant,
    data_dir: Option<PathBuf>,
    senders: Vec<(i32, SyncSender<Message>)>,
    status: Arc<Mutex<ElectionStatus>>,
    terms: Vec<Epoch>,
    me: i32,
    hooks: Box<dyn ElectionHooks>,
    candidacy: candidacy::Candidacy,
}

impl Driver {
    fn now(&self) -> Millis {
        self.base.elapsed().as_millis() as Millis
    }

    fn run(mut self, rx: &Receiver<Input>) {
        let mut next_tick = self.now();
        loop {
            let wait = next_tick.saturating_sub(self.now());
            let input = match rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
            };
            let (end, committed) = self.hooks.log_ends();
            self.election.log_appended(end);
            self.election.log_committed(committed);
            let now = self.now();
            let before = self.election.role();
            let outs = match input {
                Some(Input::Frame(msg)) => {
                    self.hooks.heard(msg.from());
                    self.candidacy.replied(self.me, &msg);
                    self.election.step(now, msg)
                }
                Some(Input::Committed(index, epoch)) => self.election.committed(now, index, epoch),
                Some(Input::Propose(epoch, members)) => self.propose(now, epoch, members),
                Some(Input::Stop) => return,
                None => Vec::new(),
            };
            self.carry_out(outs);
            if now >= next_tick {
                let outs = self.election.tick(now);
                self.carry_out(outs);
                next_tick = now + TICK.as_millis() as Millis;
            }
            self.candidacy.stepped(self.me, before, &self.election);
            self.hooks.stepped(&self.election, now);
            *lock(&self.status) = status_of(&self.election, self.now(), self.terms.clone());
        }
    }

    fn propose(&mut self, now: Millis, epoch: Option<Epoch>, members: MemberSet) -> Vec<Output> {
        if epoch
            .is_some_and(|e| e != self.election.epoch() || self.election.role() != Role::Primary)
        {
            log::debug!(
                "factory {}: an in-sync proposal of an ended term ignored",
                self.me
            );
            return Vec::new();
        }
        self.election
            .propose_in_sync(now, members)
            .unwrap_or_else(|e| {
                log::info!("factory {}: {e}", self.me);
                Vec::new()
            })
    }

    /// Carries out outputs in order; nothing after a failed save is sent.
    fn carry_out(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Persist(hard) => {
                    if !self.save(&hard) {
                        return;
                    }
                }
                Output::Send { to, msg } => self.send(to, msg),
                Output::BecomePrimary { epoch, in_sync } => {
                    self.terms.push(epoch);
                    log::info!(
                        "factory {}: elected primary in epoch {}:{} with in-sync set {:?}",
                        self.me,
                        epoch >> 16,
                        epoch & 0xffff,
                        in_sync.ids()
                    );
                    self.hooks.decided(&out);
                }
                other => {
                    log_decision(self.me, &other);
                    self.hooks.decided(&other);
                }
            }
        }
    }

    fn save(&self, hard: &HardState) -> bool {
        let Some(dir) = &self.data_dir else {
            return true;
        };
        match election_state::save(dir, hard, true) {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "factory {}: cannot save the election state ({e}); not answering",
                    self.me
                );
                false
            }
        }
    }

    fn send(&self, to: i32, msg: Message) {
        let Some((_, tx)) = self.senders.iter().find(|(id, _)| *id == to) else {
            return;
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(msg) {
            log::debug!("factory {}: election queue to {to} full; dropped", self.me);
        }
    }
}

//! The balancer's read cache at work (issue 16.3): the observer thread
//! that follows the primary's commit stream (`wire::observe`) into the
//! [`CoherentCache`], and the read and write paths that use it.
//!
//! A cache hit for a read that began at time t is answered only after a
//! confirmation requested after t came back on the observer link: the
//! primary sends `Confirmed` only while it may serve reads (the test the
//! servers' read index uses), after every entry through its commit point,
//! so the cache has then applied everything committed before t. One
//! confirmation is in flight at a time and answers every hit that began
//! before it was sent, so hits cost one round trip per batch, not per
//! read (as etcd batches ReadIndex). Misses go to a server; their answers,
//! and writes acknowledged through this balancer, fill the cache under the
//! rules of [`CoherentCache::finish_fill`]. A lost link, a refusal or a
//! reset empties the cache; it fills again from the next start.
//!
//! Called by `proxy` for each read and write, and started by
//! [`super::Balancer::start`] when `CACHE_SIZE` is not 0.

use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::coherent::{CacheCounts, CoherentCache};
use super::proxy::Shared;
use super::upstream::{Upstream, UpstreamError};
use crate::wire::observe::{read_observe, ObserveFrame, OBSERVE_TAG};
use crate::wire::{CustomerRecord, RobotInfo};

/// Longest wait of a hit for its confirmation; past it the read is sent
/// to a server instead.
const CONFIRM_WAIT: Duration = Duration::from_secs(1);

/// A link silent this long is dropped (the primary sends a heartbeat
/// every half second when idle).
const LINK_SILENCE: Duration = Duration::from_secs(3);

/// Pause between two attempts to open the stream.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long the observer may take to find the primary or connect.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The confirmation round trips: the last one begun and the last answered.
#[derive(Default)]
struct Confirming {
    begun: u64,
    busy: bool,
    answered: u64,
    /// The answer to `answered`: the cache generation and the commit
    /// point confirmed, or `None` when it failed.
    answer: Option<(u64, i32)>,
}

/// The cache, its stream and its confirmations.
pub(super) struct Observer {
    cache: Mutex<CoherentCache>,
    confirming: Mutex<Confirming>,
    answered: Condvar,
    /// The open link (a clone), for confirmation requests and for stop.
    link: Mutex<Option<TcpStream>>,
    stopping: AtomicBool,
    /// Streams started, and the server index of the current one (+1; 0:
    /// none), for the status report.
    pub(super) starts: AtomicU64,
    following: AtomicU64,
}

impl Observer {
    pub(super) fn new(capacity: usize) -> Observer {
        Observer {
            cache: Mutex::new(CoherentCache::new(capacity)),
            confirming: Mutex::default(),
            answered: Condvar::new(),
            link: Mutex::new(None),
            stopping: AtomicBool::new(false),
            starts: AtomicU64::new(0),
            following: AtomicU64::new(0),
        }
    }

    /// Records held now, whether hits may be served, and the counters.
    pub(super) fn figures(&self) -> (usize, bool, CacheCounts) {
        let cache = lock(&self.cache);
        (cache.len(), cache.is_live(), cache.counts())
    }

    /// The server the stream comes from now, if any.
    pub(super) fn following(&self) -> Option<usize> {
        match self.following.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as usize - 1),
        }
    }

    /// Ends the stream for good (the balancer stops).
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(link) = lock(&self.link).as_ref() {
            let _ = link.shutdown(Shutdown::Both);
        }
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A read: from the cache when it holds the customer and a
    /// confirmation allows it, else from a server (filling the cache).
    pub(super) fn read(
        &self,
        upstream: &Upstream,
        customer: i32,
    ) -> Result<CustomerRecord, UpstreamError> {
        let candidate = lock(&self.cache).lookup(customer).is_some();
        if candidate {
            if let Some((generation, commit)) = self.confirm(Instant::now() + CONFIRM_WAIT) {
                let hit = lock(&self.cache).confirmed_hit(customer, generation, commit);
                if let Some(last_order) = hit {
                    return Ok(CustomerRecord {
                        customer_id: customer,
                        last_order,
                    });
                }
            }
        }
        let ticket = {
            let mut cache = lock(&self.cache);
            cache.count_miss();
            cache.begin_fill(customer)
        };
        let result = upstream.read(customer);
        if let Some(t) = ticket {
            let mut cache = lock(&self.cache);
            match &result {
                Ok(record) => cache.finish_fill(t, record.last_order),
                Err(_) => cache.cancel_fill(t),
            }
        }
        result
    }

    /// A write on the primary; once acknowledged, its order may fill the
    /// cache.
    pub(super) fn order(
        &self,
        upstream: &Upstream,
        customer: i32,
        order: i32,
    ) -> Result<RobotInfo, UpstreamError> {
        let ticket = lock(&self.cache).begin_fill(customer);
        let result = upstream.order(customer, order);
        if let Some(t) = ticket {
            let mut cache = lock(&self.cache);
            match &result {
                Ok(_) => cache.finish_fill(t, order),
                Err(_) => cache.cancel_fill(t),
            }
        }
        result
    }

    /// A commit point confirmed by the primary after this call began, with
    /// the cache generation it holds for; `None` if none came in time.
    fn confirm(&self, deadline: Instant) -> Option<(u64, i32)> {
        let mut state = lock(&self.confirming);
        // One in flight may have been requested before this read began.
        let needed = state.begun + 1;
        loop {
            if state.answered >= needed {
                return state.answer;
            }
            if !state.busy {
                state.busy = true;
                state.begun += 1;
                let seq = state.begun;
                drop(state);
                let sent = self.send_confirm(seq);
                state = lock(&self.confirming);
                if !sent {
                    self.settle(&mut state, seq, None);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .answered
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn send_confirm(&self, seq: u64) -> bool {
        let mut out = Vec::with_capacity(16);
        ObserveFrame::Confirm { seq }.encode(&mut out);
        let link = lock(&self.link);
        link.as_ref()
            .is_some_and(|mut stream| stream.write_all(&out).is_ok())
    }

    /// Records the answer to confirmation `seq`, if it is the one in flight.
    fn settle(&self, state: &mut Confirming, seq: u64, answer: Option<(u64, i32)>) {
        if state.busy && state.begun == seq {
            state.busy = false;
            state.answered = seq;
            state.answer = answer;
            self.answered.notify_all();
        }
    }

    /// Fails the confirmation in flight, if any (the link is gone).
    fn fail_in_flight(&self) {
        let mut state = lock(&self.confirming);
        let seq = state.begun;
        self.settle(&mut state, seq, None);
    }
}

/// Starts the observer thread of `shared`'s cache.
pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("load-observer".into())
        .spawn(move || follow(&shared))
}

/// Follows the primary's commit stream until the balancer stops.
fn follow(shared: &Shared) {
    let observer = &shared.observer;
    let mut last_why = String::new();
    while !observer.stopped() {
        let why = match stream_once(shared) {
            Ok(()) => "stopping".to_string(),
            Err(why) => why,
        };
        lock(&observer.cache).lose();
        *lock(&observer.link) = None;
        observer.following.store(0, Ordering::Relaxed);
        observer.fail_in_flight();
        if observer.stopped() {
            break;
        }
        // A lasting condition (no primary) is said once, not every pause.
        if why != last_why {
            log::info!("balancer: cache stream: {why}; the cache is empty until it starts again");
            last_why = why;
        }
        thread::sleep(RETRY_PAUSE);
    }
}

/// One stream: find the primary, subscribe, apply until it ends.
fn stream_once(shared: &Shared) -> Result<(), String> {
    let observer = &shared.observer;
    let index = shared
        .upstream
        .find_primary(CONNECT_WAIT)
        .ok_or("no primary known")?;
    let address = &shared.upstream.servers()[index];
    let mut stream = connect(address)?;
    *lock(&observer.link) = Some(stream.try_clone().map_err(|e| e.to_string())?);
    if observer.stopped() {
        return Ok(());
    }
    let mut scratch = Vec::new();
    match read_observe(&mut stream, &mut scratch) {
        Ok(ObserveFrame::Start { applied, epoch, .. }) => {
            lock(&observer.cache).start(applied);
            observer.starts.fetch_add(1, Ordering::Relaxed);
            observer
                .following
                .store(index as u64 + 1, Ordering::Relaxed);
            log::info!(
                "balancer: cache follows the commits of {address} (epoch {}) after {applied}",
                crate::logging::epoch(epoch)
            );
        }
        Ok(ObserveFrame::Refused { primary }) => {
            return Err(format!(
                "{address} is not a serving primary (it names {primary})"
            ))
        }
        Ok(other) => return Err(format!("{address} sent {} before start", other.name())),
        Err(e) => return Err(format!("{address}: {e}")),
    }
    apply_stream(shared, &mut stream, &mut scratch, address)
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let addr = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_WAIT).map_err(|e| format!("{address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(LINK_SILENCE));
    let _ = stream.set_write_timeout(Some(CONNECT_WAIT));
    let mut hello = OBSERVE_TAG.to_vec();
    ObserveFrame::Subscribe { applied: None }.encode(&mut hello);
    stream
        .write_all(&hello)
        .map_err(|e| format!("{address}: {e}"))?;
    Ok(stream)
}

/// Applies frames until the link ends, fails or says something wrong.
fn apply_stream(
    shared: &Shared,
    stream: &mut TcpStream,
    scratch: &mut Vec<u8>,
    address: &str,
) -> Result<(), String> {
    let observer = &shared.observer;
    loop {
        let frame = match read_observe(stream, scratch) {
            Ok(f) => f,
            Err(_) if observer.stopped() => return Ok(()),
            Err(e) => return Err(format!("{address}: {e}")),
        };
        match frame {
            ObserveFrame::Entries { first, entries } => {
                lock(&observer.cache).apply(first, &entries).map_err(|g| {
                    format!(
                        "{address} sent entries from {} where {} was expected",
                        g.got, g.expected
                    )
                })?;
            }
            ObserveFrame::Start { applied, .. } => {
                log::info!("balancer: {address} restarts the cache stream after {applied}");
                lock(&observer.cache).start(applied);
                observer.starts.fetch_add(1, Ordering::Relaxed);
            }
            ObserveFrame::Confirmed { seq, commit } => {
                let (generation, applied) = lock(&observer.cache).position();
                let answer = (applied >= commit).then_some((generation, commit));
                let mut state = lock(&observer.confirming);
                observer.settle(&mut state, seq, answer);
                if answer.is_none() {
                    return Err(format!(
                        "{address} confirmed {commit} before sending it (applied {applied})"
                    ));
                }
            }
            ObserveFrame::Heartbeat { .. } => {}
            ObserveFrame::Refused { primary } => {
                return Err(format!(
                    "{address} is no longer a serving primary (it names {primary})"
                ))
            }
            other => return Err(format!("{address} sent a {} frame", other.name())),
        }
    }
}

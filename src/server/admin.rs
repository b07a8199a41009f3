//! The primary's admin thread and the queue that feeds it.
//!
//! Client sessions submit writes to the [`AdminQueue`] (a Mutex + Condvar
//! queue, as in the original) and wait on their own [`Completion`]. The
//! admin takes every waiting write at once, appends them, replicates them to
//! every backup, commits, applies, and releases all their sessions. The
//! original did one write at a time; taking the whole queue is the same
//! protocol with fewer round trips.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::peer::PeerLinks;
use super::{ServerError, Shared};
use crate::wire::{Entry, ReplicationRequest};

/// The most writes the admin commits as one batch; bounds the acks a
/// backup may have in flight.
const MAX_BATCH: usize = 1024;

/// How long the admin waits for more writes before telling backups the
/// latest commit point. v1 frames carry the commit point from before their
/// batch, so without this a backup would lag by a batch until the next write.
const COMMIT_NOTICE_DELAY: Duration = Duration::from_millis(50);

/// What [`AdminQueue::take_batch`] found.
enum Take {
    Batch,
    Idle,
    Closed,
}

/// Why a write was not committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The server is stopping.
    Stopping,
    /// The log has no index left for more entries.
    LogFull,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Stopping => write!(f, "the server is stopping"),
            WriteError::LogFull => write!(f, "the log is full"),
        }
    }
}

/// The one-shot answer a session waits for (the original's promise).
/// Each session owns one and reuses it for every write.
pub(crate) struct Completion {
    result: Mutex<Option<Result<(), WriteError>>>,
    ready: Condvar,
}

impl Completion {
    pub(crate) fn new() -> Self {
        Completion {
            result: Mutex::new(None),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<(), WriteError>>> {
        self.result.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, result: Result<(), WriteError>) {
        *self.lock() = Some(result);
        self.ready.notify_one();
    }

    fn wait(&self) -> Result<(), WriteError> {
        let mut slot = self.lock();
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            slot = self
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

struct WriteRequest {
    entry: Entry,
    done: Arc<Completion>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<WriteRequest>,
    closed: bool,
}

/// Writes waiting for the admin thread.
#[derive(Default)]
pub(crate) struct AdminQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl AdminQueue {
    pub(crate) fn new() -> Self {
        AdminQueue::default()
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `op` to the admin and blocks until it is committed or failed.
    pub(crate) fn submit_and_wait(
        &self,
        entry: Entry,
        done: &Arc<Completion>,
    ) -> Result<(), WriteError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(WriteError::Stopping);
            }
            state.items.push_back(WriteRequest {
                entry,
                done: Arc::clone(done),
            });
        }
        self.ready.notify_one();
        done.wait()
    }

    /// Moves up to [`MAX_BATCH`] waiting writes into `batch`, waiting up to
    /// `idle` (forever if `None`) for one to arrive.
    fn take_batch(&self, batch: &mut Vec<WriteRequest>, idle: Option<Duration>) -> Take {
        let mut state = self.lock();
        while state.items.is_empty() {
            if state.closed {
                return Take::Closed;
            }
            let Some(idle) = idle else {
                state = self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let (next, timeout) = self
                .ready
                .wait_timeout(state, idle)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() && state.items.is_empty() && !state.closed {
                return Take::Idle;
            }
        }
        let n = state.items.len().min(MAX_BATCH);
        batch.extend(state.items.drain(..n));
        Take::Batch
    }

    /// Refuses new writes and wakes the admin so it can finish.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

pub(super) fn spawn(shared: Arc<Shared>) -> Result<JoinHandle<()>, ServerError> {
    thread::Builder::new()
        .name(format!("admin-{}", shared.factory_id))
        .spawn(move || run(&shared))
        .map_err(ServerError::Io)
}

fn run(shared: &Shared) {
    let mut links = PeerLinks::new(shared);
    let mut batch = Vec::new();
    let mut frames = Vec::new();
    let mut notice_due = false;
    loop {
        let idle = notice_due.then_some(COMMIT_NOTICE_DELAY);
        match shared.admin_queue.take_batch(&mut batch, idle) {
            Take::Closed => return,
            Take::Idle => {
                send_commit_notice(shared, &mut links);
                notice_due = false;
            }
            Take::Batch => {
                let result = commit_batch(shared, &mut links, &batch, &mut frames);
                for request in batch.drain(..) {
                    request.done.finish(result);
                }
                notice_due = result.is_ok();
            }
        }
    }
}

/// Re-sends the last entry with the current commit point. Storing an entry
/// again is harmless for a v1 backup (original or ours), and it lets the
/// backup apply everything committed.
fn send_commit_notice(shared: &Shared, links: &mut PeerLinks<'_>) {
    let notice = {
        let replica = shared.replica();
        if !replica.is_primary() || replica.committed_index() != replica.last_index() {
            return;
        }
        replica.replication_request(replica.last_index())
    };
    if let Some(frame) = notice {
        links.replicate(&[frame]);
    }
}

/// Appends, replicates and commits one batch (PROTOCOL.md §4, primary).
fn commit_batch(
    shared: &Shared,
    links: &mut PeerLinks<'_>,
    batch: &[WriteRequest],
    frames: &mut Vec<ReplicationRequest>,
) -> Result<(), WriteError> {
    if shared.stopping() {
        return Err(WriteError::Stopping);
    }
    ensure_primary(shared, links);
    let last = append_batch(shared, batch, frames)?;
    links.replicate(frames);
    let mut replica = shared.replica();
    let committed = replica.commit_through(last);
    shared.records.apply(committed);
    Ok(())
}

/// Takes the primary role on the first write, connecting to every peer; a
/// peer added since is connected now.
fn ensure_primary(shared: &Shared, links: &mut PeerLinks<'_>) {
    let became = shared.replica().become_primary();
    if became {
        log::info!("factory {} became primary", shared.factory_id);
        links.reset();
    }
    links.connect_new(&shared.peer_list());
}

fn append_batch(
    shared: &Shared,
    batch: &[WriteRequest],
    frames: &mut Vec<ReplicationRequest>,
) -> Result<i32, WriteError> {
    let mut replica = shared.replica();
    if i64::from(replica.last_index()) + batch.len() as i64 >= i64::from(i32::MAX) {
        return Err(WriteError::LogFull);
    }
    frames.clear();
    for request in batch {
        let index = replica
            .append(request.entry)
            .map_err(|_| WriteError::LogFull)?;
        frames.extend(replica.replication_request(index));
    }
    Ok(replica.last_index())
}

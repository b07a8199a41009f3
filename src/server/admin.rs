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

use super::peer::PeerLinks;
use super::{ServerError, Shared};
use crate::wire::{MapOp, ReplicationRequest};

/// The most writes the admin commits as one batch; bounds the acks a
/// backup may have in flight.
const MAX_BATCH: usize = 1024;

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
    op: MapOp,
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
        op: MapOp,
        done: &Arc<Completion>,
    ) -> Result<(), WriteError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(WriteError::Stopping);
            }
            state.items.push_back(WriteRequest {
                op,
                done: Arc::clone(done),
            });
        }
        self.ready.notify_one();
        done.wait()
    }

    /// Moves up to [`MAX_BATCH`] waiting writes into `batch`, blocking until
    /// there is one. Returns false once the queue is closed and empty.
    fn take_batch(&self, batch: &mut Vec<WriteRequest>) -> bool {
        let mut state = self.lock();
        while state.items.is_empty() {
            if state.closed {
                return false;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let n = state.items.len().min(MAX_BATCH);
        batch.extend(state.items.drain(..n));
        true
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
    while shared.admin_queue.take_batch(&mut batch) {
        let result = commit_batch(shared, &mut links, &batch, &mut frames);
        for request in batch.drain(..) {
            request.done.finish(result);
        }
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
            .append(request.op)
            .map_err(|_| WriteError::LogFull)?;
        frames.extend(replica.replication_request(index));
    }
    Ok(replica.last_index())
}

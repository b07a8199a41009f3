//! The expert pool (issue 16.4): `--experts N` threads that do custom
//! orders (docs/protocol.md, "Custom orders").
//!
//! A client session hands a custom order to [`ExpertPool::submit`], which
//! queues it on a bounded Mutex/Condvar queue, or answers at once that the
//! queue is full (the client then reads a "busy" reply, never waits for a
//! place). An expert takes the order, does its work (a sleep of
//! `--expert-work-us`, cut short when the server stops), then places it as
//! a write through the session's own write path, so a backup's expert
//! forwards it to the primary like any write. The session waits on the
//! order's [`Job`] for the outcome.
//!
//! [`ExpertPool::close`] (from `Server::stop`) fails every queued order and
//! wakes every expert; the server then joins them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::forward::Forwarder;
use crate::server::primary::admin::Completion;
use crate::server::primary::WriteError;
use crate::server::{ServerError, Shared};

/// Default of [`ExpertConfig::work`]: a millisecond per custom order.
pub const DEFAULT_EXPERT_WORK: Duration = Duration::from_micros(1000);

/// Default of [`ExpertConfig::queue`].
pub const DEFAULT_EXPERT_QUEUE: usize = 64;

/// The expert pool a server runs; `threads == 0`: none, custom orders are
/// answered "no experts".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpertConfig {
    /// Expert threads (`--experts`).
    pub threads: usize,
    /// Custom orders that may wait for an expert (`--expert-queue`); one
    /// more is answered busy.
    pub queue: usize,
    /// The work each custom order costs its expert (`--expert-work-us`).
    pub work: Duration,
}

impl Default for ExpertConfig {
    fn default() -> Self {
        ExpertConfig {
            threads: 0,
            queue: DEFAULT_EXPERT_QUEUE,
            work: DEFAULT_EXPERT_WORK,
        }
    }
}

/// Counters of the pool, readable by tests and operators at any time
/// (see `Server::experts`).
#[derive(Debug, Default)]
pub struct ExpertGauge {
    live: AtomicUsize,
    busy: AtomicUsize,
    max_busy: AtomicUsize,
    queued: AtomicUsize,
    done: AtomicUsize,
    busy_answers: AtomicUsize,
}

impl ExpertGauge {
    /// Expert threads running now (0 once the server has stopped).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Experts working on an order now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// The most experts ever seen working at once.
    pub fn max_busy(&self) -> usize {
        self.max_busy.load(Ordering::SeqCst)
    }

    /// Orders waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Orders an expert finished (written or not).
    pub fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Orders answered busy because the queue was full.
    pub fn busy_answers(&self) -> usize {
        self.busy_answers.load(Ordering::SeqCst)
    }

    fn start_work(&self) {
        let now = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_busy.fetch_max(now, Ordering::SeqCst);
    }

    fn end_work(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Why a custom order was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server runs no experts.
    NoExperts,
    /// The queue is full.
    Busy,
    /// The server is stopping.
    Stopping,
}

/// One custom order and its outcome, which its session waits for.
pub(crate) struct Job {
    customer_id: i32,
    order_number: i32,
    result: Mutex<Option<Result<(), WriteError>>>,
    finished: Condvar,
}

impl Job {
    fn finish(&self, result: Result<(), WriteError>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.finished.notify_all();
    }

    /// Waits until an expert (or the pool's closing) has finished it.
    pub(crate) fn wait(&self) -> Result<(), WriteError> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = result.take() {
                return r;
            }
            result = self
                .finished
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

struct Queue {
    jobs: VecDeque<Arc<Job>>,
    closed: bool,
}

/// The queue between sessions and experts.
pub(crate) struct ExpertPool {
    config: ExpertConfig,
    queue: Mutex<Queue>,
    /// Signalled when a job is queued and when the pool closes.
    queued: Condvar,
    /// Signalled when the pool closes: an expert doing its work waits on
    /// it, so that closing cuts the work short. (Not `queued`, whose one
    /// wake-up per order must reach an idle expert.)
    closing: Condvar,
    gauge: Arc<ExpertGauge>,
}

impl ExpertPool {
    pub(crate) fn new(config: ExpertConfig) -> Self {
        ExpertPool {
            config,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            queued: Condvar::new(),
            closing: Condvar::new(),
            gauge: Arc::new(ExpertGauge::default()),
        }
    }

    pub(crate) fn gauge(&self) -> Arc<ExpertGauge> {
        Arc::clone(&self.gauge)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent at every release.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a custom order for an expert, or says why not.
    pub(crate) fn submit(&self, customer_id: i32, order_number: i32) -> Result<Arc<Job>, Refusal> {
        if self.config.threads == 0 {
            return Err(Refusal::NoExperts);
        }
        let mut queue = self.lock();
        if queue.closed {
            return Err(Refusal::Stopping);
        }
        if queue.jobs.len() >= self.config.queue {
            self.gauge.busy_answers.fetch_add(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let job = Arc::new(Job {
            customer_id,
            order_number,
            result: Mutex::new(None),
            finished: Condvar::new(),
        });
        queue.jobs.push_back(Arc::clone(&job));
        self.gauge.queued.store(queue.jobs.len(), Ordering::SeqCst);
        drop(queue);
        self.queued.notify_one();
        Ok(job)
    }

    /// Fails every queued order and wakes every expert, which ends once it
    /// has finished the order in hand (its work cut short).
    pub(crate) fn close(&self) {
        let waiting: Vec<Arc<Job>> = {
            let mut queue = self.lock();
            queue.closed = true;
            self.gauge.queued.store(0, Ordering::SeqCst);
            queue.jobs.drain(..).collect()
        };
        self.queued.notify_all();
        self.closing.notify_all();
        for job in waiting {
            job.finish(Err(WriteError::Stopping));
        }
    }

    /// The next order, or `None` once the pool is closed.
    fn take(&self) -> Option<Arc<Job>> {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return None;
            }
            if let Some(job) = queue.jobs.pop_front() {
                self.gauge.queued.store(queue.jobs.len(), Ordering::SeqCst);
                return Some(job);
            }
            queue = self
                .queued
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The custom work: waits out its cost, or less if the pool closes.
    /// Returns false when it was cut short.
    fn work(&self) -> bool {
        let deadline = Instant::now() + self.config.work;
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            queue = self
                .closing
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Starts the pool's expert threads.
pub(crate) fn spawn(shared: &Arc<Shared>) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let mut threads = Vec::new();
    for n in 0..shared.experts.config.threads {
        let shared_for_thread = Arc::clone(shared);
        shared.experts.gauge.live.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name(format!("expert-{n}"))
            .spawn(move || run(&shared_for_thread));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.experts.gauge.live.fetch_sub(1, Ordering::SeqCst);
                shared.experts.close();
                for t in threads {
                    let _ = t.join();
                }
                return Err(ServerError::Io(e));
            }
        }
    }
    Ok(threads)
}

/// Counts the thread out however it ends.
struct LiveGuard<'a>(&'a ExpertGauge);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run(shared: &Shared) {
    let pool = &shared.experts;
    let _live = LiveGuard(&pool.gauge);
    let done = Arc::new(Completion::new());
    let mut forwarder = Forwarder::default();
    while let Some(job) = pool.take() {
        pool.gauge.start_work();
        let result = if pool.work() {
            super::write::place(
                shared,
                job.customer_id,
                job.order_number,
                &done,
                &mut forwarder,
            )
        } else {
            Err(WriteError::Stopping)
        };
        pool.gauge.end_work();
        job.finish(result);
    }
}

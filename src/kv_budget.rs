//! The bounds of one protocol v2 connection's pipeline (docs/protocol.md
//! §9.4), the same on a server (`server::session::kv`) and on the
//! balancer (`balancer::kv`): how many requests may wait, and the
//! [`Budget`] of the bytes they hold.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Most requests of one connection read but not yet answered.
pub(crate) const MAX_IN_FLIGHT: usize = 4096;

/// Most bytes one connection may have queued (one larger request or
/// answer is let through alone).
pub(crate) const MAX_QUEUED_BYTES: usize = 16 << 20;

/// Bytes a connection has queued, bounded by [`MAX_QUEUED_BYTES`]: its
/// reading thread takes before it queues a request or an answer, its
/// answering thread gives back once that is sent.
#[derive(Default)]
pub(crate) struct Budget {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    used: usize,
    closed: bool,
    /// The reader sleeps on `freed`: only then is it woken (a wake-up is
    /// a system call even when nobody sleeps, and the writer gives back
    /// after every answer).
    waiting: bool,
}

impl State {
    fn take(&mut self, n: usize) -> bool {
        let fits = self.used == 0 || self.used + n <= MAX_QUEUED_BYTES;
        if fits {
            self.used += n;
        }
        fits
    }
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `n` more bytes fit (always, when nothing is queued);
    /// false once the answering thread has stopped.
    pub(crate) fn take(&self, n: usize) -> bool {
        let mut state = self.lock();
        while !state.closed && !state.take(n) {
            state.waiting = true;
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting = false;
        }
        !state.closed
    }

    /// Takes `n` bytes if they fit now (false once the answering thread stopped).
    pub(crate) fn try_take(&self, n: usize) -> bool {
        let mut state = self.lock();
        !state.closed && state.take(n)
    }

    pub(crate) fn give_back(&self, n: usize) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(n);
        let waiting = state.waiting;
        drop(state);
        if waiting {
            self.freed.notify_one();
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn the_queue_budget_holds_the_reader_back_until_answers_are_sent() {
        let budget = Arc::new(Budget::default());
        assert!(budget.take(MAX_QUEUED_BYTES - 10));
        assert!(budget.take(10), "exactly full");
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = Arc::clone(&budget);
            thread::spawn(move || tx.send(budget.take(1)).unwrap())
        };
        // Still full: the reader waits (a bounded look, not a proof).
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        budget.give_back(10);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
        // One answer larger than the budget passes alone.
        let alone = Budget::default();
        assert!(alone.take(MAX_QUEUED_BYTES * 3));
        alone.close();
        assert!(!alone.take(1), "a closed budget stops the reader");
    }
}

//! The bytes of keys and values a v2 connection's answers hold while they
//! wait to be sent, bounded by [`MAX_QUEUED_BYTES`]: the reader
//! ([`super::burst`]) takes before it queues an answer, the writer
//! ([`super::answers`]) gives back once the answer is sent.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::MAX_QUEUED_BYTES;

/// Bytes of keys and values queued by the connection, bounded by
/// [`MAX_QUEUED_BYTES`]: the reader takes before it queues an answer, the
/// writer gives back once the answer is sent.
#[derive(Default)]
pub(super) struct Budget {
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
    /// false once the writer has stopped.
    pub(super) fn take(&self, n: usize) -> bool {
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

    /// Takes `n` bytes if they fit now (false once the writer stopped).
    pub(super) fn try_take(&self, n: usize) -> bool {
        let mut state = self.lock();
        !state.closed && state.take(n)
    }

    pub(super) fn give_back(&self, n: usize) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(n);
        let waiting = state.waiting;
        drop(state);
        if waiting {
            self.freed.notify_one();
        }
    }

    pub(super) fn close(&self) {
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

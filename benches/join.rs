//! Shared by the benchmark's own load tools (`echo_floor`, `resp_load`):
//! collecting the results of their per-customer threads.

use std::io;
use std::thread::ScopedJoinHandle;

/// Joins every thread in order; a thread that panicked counts as an error.
pub fn join_all<T>(handles: Vec<ScopedJoinHandle<'_, io::Result<T>>>) -> Vec<io::Result<T>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("thread panicked")))
        })
        .collect()
}

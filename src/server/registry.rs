//! Every open connection of a server, so that stopping can close them all.
//!
//! Threads blocked in a socket read only wake when the socket is shut down;
//! the registry keeps each stream's descriptor number for that (one
//! descriptor per connection: a clone of each stream, as before, doubled
//! what 10,000 clients need, past a hard limit of 20,000). Closing is final:
//! a connection that registers after [`Registry::close_all`] is refused,
//! which is how a connection racing with `stop` still ends promptly.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Stack size of a connection thread: the roles keep their buffers small
/// and on the stack, and thousands of idle clients must stay cheap.
pub(crate) const CONNECTION_STACK: usize = 256 * 1024;

#[derive(Default)]
struct Inner {
    closed: bool,
    next_id: u64,
    streams: HashMap<u64, RawFd>,
}

/// The set of open streams.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    /// `inner.closed`, readable without the lock that every connection
    /// takes as it opens and closes: the accept loop and the replicators
    /// ask [`Registry::is_closed`] all the time. `register` still decides
    /// under the lock.
    closed: AtomicBool,
}

/// Membership of one stream; dropping it removes the stream.
pub(crate) struct Registered<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Registry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `stream`; `None` when the server is stopping, in which case
    /// the caller must drop it. The registry holds only the descriptor
    /// number, so the [`Registered`] should not outlive the stream: a
    /// number closed and reused while still registered would be shut down
    /// by [`Registry::close_all`]. The connection threads
    /// (`accept::serve`) hand their stream to a role by value and drop the
    /// membership as that role returns, a window of a few instructions; a
    /// stop landing in it could shut down a socket opened meanwhile under
    /// the same number (in the server, one that stopping shuts down anyway).
    pub(crate) fn register(&self, stream: &TcpStream) -> Option<Registered<'_>> {
        let fd = stream.as_raw_fd();
        let mut inner = self.lock();
        if inner.closed {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.streams.insert(id, fd);
        Some(Registered { registry: self, id })
    }

    /// True once [`Registry::close_all`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Shuts down every registered stream and refuses new ones.
    pub(crate) fn close_all(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        self.closed.store(true, Ordering::Release);
        for &fd in inner.streams.values() {
            crate::ffi::shutdown_both(fd);
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.lock().streams.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn closing_shuts_down_registered_streams_and_refuses_new_ones() {
        let registry = Registry::new();
        let (_client, mut served) = pair();
        let held = registry.register(&served).expect("open");
        assert!(!registry.is_closed());
        registry.close_all();
        assert!(registry.is_closed());
        let mut byte = [0u8; 1];
        assert_eq!(served.read(&mut byte).unwrap(), 0, "shut down");
        let (_c2, late) = pair();
        assert!(registry.register(&late).is_none());
        drop(held);
        assert!(registry.lock().streams.is_empty());
    }
}

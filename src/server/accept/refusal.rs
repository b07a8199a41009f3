//! Turning a connection away: beyond `--max-connections`, or when its
//! thread cannot start. The client reads end of file, never a reset, and
//! the line logged about it comes at most once a second. Called by the
//! accept loop, which must not wait for the client.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Refusals, threads that cannot start and failed accepts are each logged
/// at most this often (a flood would otherwise turn into a flood of lines).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One kind of event logged at most once per [`LOG_INTERVAL`], each line
/// with the count of those not logged since the last one.
#[derive(Default)]
pub(super) struct Throttle {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// `Some(n)` when this event is to be logged now, `n` others having
    /// passed unlogged since the last line; `None`: counted for the next.
    pub(super) fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .last_logged
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The tail of a throttled line: how many more were `what` unlogged.
pub(super) fn others(more: u64, what: &str) -> String {
    if more == 0 {
        return String::new();
    }
    format!(" ({more} more {what} since the last report)")
}

/// Closes a connection beyond the limit at once, and logs it (or counts it
/// for the next line).
pub(super) fn refuse(refusals: &mut Throttle, stream: TcpStream, limit: usize) {
    let Some(more) = refusals.due() else {
        turn_away(stream);
        return;
    };
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "a client".to_string(), |a| a.to_string());
    turn_away(stream);
    log::warn!(
        "{peer}: {limit} connections already open (--max-connections); closed at once{}",
        others(more, "refused")
    );
}

/// Most bytes read and discarded from a refused connection before closing.
const REFUSED_DRAIN: usize = 4096;

/// Closes a refused connection so that its client reads end of file.
///
/// Closing a socket whose input was not all read makes the kernel send a
/// reset instead of a FIN, and a client that already sent its tag (as every
/// client in a burst has, before it is accepted) would see "connection
/// reset by peer". So: FIN first, then discard what already arrived, then
/// close. Anything the client sends later is answered with a reset too, but
/// after the FIN, so its next read still sees end of file. Non-blocking, a
/// few system calls: the accept loop does not wait for the client.
fn turn_away(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = [0u8; 512];
    let mut drained = 0;
    while drained < REFUSED_DRAIN {
        match (&stream).read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => break, // end of file, nothing more yet, or an error
        }
    }
}

/// A stream on its way to its connection thread. If the thread cannot be
/// started, the closure that owns it is dropped, and with it the stream:
/// turned away (end of file) rather than reset.
pub(super) struct Handoff(pub(super) Option<TcpStream>);

impl Handoff {
    pub(super) fn take(&mut self) -> Option<TcpStream> {
        self.0.take()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            turn_away(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};
    use std::net::TcpListener;

    #[test]
    fn a_throttle_logs_once_an_interval_with_the_count_of_the_others() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.due_at(start), Some(0));
        for ms in [1, 500, 999] {
            assert_eq!(t.due_at(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.due_at(start + LOG_INTERVAL), Some(3));
        assert_eq!(t.due_at(start + LOG_INTERVAL), None);
        assert_eq!(t.due_at(start + 5 * LOG_INTERVAL), Some(1));
        assert_eq!(others(0, "refused"), "");
        assert_eq!(
            others(3, "refused"),
            " (3 more refused since the last report)"
        );
    }

    /// A connected pair whose server side already holds unread input.
    fn pair_with_unread_input() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (served, _) = listener.accept().unwrap();
        client.write_all(b"CLIENT\0\0 and a request").unwrap();
        let mut first = [0u8; 1];
        // Blocks until the bytes are there, without taking them.
        assert_eq!(served.peek(&mut first).unwrap(), 1);
        (client, served)
    }

    fn read_once(client: &mut TcpStream) -> io::Result<usize> {
        client.read(&mut [0u8; 16])
    }

    #[test]
    fn a_turned_away_client_reads_end_of_file_not_a_reset() {
        let (mut client, served) = pair_with_unread_input();
        turn_away(served);
        assert_eq!(read_once(&mut client).unwrap(), 0);
        // Even when it writes again, after the close.
        let _ = client.write_all(b"more");
        assert_eq!(read_once(&mut client).unwrap(), 0);
    }

    #[test]
    fn a_stream_whose_thread_never_started_is_turned_away() {
        let (mut client, served) = pair_with_unread_input();
        drop(Handoff(Some(served)));
        assert_eq!(read_once(&mut client).unwrap(), 0);
    }
}

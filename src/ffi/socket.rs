//! Shutting a socket down by its descriptor number, for the server's
//! connection registry (`server::registry`), which keeps the number rather
//! than a duplicate descriptor: a duplicate per connection doubled the
//! descriptors a server needs, and with a hard limit of 20,000 open files it
//! could hold no more than about 9,990 clients. The libc call lives here,
//! the one module where `unsafe` is allowed.

/// `shutdown(fd, SHUT_RDWR)`; an error (the number is not an open socket)
/// is ignored, as a shutdown of a stream already closed would be.
#[cfg(unix)]
pub(crate) fn shutdown_both(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown(2) takes a plain integer and reads or writes no
    // memory of ours; on a number that is not an open socket it fails with
    // EBADF or ENOTSOCK. The registry calls it only for descriptors whose
    // owners are registered (they deregister when their thread ends).
    let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_blocked_reader_sees_the_end_of_its_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        shutdown_both(served.as_raw_fd());
        let mut byte = [0u8; 1];
        assert_eq!(served.read(&mut byte).unwrap(), 0);
        shutdown_both(-1); // not a descriptor: ignored
    }
}

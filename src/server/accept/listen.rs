//! The listening socket of [`Server::start`](crate::server::Server::start)
//! (and so of the C ABI's `factory_server_start`): std's
//! `TcpListener::bind` queues at most 128 connections not yet accepted, far
//! below a burst of clients, so it is built with socket2 and the backlog of
//! [`Limits::backlog`](crate::server::Limits), by default the system's
//! `net.core.somaxconn`.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Where Linux publishes the cap on every listen backlog.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The backlog used when the system's cap cannot be read: Linux's default
/// `somaxconn` since 5.4.
const FALLBACK_BACKLOG: u32 = 4096;

/// A socket listening on `addr` with a backlog of `asked` connections, or
/// of the system's `somaxconn` when `None`.
pub(crate) fn listen(addr: SocketAddr, asked: Option<u32>) -> io::Result<TcpListener> {
    // A backlog of thousands is worth little if the descriptors run out
    // first: take the whole open-file limit the system grants.
    match crate::ffi::raise_open_files_limit() {
        Some(open_files) => log::debug!("open-file limit {open_files}"),
        None => log::debug!("cannot read the open-file limit"),
    }
    let somaxconn = system_somaxconn();
    let backlog = backlog_for(asked, somaxconn);
    if let (Some(asked), Some(cap)) = (asked, somaxconn) {
        if asked > cap {
            log::warn!(
                "listen backlog {asked} is above net.core.somaxconn ({cap}), which caps it at {cap}"
            );
        }
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's TcpListener::bind does: a restarted server gets its port
    // back while connections of the last run linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    log::debug!("listening on {addr} with a backlog of {backlog}");
    Ok(socket.into())
}

fn system_somaxconn() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The backlog to ask for: the one asked, else the system's cap, else a
/// fallback; never 0 (which some kernels read as "no queue at all").
fn backlog_for(asked: Option<u32>, somaxconn: Option<u32>) -> u32 {
    asked.or(somaxconn).unwrap_or(FALLBACK_BACKLOG).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn the_backlog_is_the_one_asked_else_the_systems() {
        assert_eq!(backlog_for(Some(10), Some(4096)), 10);
        assert_eq!(backlog_for(Some(10_000), Some(4096)), 10_000);
        assert_eq!(backlog_for(None, Some(65_535)), 65_535);
        assert_eq!(backlog_for(None, None), FALLBACK_BACKLOG);
        assert_eq!(backlog_for(Some(0), Some(4096)), 1);
    }

    #[test]
    fn listen_takes_port_zero_and_accepts() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), Some(16)).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let _client = TcpStream::connect(addr).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert!(peer.ip().is_loopback());
    }

    /// Connects `n` clients to a listener that never accepts; true if all
    /// got through the handshake (a full accept queue drops the SYN, and
    /// with nobody accepting it stays full, so the connect times out).
    fn queued(listener: &TcpListener, n: usize) -> Result<Vec<TcpStream>, usize> {
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(s) => held.push(s),
                Err(_) => return Err(i),
            }
        }
        Ok(held)
    }

    #[test]
    fn the_default_backlog_queues_more_than_std_would() {
        // std's TcpListener::bind queues 128 (129 with Linux's off by one).
        let n = backlog_for(None, system_somaxconn()).min(300) as usize;
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), None).unwrap();
        assert_eq!(queued(&listener, n).err(), None, "of {n}");
    }

    #[test]
    fn a_small_backlog_queues_about_that_many() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), Some(4)).unwrap();
        let held = queued(&listener, 4).expect("four queued");
        // Linux queues one more than the backlog, then drops.
        let (addr, wait) = (listener.local_addr().unwrap(), Duration::from_millis(300));
        let extra: Vec<_> = (0..2)
            .map_while(|_| TcpStream::connect_timeout(&addr, wait).ok())
            .collect();
        assert!(extra.len() < 2, "six queued with a backlog of 4");
        drop((held, extra));
    }

    #[test]
    fn a_taken_port_is_address_in_use() {
        let first = listen(SocketAddr::from(([127, 0, 0, 1], 0)), None).unwrap();
        let err = listen(first.local_addr().unwrap(), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    }
}

//! Asking servers for their view of the cluster (`wire::status`): one
//! short connection per server, all servers at once, each answer kept
//! apart so that one server that is down or runs the original C++ build
//! never hides the others. Used by `client --status` and by [`Cluster`]
//! to find the primary.
//!
//! [`Cluster`]: super::Cluster

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::Duration;

use super::connect;
use crate::wire::status::{check_status_length, StatusReport, MAX_STATUS_LEN, STATUS_TAG};

/// What one server answered to a status request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    /// Its report.
    Report(StatusReport),
    /// It closed the connection without a byte: an original server, which
    /// knows no status request (or a server stopping at that moment).
    NoStatus,
    /// It could not be reached (the reason).
    Unreachable(String),
    /// It answered something that is not a report (the reason).
    Invalid(String),
}

impl ServerStatus {
    /// The report, if the server sent one.
    pub fn report(&self) -> Option<&StatusReport> {
        match self {
            ServerStatus::Report(r) => Some(r),
            _ => None,
        }
    }

    /// The word for the row's state: "ok", "original", "unreachable",
    /// "invalid".
    pub fn state(&self) -> &'static str {
        match self {
            ServerStatus::Report(_) => "ok",
            ServerStatus::NoStatus => "original",
            ServerStatus::Unreachable(_) => "unreachable",
            ServerStatus::Invalid(_) => "invalid",
        }
    }
}

/// Asks the server at `address` (`host:port`) for its status, waiting at
/// most `timeout` for each step (connect, send, every read).
pub fn fetch(address: &str, timeout: Duration) -> ServerStatus {
    let (host, port) = match connect::split_host_port(address) {
        Ok(hp) => hp,
        Err(e) => return ServerStatus::Unreachable(e),
    };
    let addrs = match connect::resolve(&host, port) {
        Ok(a) => a,
        Err(e) => return ServerStatus::Unreachable(format!("cannot resolve: {e}")),
    };
    let mut stream = match connect::connect(&addrs, Some(timeout), Duration::ZERO) {
        Ok(s) => s,
        Err(e) => return ServerStatus::Unreachable(e.to_string()),
    };
    let setup = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.write_all(&STATUS_TAG));
    if let Err(e) = setup {
        return ServerStatus::Unreachable(e.to_string());
    }
    read_report(&mut stream)
}

/// Reads one report: the length (checked before anything is allocated),
/// then the body.
fn read_report(r: &mut impl Read) -> ServerStatus {
    let mut prefix = [0u8; 4];
    match read_some(r, &mut prefix) {
        Ok(0) => return ServerStatus::NoStatus,
        Ok(4) => {}
        Ok(n) => return ServerStatus::Invalid(format!("closed after {n} bytes of a status")),
        Err(e) => return ServerStatus::Invalid(e),
    }
    let len = match check_status_length(prefix) {
        Ok(len) => len,
        Err(e) => return ServerStatus::Invalid(e.to_string()),
    };
    let mut body = [0u8; MAX_STATUS_LEN];
    match read_some(r, &mut body[..len]) {
        Ok(n) if n == len => {}
        Ok(n) => {
            return ServerStatus::Invalid(format!("closed after {n} of {len} bytes of a status"))
        }
        Err(e) => return ServerStatus::Invalid(e),
    }
    match StatusReport::decode(&body[..len]) {
        Ok(report) => ServerStatus::Report(report),
        Err(e) => ServerStatus::Invalid(e.to_string()),
    }
}

/// Fills `buf` until it is full or the peer closes; returns the bytes got.
/// A reset before the first byte counts as a close (an original server
/// that closes at once may reset).
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && got == 0 => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("no status within the timeout".to_string())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(got)
}

/// Asks every server of `addresses` at once; the answers come back in the
/// order of `addresses`. Should a thread not start (thousands of cluster
/// clients connecting together), that server is asked from this thread.
pub fn fetch_all(addresses: &[String], timeout: Duration) -> Vec<ServerStatus> {
    thread::scope(|scope| {
        let handles: Vec<_> = addresses
            .iter()
            .map(|a| {
                let handle = thread::Builder::new()
                    .name("status".into())
                    .stack_size(64 * 1024)
                    .spawn_scoped(scope, move || fetch(a, timeout));
                (a, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(a, h)| match h {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| ServerStatus::Invalid("status thread failed".into())),
                Err(_) => fetch(a, timeout),
            })
            .collect()
    })
}

/// As [`fetch_all`], but returns as soon as one answer satisfies `enough`
/// (a primary holding its lease, for a client looking for one): a server
/// that is paused or cut off then costs nothing. Servers that had not
/// answered by then show as unreachable; their requests end on their own
/// within `timeout`.
pub fn fetch_until(
    addresses: &[String],
    timeout: Duration,
    enough: impl Fn(&ServerStatus) -> bool,
) -> Vec<ServerStatus> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut answers: Vec<Option<ServerStatus>> = vec![None; addresses.len()];
    for (i, address) in addresses.iter().enumerate() {
        let (tx, a) = (tx.clone(), address.clone());
        let spawned = thread::Builder::new()
            .name("status".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send((i, fetch(&a, timeout)));
            });
        if spawned.is_err() {
            answers[i] = Some(fetch(address, timeout));
        }
    }
    drop(tx);
    let mut done = answers.iter().any(|a| a.as_ref().is_some_and(&enough));
    while !done && answers.iter().any(Option::is_none) {
        let Ok((i, status)) = rx.recv() else {
            break;
        };
        done = enough(&status);
        answers[i] = Some(status);
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| ServerStatus::Unreachable("no answer yet".into())))
        .collect()
}

/// True for the report of a primary that holds its lease: the server a
/// client should use.
pub fn is_leased_primary(status: &ServerStatus) -> bool {
    use crate::wire::status::{Lease, Role};
    status
        .report()
        .is_some_and(|r| r.role == Role::Primary && r.lease == Lease::Held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::{Lease, Role};

    fn report() -> StatusReport {
        StatusReport {
            factory_id: 2,
            role: Role::Backup,
            epoch: 1 << 16,
            primary_id: 0,
            lease: Lease::None,
            lease_ms: 0,
            trusted: true,
            in_sync: vec![0, 2],
            last_index: 4,
            commit_index: 4,
            peers: vec![],
            clients: 0,
            uptime_ms: 10,
            balancer: None,
        }
    }

    #[test]
    fn reads_a_report_and_tells_an_original_server() {
        let mut bytes = Vec::new();
        report().encode(&mut bytes);
        assert_eq!(read_report(&mut &bytes[..]), ServerStatus::Report(report()));
        assert_eq!(read_report(&mut &[][..]), ServerStatus::NoStatus);
    }

    #[test]
    fn hostile_answers_are_invalid_not_panics() {
        let mut bytes = Vec::new();
        report().encode(&mut bytes);
        for cut in 1..bytes.len() {
            let got = read_report(&mut &bytes[..cut]);
            assert!(
                matches!(got, ServerStatus::Invalid(_)),
                "cut {cut}: {got:?}"
            );
        }
        // A huge length is refused before anything is read or allocated.
        let huge = [0xff, 0xff, 0xff, 0xff, 1, 1];
        assert!(
            matches!(read_report(&mut &huge[..]), ServerStatus::Invalid(e) if e.contains("length"))
        );
        // An original client reply (a 20-byte RobotInfo) is no status.
        let info = crate::wire::testing::hex(
            "00 00 00 07 00 00 00 2a 00 00 00 01 00 00 00 03 00 00 00 00",
        );
        assert!(matches!(
            read_report(&mut &info[..]),
            ServerStatus::Invalid(_)
        ));
    }
}

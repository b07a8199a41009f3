//! A hostile peer's side of a connection to a `server` process, shared by
//! the hostile-input tests (`tests/hostile.rs`, `tests/hostile_native.rs`):
//! raw sockets with bounded reads, frames built by hand, and the checks
//! each case ends with (the log line naming the peer, a client still
//! served). Included with `#[path]` beside `mod common;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::{self, wait_until, ServerProcess, DEADLINE};
use factory::wire::native::{Body, NativeFrame};
use factory::wire::{Frame, MapOp, ReplicationRequest, RobotOrder};

/// A raw connection to `server`, with a read timeout so no read hangs.
pub fn connect(server: &ServerProcess) -> (TcpStream, String) {
    let s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    let me = s.local_addr().unwrap().to_string();
    (s, me)
}

/// Waits for a log line at `level` that names `peer` and contains `what`.
pub fn logged(server: &ServerProcess, level: &str, peer: &str, what: &str) -> bool {
    wait_until(|| {
        server
            .log_text()
            .lines()
            .any(|l| l.contains(level) && l.contains(peer) && l.contains(what))
    })
}

/// The log lines written before a marker that is logged after everything
/// the server wrote so far: an unknown tag from a new connection, whose
/// warning is awaited. Every line the server logged before the marker's
/// connection was accepted is in the result.
pub fn log_before_marker(server: &ServerProcess) -> String {
    let (mut marker, marker_peer) = connect(server);
    marker.write_all(b"MARKER!!").unwrap();
    assert!(common::closed_by_server(&mut marker));
    assert!(logged(
        server,
        "WARN",
        &marker_peer,
        "unknown handshake tag"
    ));
    let log = server.log_text();
    let end = log.find(&marker_peer).unwrap();
    log[..end].to_string()
}

/// True when a line of `log` at `level` names `peer`.
pub fn names(log: &str, level: &str, peer: &str) -> bool {
    log.lines().any(|l| l.contains(level) && l.contains(peer))
}

/// A well-formed client is served correctly: a write is acknowledged and
/// read back.
pub fn assert_served(server: &ServerProcess, customer: i32, order: i32) {
    let mut c = common::client(server.port);
    let info = c.order(customer, order).expect("write after hostile input");
    assert_eq!((info.customer_id, info.order_number), (customer, order));
    assert_eq!(c.read(customer).expect("read").last_order, order);
    c.close();
}

/// A client request frame.
pub fn request(customer: i32, order: i32, kind: i32) -> Vec<u8> {
    RobotOrder {
        customer_id: customer,
        order_number: order,
        request_type: kind,
    }
    .to_vec()
}

/// A v1 replication frame from primary 9 setting customer 7 to 7.
pub fn v1_frame(committed: i32, index: i32) -> Vec<u8> {
    ReplicationRequest {
        primary_id: 9,
        committed_index: committed,
        last_index: index,
        op: MapOp::set(7, 7),
    }
    .to_vec()
}

/// A native frame, length prefix included.
pub fn native(epoch: u64, body: Body) -> Vec<u8> {
    let mut out = Vec::new();
    NativeFrame::new(epoch, body).encode(&mut out);
    out
}

/// Reads one native frame (length prefix included) from `s`.
pub fn read_native(s: &mut TcpStream) -> NativeFrame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    NativeFrame::decode(&body).unwrap()
}

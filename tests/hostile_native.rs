//! The rows of the README's table "Every bad byte gets an answer" that
//! `tests/hostile.rs` leaves out, each against a real `server` process:
//! native frames with a bad version, an unknown kind, a malformed body or a
//! count over its bound; a frame of the wrong kind (answered by `Reject`
//! code 4); a commit index beyond our log (clamped); a v1 frame cut short
//! by EOF; and the one-line-a-second rule for refused connections. Each
//! case checks the close (or the reply), the log line naming the peer, and
//! then that a well-formed client is still served.

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{lone_server, wait_until, ServerProcess, DEADLINE};
use factory::wire::native::{Body, RejectCode, NATIVE_TAG};
use factory::wire::{Entry, CLIENT_TAG, PFA_TAG};
use raw_peer::{
    assert_served, connect, log_before_marker, logged, names, native, read_native, request,
    v1_frame,
};

/// The epoch the fake primary claims: term 5, primary 9.
const EPOCH: u64 = 5 << 16 | 9;

fn hello() -> Vec<u8> {
    native(
        EPOCH,
        Body::Hello {
            primary_id: 9,
            commit_index: -1,
        },
    )
}

/// A native stream opened as primary 9: the hello sent and the catch-up
/// read.
fn follow_me(server: &ServerProcess) -> (TcpStream, String) {
    let (mut s, me) = connect(server);
    s.write_all(&NATIVE_TAG).unwrap();
    s.write_all(&hello()).unwrap();
    let reply = read_native(&mut s);
    assert!(
        matches!(reply.body, Body::CatchUp { .. }),
        "hello answered with {reply:?}"
    );
    (s, me)
}

/// Sends `bytes` as the first frame after the native tag (or, with
/// `after_hello`, on an open stream) and checks that the server closes with
/// a warning naming us and containing `what`; then a client is served.
fn closed_with_warning(bytes: &[u8], after_hello: bool, what: &str, customer: i32) {
    let server = lone_server(&[]);
    let (mut s, me) = if after_hello {
        follow_me(&server)
    } else {
        let (mut s, me) = connect(&server);
        s.write_all(&NATIVE_TAG).unwrap();
        (s, me)
    };
    s.write_all(bytes).unwrap();
    assert!(common::closed_by_server(&mut s), "{what}: not closed");
    assert!(
        logged(&server, "WARN", &me, what),
        "no warning {what:?} naming {me}:\n{}",
        server.log_text()
    );
    assert_served(&server, customer, 1);
}

#[test]
fn a_native_frame_with_a_bad_version_is_closed_with_a_warning() {
    let mut frame = hello();
    frame[4] = 2;
    closed_with_warning(&frame, false, "frame version 2, expected 1", 1);
}

#[test]
fn a_native_frame_of_an_unknown_kind_is_closed_with_a_warning() {
    let mut frame = hello();
    frame[5] = 42;
    closed_with_warning(&frame, false, "unknown frame kind 42", 2);
}

#[test]
fn a_native_frame_with_a_malformed_body_is_closed_with_a_warning() {
    // A heartbeat (a 4-byte commit index) with three bytes too many, its
    // length prefix counting them.
    let mut frame = native(EPOCH, Body::Heartbeat { commit_index: 0 });
    frame.extend_from_slice(&[1, 2, 3]);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    closed_with_warning(&frame, true, "malformed heartbeat frame", 3);
}

#[test]
fn a_native_count_over_its_bound_is_closed_with_a_warning() {
    // An append claiming 8,193 entries (the bound is 8,192) and carrying
    // none: refused on the count before anything is reserved for them.
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&[1, 3]); // version 1, kind append
    frame.extend_from_slice(&EPOCH.to_be_bytes());
    frame.extend_from_slice(&(-1i32).to_be_bytes()); // prev_index
    frame.extend_from_slice(&0u64.to_be_bytes()); // prev_epoch
    frame.extend_from_slice(&(-1i32).to_be_bytes()); // commit_index
    frame.extend_from_slice(&8193u32.to_be_bytes()); // count
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    closed_with_warning(&frame, true, "8193 entries is over the bound", 4);
}

/// Reads the reply to a frame of the wrong kind: `Reject` with code 4
/// (checked on the wire byte too), then the close.
fn assert_protocol_reject(s: &mut TcpStream) {
    let reply = read_native(s);
    let Body::Reject { code, reason } = &reply.body else {
        panic!("wrong kind answered with {reply:?}");
    };
    assert_eq!(*code, RejectCode::Protocol, "{reason}");
    assert_eq!(*code as u8, 4);
    assert!(common::closed_by_server(s));
}

#[test]
fn a_native_frame_of_the_wrong_kind_is_rejected_with_code_4() {
    let server = lone_server(&[]);
    // A heartbeat where a hello or a probe must come first.
    let (mut s, me) = connect(&server);
    s.write_all(&NATIVE_TAG).unwrap();
    s.write_all(&native(EPOCH, Body::Heartbeat { commit_index: 0 }))
        .unwrap();
    assert_protocol_reject(&mut s);
    assert!(logged(
        &server,
        "",
        &me,
        "expected hello or probe, got heartbeat"
    ));
    // An ack (which only a backup sends) on a stream.
    let (mut s, me) = follow_me(&server);
    s.write_all(&native(
        EPOCH,
        Body::Ack {
            replica_id: 9,
            last_index: 0,
        },
    ))
    .unwrap();
    assert_protocol_reject(&mut s);
    assert!(logged(&server, "", &me, "unexpected ack on a stream"));
    assert_served(&server, 5, 1);
}

#[test]
fn a_native_commit_index_beyond_our_log_is_clamped() {
    let server = lone_server(&[]);
    let (mut s, me) = follow_me(&server);
    // One entry, committed "up to i32::MAX": entry 0 is committed, and the
    // stream goes on.
    s.write_all(&native(
        EPOCH,
        Body::Append {
            prev_index: -1,
            prev_epoch: 0,
            commit_index: i32::MAX,
            entries: vec![Entry::set(EPOCH, 31, 77)],
        },
    ))
    .unwrap();
    let ack = |s: &mut TcpStream| match read_native(s).body {
        Body::Ack { last_index, .. } => last_index,
        other => panic!("expected an ack, got {other:?}"),
    };
    assert_eq!(ack(&mut s), 0);
    s.write_all(&native(
        EPOCH,
        Body::Heartbeat {
            commit_index: i32::MAX,
        },
    ))
    .unwrap();
    assert_eq!(ack(&mut s), 0);
    // (A read on this backup is not answered from its own records (G6):
    // it would be forwarded to its primary, which is not a configured
    // peer. What it applied is read once the stream is gone, below.)
    // The next append continues at index 1, committed in its turn.
    s.write_all(&native(
        EPOCH,
        Body::Append {
            prev_index: 0,
            prev_epoch: EPOCH,
            commit_index: 1,
            entries: vec![Entry::set(EPOCH, 31, 78)],
        },
    ))
    .unwrap();
    assert_eq!(ack(&mut s), 1);
    // Nothing is logged about the clamp.
    let log = log_before_marker(&server);
    assert!(!names(&log, "WARN", &me), "{log}");
    drop(s);
    // Alone once its primary is gone, the server's first read makes it
    // primary, which commits its log: both entries, in order.
    assert_eq!(common::read(server.port, 31), 78);
    assert_served(&server, 32, 1);
}

#[test]
fn a_v1_frame_cut_by_eof_closes_and_loses_the_primary_quietly() {
    let server = lone_server(&[]);
    let (mut s, me) = connect(&server);
    s.write_all(&PFA_TAG).unwrap();
    // Entry 0 in full (acknowledged), then 10 of the next frame's 24 bytes.
    s.write_all(&v1_frame(-1, 0)).unwrap();
    let mut ack = [0u8; 8];
    std::io::Read::read_exact(&mut s, &mut ack).unwrap();
    assert_eq!(ack, [0; 8], "replica 0 acks index 0");
    s.write_all(&v1_frame(0, 1)[..10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(common::closed_by_server(&mut s));
    assert!(logged(
        &server,
        "INFO",
        &me,
        &format!("lost primary 9 (connected from {me}): stream closed")
    ));
    let log = log_before_marker(&server);
    assert!(!names(&log, "WARN", &me), "{log}");
    assert_served(&server, 6, 1);
}

/// A client session that is served (its read answered), then held open.
fn held_session(server: &ServerProcess) -> TcpStream {
    let (mut s, _) = connect(server);
    s.write_all(&CLIENT_TAG).unwrap();
    s.write_all(&request(1, 0, 2)).unwrap();
    let mut reply = [0u8; 8];
    std::io::Read::read_exact(&mut s, &mut reply).unwrap();
    s
}

/// A refusal line of the log.
#[derive(Debug)]
struct Refusal {
    /// Seconds since midnight (UTC) of the line's time stamp.
    at: f64,
    /// The peer it names.
    peer: String,
    /// How many refusals since the previous line it reports.
    more: u64,
}

/// The refusal lines of `log`, in order.
fn refusal_lines(log: &str) -> Vec<Refusal> {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("connections already open"))
        .map(|l| {
            // "YYYY-MM-DDTHH:MM:SS.mmmZ WARN  ...: PEER: 1 connections
            // already open (--max-connections); closed at once (N more
            // refused since the last report)"
            let stamp: Vec<f64> = l
                .split_whitespace()
                .next()
                .and_then(|t| t.split_once('T'))
                .expect("an RFC 3339 time stamp")
                .1
                .trim_end_matches('Z')
                .split(':')
                .map(|f| f.parse().expect("a time stamp"))
                .collect();
            let peer = l
                .split_whitespace()
                .find(|w| w.starts_with("127.0.0.1:"))
                .expect("a line names the peer")
                .trim_end_matches(':')
                .to_string();
            let more = l
                .split_once(" more refused")
                .and_then(|(head, _)| head.rsplit('(').next())
                .map_or(0, |n| n.parse().expect("a count"));
            Refusal {
                at: stamp[0] * 3600.0 + stamp[1] * 60.0 + stamp[2],
                peer,
                more,
            }
        })
        .collect()
}

#[test]
fn refused_connections_are_logged_at_most_once_a_second() {
    let server = lone_server(&["--max-connections", "1"]);
    let held = held_session(&server);
    // Refused connections one after the other, each closed before the
    // next, about a hundred a second, until the second refusal line
    // appears (bounded: 2,000 connections or the deadline).
    let mut refused = Vec::new();
    let mut lines = Vec::new();
    let end = Instant::now() + DEADLINE;
    while refused.len() < 2_000 && Instant::now() < end {
        let (mut s, me) = connect(&server);
        assert!(common::closed_by_server(&mut s), "refused at once");
        refused.push(me);
        lines = refusal_lines(&server.log_text());
        if lines.len() >= 2 {
            break;
        }
        // The refused peers' pace, on purpose: fast enough to need the
        // rule, without using up ephemeral ports other tests need.
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(lines.len() >= 2, "one line only: {lines:?}");
    // The first refusal is logged, naming its peer; the next line comes a
    // second later or more, names a later peer and counts exactly those
    // in between, which were not logged.
    assert_eq!((&lines[0].peer, lines[0].more), (&refused[0], 0));
    let at = refused
        .iter()
        .position(|p| *p == lines[1].peer)
        .expect("the second line names one of ours");
    assert_eq!(lines[1].more, at as u64 - 1, "{lines:?}");
    assert!(lines[1].more >= 1, "{lines:?}");
    let apart = (lines[1].at - lines[0].at).rem_euclid(86_400.0);
    assert!(apart >= 0.999, "lines {apart} s apart: {lines:?}");
    // The session held open is still served, and a new client once it
    // leaves.
    let mut held = held;
    held.write_all(&request(1, 0, 2)).unwrap();
    let mut reply = [0u8; 8];
    std::io::Read::read_exact(&mut held, &mut reply).unwrap();
    drop(held);
    assert!(wait_until(|| {
        let Ok(mut c) = factory::client::Client::connect(
            "127.0.0.1",
            server.port,
            Some(Duration::from_secs(5)),
        ) else {
            return false;
        };
        // The slot of an earlier try may still be taken for a moment after
        // its close (the limit is 1): a refused try is tried again.
        c.order(7, 2)
            .is_ok_and(|i| (i.customer_id, i.order_number) == (7, 2))
            && c.read(7).is_ok_and(|r| r.last_order == 2)
    }));
}

//! Replication peers written from raw bytes (PROTOCOL.md §1, §3): a fake
//! backup that accepts our primary's `PFA` connection and checks every frame
//! byte for byte, and a fake primary that streams to our backup.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, wait_until, DEADLINE};
use factory::server::{PeerConfig, Server, ServerConfig};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// The next connection to `listener`, or a panic once `limit` passes
/// without one: a primary that never connects fails the test instead of
/// hanging it.
fn accept_within(listener: &TcpListener, limit: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("accept: {e}"),
        }
    }
    panic!("no connection within {limit:?}");
}

/// Accepts connections like an original server: reads the 8-byte tag and
/// closes anything but `PFA` (our primary tries its native tag first).
fn accept_pfa(listener: &TcpListener) -> TcpStream {
    for _ in 0..20 {
        let mut s = accept_within(listener, DEADLINE);
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let tag = read_n(&mut s, 8);
        if tag == hex("50 46 41 00 00 00 00 00") {
            return s;
        }
        assert_eq!(&tag[..4], b"FREP", "only the native tag is tried first");
    }
    panic!("no PFA connection");
}

/// Reads the next frame for a new entry. Commit notices in between (the
/// previous entry re-sent with its own index as the commit point) are
/// checked byte for byte and acknowledged.
fn next_entry_frame(s: &mut TcpStream, previous: &mut Vec<u8>, replica: u8) -> Vec<u8> {
    loop {
        let frame = read_n(s, 24);
        if !previous.is_empty() && frame[8..12] == previous[8..12] {
            let mut notice = previous.clone();
            notice[4..8].copy_from_slice(&previous[8..12]);
            assert_eq!(
                frame, notice,
                "a commit notice re-sends the entry as committed"
            );
            s.write_all(&[0, 0, 0, replica]).unwrap();
            s.write_all(&frame[8..12]).unwrap();
            continue;
        }
        *previous = frame.clone();
        return frame;
    }
}

#[test]
fn our_primary_sends_exact_v1_frames_and_waits_for_acks() {
    let backup = TcpListener::bind("127.0.0.1:0").unwrap();
    let backup_port = backup.local_addr().unwrap().port();
    let server = Server::start(ServerConfig::loopback(0, 3)).unwrap();
    server.add_peer(PeerConfig {
        id: 5,
        host: "localhost".into(),
        port: backup_port,
    });
    let port = server.local_addr().port();

    let (replied_tx, replied_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        let mut c = client(port);
        c.order(7, 42).unwrap();
        replied_tx.send(1).unwrap();
        c.order(8, -1).unwrap();
        replied_tx.send(2).unwrap();
        c.close();
    });

    let mut s = accept_pfa(&backup);
    let mut previous = Vec::new();
    // Entry 0 names the in-sync set: a no-op (opcode 0) for a v1 backup.
    assert_eq!(
        next_entry_frame(&mut s, &mut previous, 5),
        hex("00 00 00 03 ff ff ff ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    );
    s.write_all(&hex("00 00 00 05 00 00 00 00")).unwrap();
    // Entry 1: primary 3, commit point 0, op set 7 → 42 (LE).
    assert_eq!(
        next_entry_frame(&mut s, &mut previous, 5),
        hex("00 00 00 03 00 00 00 00 00 00 00 01 01 00 00 00 07 00 00 00 2a 00 00 00")
    );
    assert!(
        replied_rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "no reply before the backup acks"
    );
    s.write_all(&hex("00 00 00 05 00 00 00 01")).unwrap();
    assert_eq!(replied_rx.recv_timeout(DEADLINE), Ok(1));
    // Entry 2 carries commit point 1; op set 8 → -1.
    assert_eq!(
        next_entry_frame(&mut s, &mut previous, 5),
        hex("00 00 00 03 00 00 00 01 00 00 00 02 01 00 00 00 08 00 00 00 ff ff ff ff")
    );
    s.write_all(&hex("00 00 00 05 00 00 00 02")).unwrap();
    assert_eq!(replied_rx.recv_timeout(DEADLINE), Ok(2));
    // Once writes stop, the commit notice re-sends entry 2 as committed.
    assert_eq!(
        read_n(&mut s, 24),
        hex("00 00 00 03 00 00 00 02 00 00 00 02 01 00 00 00 08 00 00 00 ff ff ff ff")
    );
    s.write_all(&hex("00 00 00 05 00 00 00 02")).unwrap();
    writer.join().unwrap();
    assert_eq!(server.status().committed_index, 2);
    server.stop();
}

#[test]
fn a_raw_primary_drives_our_backup() {
    let server = Server::start(ServerConfig::loopback(0, 2)).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(&hex("50 46 41 00 00 00 00 00")).unwrap();
    // Entry 0 (set 7 → 42), nothing committed.
    s.write_all(&hex(
        "00 00 00 00 ff ff ff ff 00 00 00 00 01 00 00 00 07 00 00 00 2a 00 00 00",
    ))
    .unwrap();
    assert_eq!(read_n(&mut s, 8), hex("00 00 00 02 00 00 00 00"));
    assert_eq!(server.status().primary_id, 0);
    // Its records are read in-process: a client's read on this backup
    // would be forwarded to its primary (G6), here a test peer that is
    // not a configured one.
    assert_eq!(server.last_order(7), -1, "not committed yet");
    // Entry 1 commits entry 0.
    s.write_all(&hex(
        "00 00 00 00 00 00 00 00 00 00 00 01 01 00 00 00 07 00 00 00 2b 00 00 00",
    ))
    .unwrap();
    assert_eq!(read_n(&mut s, 8), hex("00 00 00 02 00 00 00 01"));
    assert_eq!(server.last_order(7), 42);
    // An opcode other than 1 is stored but changes nothing when applied.
    s.write_all(&hex(
        "00 00 00 00 00 00 00 01 00 00 00 02 09 00 00 00 07 00 00 00 00 00 00 00",
    ))
    .unwrap();
    assert_eq!(read_n(&mut s, 8), hex("00 00 00 02 00 00 00 02"));
    s.write_all(&hex(
        "00 00 00 00 00 00 00 02 00 00 00 02 09 00 00 00 07 00 00 00 00 00 00 00",
    ))
    .unwrap();
    assert_eq!(read_n(&mut s, 8), hex("00 00 00 02 00 00 00 02"));
    assert_eq!(server.last_order(7), 43);
    drop(s);
    assert!(
        wait_until(|| server.status().primary_id == -1),
        "stream loss resets primary"
    );
}

#[test]
fn a_hostile_index_closes_the_stream_without_growing_the_log() {
    let server = Server::start(ServerConfig::loopback(0, 2)).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"PFA\0\0\0\0\0").unwrap();
    s.write_all(&hex(
        "00 00 00 00 ff ff ff ff 7f ff ff ff 01 00 00 00 07 00 00 00 2a 00 00 00",
    ))
    .unwrap();
    assert!(
        common::closed_without_reply(&mut s),
        "stream closed, no ack"
    );
    assert_eq!(server.status().last_index, -1);
    assert_eq!(common::read(server.local_addr().port(), 7), -1);
}

/// A backup that is not in sync yet answers reads from the primary, so a
/// client never sees it go back in time (here: -1 where the primary has 5).
#[test]
fn an_untrusted_backup_forwards_reads_to_its_primary() {
    use factory::wire::native::{Body, NativeFrame, NATIVE_TAG};
    let primary = Server::start(ServerConfig::loopback(0, 7)).unwrap();
    let mut c = client(primary.local_addr().port());
    c.order(1, 5).unwrap();
    c.close();
    let backup = Server::start(ServerConfig::loopback(0, 2)).unwrap();
    backup.add_peer(PeerConfig {
        id: 7,
        host: "127.0.0.1".into(),
        port: primary.local_addr().port(),
    });
    // Act as primary 7 on a native stream: the backup follows it.
    let mut s = TcpStream::connect(backup.local_addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(&NATIVE_TAG).unwrap();
    let mut hello = Vec::new();
    NativeFrame::new(
        primary.status().epoch,
        Body::Hello {
            primary_id: 7,
            commit_index: 1,
        },
    )
    .encode(&mut hello);
    s.write_all(&hello).unwrap();
    let len = u32::from_be_bytes(read_n(&mut s, 4).try_into().unwrap()) as usize;
    let reply = NativeFrame::decode(&read_n(&mut s, len)).unwrap();
    assert!(
        matches!(reply.body, Body::CatchUp { last_index: -1, .. }),
        "{reply:?}"
    );
    assert!(!backup.status().trusted);
    assert_eq!(backup.last_order(1), -1, "the backup holds nothing yet");
    assert_eq!(
        common::read(backup.local_addr().port(), 1),
        5,
        "the read went to the primary"
    );
}

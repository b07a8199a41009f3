//! Clusters of 1, 2 and 3 servers inside the test process (through the
//! library): concurrent writers, then every server is read back.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{assert_all_written, client, in_process_cluster, wait_until, write_concurrently};
use factory::server::{PeerConfig, Server, ServerConfig};

const CUSTOMERS: i32 = 8;
const ORDERS: i32 = 200;

fn cluster_of(n: usize) {
    let servers = in_process_cluster(n);
    let primary = servers[0].local_addr().port();
    write_concurrently(primary, CUSTOMERS, ORDERS);

    // Every write plus the entry naming the first in-sync set.
    let entries = CUSTOMERS * ORDERS + 1;
    let status = servers[0].status();
    assert_eq!(status.primary_id, 0);
    assert_eq!(status.in_sync, (0..n as i32).collect::<Vec<_>>());
    assert_eq!(
        (status.last_index, status.committed_index),
        (entries - 1, entries - 1)
    );
    assert_all_written(primary, CUSTOMERS, ORDERS, true);
    for backup in &servers[1..] {
        let id = backup.factory_id();
        let s = backup.status();
        assert_eq!(s.primary_id, 0, "backup {id} follows the primary");
        assert_eq!(s.last_index, entries - 1, "backup {id} holds every entry");
        // The commit point reaches backups with the next append or heartbeat.
        assert!(
            wait_until(|| backup.status().committed_index == entries - 1),
            "backup {id} commits everything once writes stop"
        );
        assert!(backup.status().trusted, "an in-sync backup is trusted");
        assert_all_written(backup.local_addr().port(), CUSTOMERS, ORDERS, true);
    }
    for server in servers {
        server.stop();
    }
}

#[test]
fn one_server() {
    cluster_of(1);
}

#[test]
fn two_servers() {
    cluster_of(2);
}

#[test]
fn three_servers() {
    cluster_of(3);
}

/// Once the primary is gone, a write to a backup makes it take over (it was
/// in sync, so it may) and the writes acknowledged before are all there.
#[test]
fn backup_taking_writes_commits_what_it_trailed() {
    let mut servers = in_process_cluster(2);
    let backup = servers.pop().unwrap();
    let primary = servers.pop().unwrap();
    let (p0, p1) = (primary.local_addr().port(), backup.local_addr().port());
    write_concurrently(p0, 1, 10);
    let trailing = common::read(p1, 0);
    assert!(
        trailing == 8 || trailing == 9,
        "backup trails by at most one"
    );
    primary.stop();
    assert!(
        wait_until(|| backup.status().primary_id == -1),
        "stream loss noticed"
    );
    let mut c = client(p1);
    c.order(1, 5).expect("write to the former backup");
    assert_eq!(c.read(0).unwrap().last_order, 9);
    assert_eq!(c.read(1).unwrap().last_order, 5);
    c.close();
}

/// Reads are answered from committed records while the admin thread is
/// stuck waiting for a backup that never acknowledges. The backup acts as
/// an original server (it closes native connections), takes the `PFA`
/// stream and never acks.
#[test]
fn reads_do_not_wait_behind_replication() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    // Accepts are bounded: a primary that never connects fails the test
    // within the deadline instead of hanging it.
    silent.set_nonblocking(true).unwrap();
    let backup = thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        for _ in 0..10 {
            let mut stream = loop {
                match silent.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(
                            std::time::Instant::now() < end,
                            "no connection from the primary"
                        );
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut tag = [0u8; 8];
            stream.read_exact(&mut tag).unwrap();
            if !tag.starts_with(b"PFA") {
                continue; // an original server closes anything else
            }
            accepted_tx.send(()).unwrap();
            // Read and discard until the primary gives up on us; never ack.
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
    });
    let mut config = ServerConfig::loopback(0, 0);
    config.limits.peer_timeout = Duration::from_secs(30);
    let server = Server::start(config).unwrap();
    server.add_peer(PeerConfig {
        id: 1,
        host: "127.0.0.1".into(),
        port: silent_port,
    });
    let port = server.local_addr().port();

    let (done_tx, done_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        let mut c = client(port);
        let result = c.order(3, 1).map(|_| ());
        done_tx.send(()).unwrap();
        result
    });
    accepted_rx
        .recv_timeout(common::DEADLINE)
        .expect("primary connects to the backup");
    // Entry 0 (the in-sync set) already waits for the silent backup's ack.
    assert!(
        wait_until(|| server.status().last_index >= 0),
        "an entry is appended"
    );

    let mut reader = client(port);
    assert_eq!(reader.read(3).unwrap().last_order, -1, "not committed yet");
    assert_eq!(reader.read(4).unwrap().last_order, -1);
    assert!(
        done_rx.try_recv().is_err(),
        "the write is still waiting for its ack"
    );

    server.stop();
    assert!(
        writer.join().unwrap().is_err(),
        "stopping fails the pending write"
    );
    backup.join().unwrap();
}

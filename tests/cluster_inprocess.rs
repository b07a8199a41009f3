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

    let writes = CUSTOMERS * ORDERS;
    let status = servers[0].status();
    assert_eq!(status.primary_id, 0);
    assert_eq!(
        (status.last_index, status.committed_index),
        (writes - 1, writes - 1)
    );
    assert_all_written(primary, CUSTOMERS, ORDERS, true);
    for backup in &servers[1..] {
        let s = backup.status();
        assert_eq!(
            s.primary_id, 0,
            "backup {} follows the primary",
            s.factory_id
        );
        assert_eq!(
            s.last_index,
            writes - 1,
            "backup {} holds every entry",
            s.factory_id
        );
        // Backups trail while writes flow (§4); once they stop, the admin's
        // commit notice brings them up to date.
        assert!(
            wait_until(|| backup.status().committed_index == writes - 1),
            "backup {} commits everything once writes stop",
            s.factory_id
        );
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

/// A write to a backup makes it primary (as in the original) and it commits
/// the entry it was trailing.
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
/// stuck waiting for a backup that never acknowledges.
#[test]
fn reads_do_not_wait_behind_replication() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let backup = thread::spawn(move || {
        let (mut stream, _) = silent.accept().unwrap();
        accepted_tx.send(()).unwrap();
        // Read and discard until the primary gives up on us; never ack.
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
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
    assert!(
        wait_until(|| server.status().last_index == 0),
        "write appended"
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

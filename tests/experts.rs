//! The expert pool (issue 16.4, docs/protocol.md "Custom orders"): custom
//! orders on raw client sessions against in-process servers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use factory::protocol::session::CustomStatus;
use factory::server::{ExpertConfig, Server, ServerConfig};
use factory::wire::{Frame, RobotInfo, RobotOrder, CLIENT_TAG};

fn server(threads: usize, queue: usize, work: Duration) -> Server {
    let mut config = ServerConfig::loopback(0, 0);
    config.experts = ExpertConfig {
        threads,
        queue,
        work,
    };
    Server::start(config).expect("start a server")
}

fn session(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(common::IO_TIMEOUT).unwrap();
    s.write_all(&CLIENT_TAG).unwrap();
    s
}

fn send_custom(s: &mut TcpStream, customer: i32, order: i32) {
    s.write_all(&RobotOrder::custom(customer, order).to_vec())
        .unwrap();
}

/// Reads a custom order's reply, checks that it echoes the order, and
/// returns its status.
fn custom_status(s: &mut TcpStream, customer: i32, order: i32) -> CustomStatus {
    let mut buf = [0; RobotInfo::SIZE];
    s.read_exact(&mut buf).expect("a reply to the custom order");
    let info = RobotInfo::decode(&buf);
    assert!(
        info.answers(&RobotOrder::custom(customer, order)),
        "{info:?}"
    );
    CustomStatus::from_code(info.admin_id).expect("a documented status")
}

fn custom(addr: SocketAddr, customer: i32, order: i32) -> CustomStatus {
    let mut s = session(addr);
    send_custom(&mut s, customer, order);
    custom_status(&mut s, customer, order)
}

#[test]
fn n_experts_work_on_n_custom_orders_at_once() {
    for n in [1, 2, 4] {
        // Long enough that n orders handed out at once overlap; the
        // counters, not the clock, say how many experts worked at once.
        let server = server(n, 16, Duration::from_millis(300));
        let gauge = server.experts();
        assert_eq!(gauge.live(), n);
        let addr = server.local_addr();
        let clients: Vec<_> = (0..2 * n as i32)
            .map(|c| thread::spawn(move || custom(addr, c, 100 + c)))
            .collect();
        assert!(
            common::wait_until(|| gauge.busy() == n),
            "{n} experts never all worked at once: busy {}",
            gauge.busy()
        );
        for c in clients {
            assert_eq!(c.join().unwrap(), CustomStatus::Done);
        }
        assert_eq!(gauge.max_busy(), n, "never more experts than started");
        assert_eq!(gauge.done(), 2 * n);
        for c in 0..2 * n as i32 {
            assert_eq!(server.last_order(c), 100 + c, "custom order {c} written");
        }
        server.stop();
        assert_eq!(gauge.live(), 0);
    }
}

#[test]
fn a_full_queue_answers_busy_at_once() {
    // One expert, one place in the queue, work that outlasts the test.
    let server = server(1, 1, Duration::from_secs(600));
    let gauge = server.experts();
    let addr = server.local_addr();
    let mut working = session(addr);
    send_custom(&mut working, 1, 11);
    assert!(common::wait_until(|| gauge.busy() == 1));
    let mut waiting = session(addr);
    send_custom(&mut waiting, 2, 22);
    assert!(common::wait_until(|| gauge.queued() == 1));
    let mut refused = session(addr);
    send_custom(&mut refused, 3, 33);
    assert_eq!(custom_status(&mut refused, 3, 33), CustomStatus::Busy);
    assert_eq!(gauge.busy_answers(), 1);
    assert_eq!(server.last_order(3), -1, "a busy order is not written");
    // The session goes on: an ordinary write on it is served.
    refused
        .write_all(&RobotOrder::write(3, 34).to_vec())
        .unwrap();
    let mut reply = [0; RobotInfo::SIZE];
    refused.read_exact(&mut reply).unwrap();
    assert_eq!(server.last_order(3), 34);
    server.stop();
}

#[test]
fn stopping_with_experts_busy_ends_every_thread() {
    let server = server(2, 4, Duration::from_secs(600));
    let gauge = server.experts();
    let addr = server.local_addr();
    let mut sessions: Vec<TcpStream> = (0..4)
        .map(|c| {
            let mut s = session(addr);
            send_custom(&mut s, c, c + 1);
            s
        })
        .collect();
    assert!(common::wait_until(
        || gauge.busy() == 2 && gauge.queued() == 2
    ));
    let (stopped, wait) = mpsc::channel();
    let stopper = thread::spawn(move || {
        server.stop();
        let _ = stopped.send(());
    });
    assert!(
        wait.recv_timeout(common::DEADLINE).is_ok(),
        "stop did not return with experts busy"
    );
    stopper.join().unwrap();
    assert_eq!(gauge.live(), 0, "every expert thread ended");
    assert_eq!(gauge.busy(), 0);
    for s in &mut sessions {
        assert!(common::closed_by_server(s), "a waiting client is closed");
    }
}

#[test]
fn without_experts_a_custom_order_is_answered_no_experts() {
    let server = Server::start(ServerConfig::loopback(0, 0)).unwrap();
    let gauge = server.experts();
    assert_eq!(gauge.live(), 0);
    let addr = server.local_addr();
    assert_eq!(custom(addr, 5, 55), CustomStatus::NoExperts);
    assert_eq!(server.last_order(5), -1);
    server.stop();
}

#[test]
fn a_backups_expert_writes_through_the_primary() {
    let servers = common::in_process_cluster_with(3, |c| {
        c.experts = ExpertConfig {
            threads: 1,
            queue: 4,
            work: Duration::from_millis(1),
        };
    });
    // The first write makes server 0 primary.
    common::client(servers[0].local_addr().port())
        .order(1, 1)
        .unwrap();
    assert_eq!(custom(servers[2].local_addr(), 9, 99), CustomStatus::Done);
    for s in &servers {
        assert!(common::wait_until(|| s.last_order(9) == 99));
    }
    assert_eq!(servers[2].experts().done(), 1);
    assert_eq!(servers[0].experts().done(), 0);
    for s in servers {
        s.stop();
    }
}

#[test]
fn the_clients_custom_mode_places_custom_orders() {
    let server = server(2, 16, Duration::from_micros(200));
    let port = server.local_addr().port().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["127.0.0.1", &port, "3", "20", "4"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    for c in 0..3 {
        assert_eq!(server.last_order(c), 19);
    }
    assert_eq!(server.experts().done(), 60, "every order went to an expert");
    server.stop();
    let none = Server::start(ServerConfig::loopback(0, 0)).unwrap();
    let port = none.local_addr().port().to_string();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["127.0.0.1", &port, "1", "5", "4"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("NoExperts"),
        "{o:?}"
    );
    none.stop();
}

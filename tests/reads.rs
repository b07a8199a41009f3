//! G6, linearizable reads, with real server processes: readers go round
//! every server while writers write, through restarts of a backup (with
//! and without a data directory) and kills of the primary, and every read
//! is checked against the history: none returns less than a write
//! acknowledged before it began, nor less than an earlier completed read.
//! (Reads with no fault at all: crash_safety's
//! `reads_on_every_server_never_go_back_in_time`.)

mod common;
#[path = "common/raw_peer.rs"]
mod raw_peer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::io::Write;

use factory::client::Client;
use factory::wire::native::{Body, RejectCode, NATIVE_TAG};

use common::history::{History, Observed, Workload, FIRST_CUSTOMER};
use common::net::signal;
use common::{wait_until, ProcessCluster, IO_TIMEOUT};

/// Writers of every workload here.
const WRITERS: i32 = 8;

/// Readers that read the given customers on the given servers as fast as
/// they can, recording every read into the workload's history: aimed at
/// the moments right after a fault, which the workload's own readers
/// (one read per 2 ms, spread over rounds) rarely hit.
struct Hammer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hammer {
    fn start(history: &Arc<History>, ports: Vec<u16>, customers: Vec<i32>) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ports
            .into_iter()
            .flat_map(|port| [port; 2])
            .map(|port| {
                let (history, stop, customers) =
                    (Arc::clone(history), Arc::clone(&stop), customers.clone());
                thread::spawn(move || hammer(&history, &stop, port, &customers))
            })
            .collect();
        Hammer { stop, threads }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn hammer(history: &History, stop: &AtomicBool, port: u16, customers: &[i32]) {
    let mut session: Option<Client> = None;
    let end = Instant::now() + common::DEADLINE;
    for n in 0.. {
        if stop.load(Ordering::SeqCst) || Instant::now() > end {
            break;
        }
        let customer = customers[n % customers.len()];
        if session.is_none() {
            session = Client::connect("127.0.0.1", port, IO_TIMEOUT).ok();
        }
        let Some(c) = session.as_mut() else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        let began = Instant::now();
        match c.read(customer) {
            Ok(r) => history.record_read(Observed {
                customer,
                value: r.last_order,
                port,
                began,
                ended: Instant::now(),
            }),
            // Refused (closed) or a server going down: a new session.
            Err(_) => session = None,
        }
    }
}

/// The customers the workload's writers write in fault round `round`.
fn customers_of(round: u32) -> Vec<i32> {
    (0..WRITERS)
        .map(|w| FIRST_CUSTOMER + round as i32 * WRITERS + w)
        .collect()
}

fn flowing(cluster: &ProcessCluster, load: &Workload, more: usize, what: &str) {
    if !load.wait_for_more(more) {
        cluster.dump();
        panic!("{what}: {more} more writes were not acknowledged in time");
    }
}

fn the_primary(cluster: &mut ProcessCluster, what: &str) -> usize {
    cluster.primary().unwrap_or_else(|| {
        cluster.dump();
        panic!("{what}: no single primary");
    })
}

/// Reads that ended on `port`.
fn reads_on(history: &History, port: u16) -> usize {
    history.reads().iter().filter(|r| r.port == port).count()
}

/// G6: a backup killed and restarted, `rounds` times, while readers read
/// every server: the restarted one, which comes back empty (no data dir)
/// or with the log it had (data dir), must never answer from those older
/// records, before or after its primary finds it.
fn restarted_backup_reads(data_dir: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(3, |i| {
        if data_dir {
            vec![
                "--data-dir".into(),
                dir.path().join(format!("s{i}")).display().to_string(),
            ]
        } else {
            Vec::new()
        }
    });
    let ports = cluster.ports();
    let load = Workload::start(&ports, WRITERS, 3);
    flowing(&cluster, &load, 200, "start");
    let primary = the_primary(&mut cluster, "start");
    load.read_from_every();
    for round in 0..3 {
        let victim = (primary + 1 + round % 2) % 3;
        flowing(&cluster, &load, 300, "before the kill");
        cluster.kill(victim);
        load.fault();
        flowing(&cluster, &load, 300, "after the kill");
        cluster.restart(victim);
        load.fault();
        if !cluster.wait_in_sync(victim) {
            cluster.dump();
            panic!("round {round}: server {victim} was not re-admitted");
        }
        flowing(&cluster, &load, 300, "after the rejoin");
    }
    let history = load.finish();
    for &port in &ports {
        assert!(
            // A restarted server's reads wait while it catches up, so on a
            // loaded machine it may take fewer; 20 still shows it was read.
            reads_on(&history, port) > 20,
            "readers read server :{port} too ({} reads)",
            reads_on(&history, port)
        );
    }
    cluster.check_history(&history);
}

#[test]
fn g6_a_restarted_backup_without_data_dir_never_answers_older_state() {
    restarted_backup_reads(false);
}

#[test]
fn g6_a_restarted_backup_with_data_dir_never_answers_older_state() {
    restarted_backup_reads(true);
}

/// G6: the primary killed six times under 8 writers while readers read
/// every server: the server that takes over answers nothing before it has
/// committed an entry of its epoch (which applies what it inherited), and
/// backups ask it for its commit point, so no read right after a takeover
/// returns less than an acknowledged write. The killed primary comes back
/// and is read too.
#[test]
fn g6_reads_right_after_a_takeover_never_go_below_an_acknowledged_write() {
    let mut cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    let load = Workload::start(&ports, WRITERS, 3);
    flowing(&cluster, &load, 200, "start");
    the_primary(&mut cluster, "start");
    load.read_from_every();
    for round in 0..6 {
        let primary = the_primary(&mut cluster, "before the kill");
        // The customers written until the kill: their last writes are the
        // ones the next primary holds but has not applied yet.
        let survivors: Vec<u16> = (0..3).filter(|&i| i != primary).map(|i| ports[i]).collect();
        let hammer = Hammer::start(&load.history, survivors, customers_of(round * 2));
        flowing(&cluster, &load, 50, "before the kill");
        cluster.kill(primary);
        load.fault();
        flowing(&cluster, &load, 300, "after the takeover");
        hammer.finish();
        cluster.restart(primary);
        load.fault();
        if !cluster.wait_in_sync(primary) {
            cluster.dump();
            panic!("round {round}: server {primary} was not re-admitted");
        }
        flowing(&cluster, &load, 200, "after the rejoin");
    }
    let history = load.finish();
    cluster.check_history(&history);
}

/// G6, the takeover window made certain: the test's own write is
/// acknowledged and the primary is killed at once, with nothing else
/// written, so the backups hold that write but not the commit point that
/// covers it (it would come with the next append or heartbeat). Readers
/// then wait on both survivors while a write to one of them makes it take
/// over: the reads that the new primary lets through must return that
/// write, which it applies only once it has committed an entry of its own
/// epoch.
#[test]
fn g6_a_new_primary_answers_only_once_it_applied_what_it_inherited() {
    let mut cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    let history = Arc::new(History::new());
    let mut order = 0;
    for round in 0..6 {
        let primary = the_primary_after_a_write(&mut cluster, round);
        let customer = 500 + round;
        let mut c = common::client(ports[primary]);
        for _ in 0..3 {
            order += 1;
            history.record_sent(customer, order);
            let sent = Instant::now();
            c.order(customer, order).expect("a write on the primary");
            history.record_ack(common::history::Ack {
                customer,
                order,
                round: round as u32,
                sent,
                acked: Instant::now(),
            });
        }
        cluster.kill(primary);
        let survivors: Vec<u16> = (0..3).filter(|&i| i != primary).map(|i| ports[i]).collect();
        let hammer = Hammer::start(&history, survivors.clone(), vec![customer]);
        // A write elsewhere (a fresh customer) makes a survivor take over.
        let mut w = common::client(survivors[round as usize % 2]);
        w.order(9_000 + round, 1).expect("a write after the kill");
        w.close();
        let before = history.reads().len();
        if !wait_until(|| history.reads().len() >= before + 200) {
            cluster.dump();
            panic!("round {round}: reads were not answered after the takeover");
        }
        hammer.finish();
        cluster.restart(primary);
        if !cluster.wait_in_sync(primary) {
            cluster.dump();
            panic!("round {round}: server {primary} was not re-admitted");
        }
    }
    if let Err(e) = history.check_reads() {
        cluster.dump();
        panic!("reads against the history:\n{e}");
    }
}

/// The primary, once a write has made sure there is one.
fn the_primary_after_a_write(cluster: &mut ProcessCluster, round: i32) -> usize {
    let mut c = common::client(cluster.ports()[0]);
    c.order(8_000 + round, 1).expect("a write");
    c.close();
    the_primary(cluster, "before the kill")
}

/// G6 and G3 after a full-cluster restart from data directories, with no
/// write afterwards: the first read on each server, all at once, returns
/// every acknowledged write. Each server's commit point on disk may trail
/// its log, so none may answer from its own records until a primary has
/// committed the longest log (a read makes one after waiting for it).
#[test]
fn g6_reads_after_a_full_cluster_restart_return_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(3, |i| {
        vec![
            "--data-dir".into(),
            dir.path().join(format!("s{i}")).display().to_string(),
            "--fsync".into(),
            "always".into(),
        ]
    });
    let ports = cluster.ports();
    let load = Workload::start(&ports, WRITERS, 0);
    flowing(&cluster, &load, 400, "before the kills");
    for i in 0..3 {
        cluster.kill(i);
        load.fault();
    }
    let history = load.finish();
    for i in 0..3 {
        cluster.restart(i);
    }
    let mut customers: Vec<i32> = history.last_acks().into_keys().collect();
    customers.sort_unstable();
    let readers: Vec<JoinHandle<()>> = ports
        .iter()
        .map(|&port| {
            let (history, customers) = (Arc::clone(&history), customers.clone());
            thread::spawn(move || read_each_once(&history, port, &customers))
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    for &port in &ports {
        assert_eq!(
            reads_on(&history, port),
            customers.len(),
            "every customer was read on :{port}"
        );
    }
    if let Err(e) = history.check_reads() {
        cluster.dump();
        panic!("reads after the restart:\n{e}");
    }
}

/// Reads each of `customers` once on `port`, retrying a refused read (a
/// closed connection) until the deadline, and records each answer.
fn read_each_once(history: &History, port: u16, customers: &[i32]) {
    let end = Instant::now() + common::DEADLINE;
    let mut session: Option<Client> = None;
    for &customer in customers {
        while Instant::now() < end {
            if session.is_none() {
                session = Client::connect("127.0.0.1", port, IO_TIMEOUT).ok();
            }
            let Some(c) = session.as_mut() else {
                thread::sleep(Duration::from_millis(20));
                continue;
            };
            let began = Instant::now();
            match c.read(customer) {
                Ok(r) => {
                    history.record_read(Observed {
                        customer,
                        value: r.last_order,
                        port,
                        began,
                        ended: Instant::now(),
                    });
                    break;
                }
                Err(_) => session = None,
            }
        }
    }
}

/// The read-index exchange on the wire (docs/protocol.md, Reads): a server
/// that is not primary answers `Reject` code 2 naming the primary it knows
/// (-1) and closes; a primary answers each `ReadIndex` on one connection
/// with its commit point, which covers the write it acknowledged; any other
/// frame there is refused, and a client is still served.
#[test]
fn read_index_requests_are_answered_only_by_a_primary() {
    let server = common::lone_server(&[]);
    let ask = |s: &mut std::net::TcpStream| {
        s.write_all(&raw_peer::native(
            1 << 16,
            Body::ReadIndex { replica_id: 5 },
        ))
        .unwrap();
        raw_peer::read_native(s).body
    };
    let (mut s, _) = raw_peer::connect(&server);
    s.write_all(&NATIVE_TAG).unwrap();
    assert_eq!(
        ask(&mut s),
        Body::Reject {
            code: RejectCode::HasPrimary,
            reason: "-1".into()
        },
        "not primary yet: no commit point"
    );
    assert!(common::closed_by_server(&mut s));

    let mut c = common::client(server.port);
    c.order(4, 40).unwrap();
    c.order(4, 41).unwrap();
    let (mut s, me) = raw_peer::connect(&server);
    s.write_all(&NATIVE_TAG).unwrap();
    let Body::ReadIndexReply { commit_index } = ask(&mut s) else {
        panic!("a primary gives its commit point");
    };
    // The in-sync entry, then the two writes.
    assert!(commit_index >= 2, "covers both writes: {commit_index}");
    assert_eq!(
        ask(&mut s),
        Body::ReadIndexReply { commit_index },
        "asked again on the same connection, nothing new committed"
    );
    s.write_all(&raw_peer::native(
        1 << 16,
        Body::Heartbeat { commit_index: 0 },
    ))
    .unwrap();
    assert!(matches!(
        raw_peer::read_native(&mut s).body,
        Body::Reject {
            code: RejectCode::Protocol,
            ..
        }
    ));
    assert!(common::closed_by_server(&mut s));
    assert!(raw_peer::logged(
        &server,
        "WARN",
        &me,
        "expected a read-index request"
    ));
    assert_eq!(c.read(4).unwrap().last_order, 41);
    c.close();
}

/// G6 and G2 with a paused primary: the elected primary is stopped
/// (SIGSTOP), the others elect a new one, which acknowledges a newer
/// write; the old primary, let run again, must not answer a read from its
/// older records: its lease ended while it was stopped, so it answers no
/// read until it follows the new primary (then it forwards or asks it).
/// (Ignored until leases existed; breaking `can_serve` in the read path
/// turns it red.)
#[test]
fn g6_a_primary_paused_while_another_took_over_answers_no_older_read() {
    let mut cluster = ProcessCluster::start(3);
    let ports = cluster.ports();
    let old = cluster.primary().expect("an elected primary");
    let mut c = common::client(ports[old]);
    c.order(5, 0).expect("a write on the primary");
    // Read on the primary now, so that the read after the pause goes out
    // on a session that was opened before it.
    assert_eq!(c.read(5).expect("a read on the primary").last_order, 0);
    signal(cluster.servers[old].pid(), "-STOP");
    let other = (old + 1) % 3;
    let mut acked = false;
    let end = Instant::now() + common::DEADLINE;
    while !acked && Instant::now() < end {
        if let Ok(mut w) = Client::connect("127.0.0.1", ports[other], IO_TIMEOUT) {
            acked = w.order(5, 1).is_ok();
        }
    }
    signal(cluster.servers[old].pid(), "-CONT");
    assert!(acked, "order 1 acknowledged while server {old} was stopped");
    // Refused (the connection closed) is allowed: never an older value.
    if let Ok(r) = c.read(5) {
        assert!(
            r.last_order >= 1,
            "the old primary answered {} after order 1 was acknowledged",
            r.last_order
        );
    }
    let value = common::read(ports[old], 5);
    assert!(value >= 1, "the old primary answered {value} afterwards");
}

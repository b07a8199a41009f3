//! The witness (`server --witness`), issue 13 deliverable 5, against real
//! processes with the test proxy on every link (`common::net`): it reports
//! its role and turns clients away, keeps its vote and epoch in its data
//! directory, and closes hostile input; two servers and a witness fail
//! over with no client action (G7) and lose nothing (G1); the pair keeps
//! taking writes without the witness; two servers without a witness keep
//! today's takeover on a client's write.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::net::{Monitor, Net};
use common::sides::Load;
use common::{closed_by_server, free_port, wait_until, ServerProcess, DEADLINE};
use factory::client::status::{self, ServerStatus};
use factory::client::Client;
use factory::storage::election_state;
use factory::wire::kv::{KvBody, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, KV_TAG};
use factory::wire::status::{Role, StatusReport};

const WITNESS: usize = 2;

fn report(port: u16) -> Option<StatusReport> {
    match status::fetch(&format!("127.0.0.1:{port}"), Duration::from_secs(2)) {
        ServerStatus::Report(r) => Some(r),
        _ => None,
    }
}

fn witness_net(extra: impl Fn(usize) -> Vec<String>) -> Net {
    Net::start(3, &[WITNESS], 1, extra)
}

fn data_ports(net: &Net) -> Vec<u16> {
    net.data_servers()
        .into_iter()
        .map(|i| net.direct_ports()[i])
        .collect()
}

/// The witness's status says witness, with no log, and names the primary
/// once one leads; a v1 write to it is not acknowledged (the session is
/// closed); a v2 request gets `NotPrimary` with the primary's address as
/// the witness's peer list names it.
#[test]
fn a_witness_reports_its_role_and_turns_clients_away() {
    let net = witness_net(|_| Vec::new());
    let port = net.direct_ports()[WITNESS];
    let r = report(port).expect("the witness answers the status request");
    assert_eq!(
        (r.role, r.last_index, r.commit_index),
        (Role::Witness, -1, -1)
    );
    let mut primary = None;
    assert!(
        wait_until(|| {
            primary = report(port)
                .filter(|r| r.primary_id >= 0)
                .map(|r| r.primary_id);
            primary.is_some()
        }),
        "the witness learns the primary from its heartbeats"
    );
    let p = primary.unwrap() as usize;
    assert_ne!(p, WITNESS, "a witness never leads");

    let mut v1 = Client::connect("127.0.0.1", port, Some(Duration::from_secs(5))).unwrap();
    assert!(v1.order(7, 1).is_err(), "a witness acknowledges no write");

    let mut v2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    v2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = KV_TAG.to_vec();
    KvRequest {
        id: 42,
        op: KvOp::Get { key: b"k".to_vec() },
    }
    .encode(&mut out);
    v2.write_all(&out).unwrap();
    let mut len = [0u8; 4];
    v2.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    v2.read_exact(&mut body).unwrap();
    let answer = KvResponse::decode(&body, &KvLimits::default()).unwrap();
    assert_eq!((answer.id, answer.status), (42, KvStatus::NotPrimary));
    let named = format!("127.0.0.1:{}", net.peer_port(WITNESS, p));
    assert_eq!(answer.body, KvBody::Text(named.into_bytes()));
}

/// A witness closes what it cannot serve (an unknown tag, a v2 length over
/// the bound, a replication stream) and keeps answering.
#[test]
fn hostile_input_to_a_witness_is_closed_and_it_keeps_serving() {
    let mut witness = None;
    for _ in 0..5 {
        let args = vec!["--witness".to_string()];
        match ServerProcess::spawn_with(
            2,
            free_port(),
            &[(0, free_port()), (1, free_port())],
            &args,
        ) {
            Ok(w) => {
                witness = Some(w);
                break;
            }
            Err(common::SpawnError::PortInUse) => continue,
            Err(e) => panic!("witness did not start: {e:?}"),
        }
    }
    let witness = witness.expect("a witness");
    let closed = |bytes: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", witness.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        closed_by_server(&mut s)
    };
    assert!(closed(b"GARBAGE!"), "an unknown tag");
    let mut huge = KV_TAG.to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(closed(&huge), "a v2 length over the bound, refused unread");
    let mut short = KV_TAG.to_vec();
    short.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
    assert!(closed(&short), "a v2 frame shorter than its header");
    assert!(closed(b"FREP\0\0\0\x01"), "a replication stream");
    // The log line may reach the file a moment after the close.
    assert!(wait_until(|| witness
        .log_text()
        .contains("this is a witness")));
    assert!(
        closed(b"FELE\0\0\0\x01\xff\xff\xff\xff"),
        "an election frame over the bound"
    );
    assert_eq!(report(witness.port).map(|r| r.role), Some(Role::Witness));
}

/// With `--data-dir`, the witness keeps its epoch and the in-sync set it
/// accepted: restarted alone (both servers down, so nobody can tell it),
/// it reports the epoch it had.
#[test]
fn a_witness_keeps_its_epoch_and_in_sync_set_in_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w");
    let path2 = path.clone();
    let mut net = witness_net(move |i| {
        if i == WITNESS {
            vec!["--data-dir".into(), path2.display().to_string()]
        } else {
            Vec::new()
        }
    });
    let Some(p) = net.await_primary(None, 0, &[]) else {
        net.dump();
        panic!("no primary: {:?}", net.statuses());
    };
    let mut saved = None;
    assert!(
        wait_until(|| {
            saved = election_state::load(&path).ok().flatten();
            saved.as_ref().is_some_and(|h| h.epoch == p.epoch)
        }),
        "the witness saved the primary's epoch: {saved:?}"
    );
    let saved = saved.unwrap();
    net.kill(0);
    net.kill(1);
    net.kill(WITNESS);
    net.restart(WITNESS);
    let r = report(net.direct_ports()[WITNESS]).expect("status");
    assert_eq!(r.role, Role::Witness);
    assert_eq!(r.epoch, saved.epoch, "the epoch survived the restart");
    assert_eq!(r.in_sync, saved.config.members.ids().to_vec());
}

/// G7, G1: two servers and a witness. With no client running, the primary
/// is killed; the survivor becomes primary through the witness's vote
/// with no client action (it is watched through its status only), and
/// holds every write acknowledged before the kill; writes then go on.
#[test]
fn g1_g7_two_servers_and_a_witness_fail_over_without_client_action() {
    let mut net = witness_net(|_| Vec::new());
    let Some(first) = net.await_primary(None, 0, &[]) else {
        net.dump();
        panic!("no primary without a client write: {:?}", net.statuses());
    };
    let load = Load::start(&[net.client_ports(0)], 2, 1);
    assert!(load.wait_for_acks(0, 200, DEADLINE), "writes flow");
    let (before, _) = load.finish();
    net.kill(first.id);
    let killed = Instant::now();
    let survivor = 1 - first.id;
    let Some(next) = net.await_primary(Some(first.id), first.epoch, &[survivor, WITNESS]) else {
        net.dump();
        panic!("no failover after the kill: {:?}", net.statuses());
    };
    eprintln!("failover through the witness: {:?}", killed.elapsed());
    assert_eq!(next.id, survivor);
    let port = net.direct_ports()[survivor];
    if let Err(e) = before.check_writes_on(&[port]) {
        net.dump();
        panic!("G1: writes acknowledged before the kill:\n{e}");
    }
    let after = Load::start_from(2_000_000, &[vec![net.client_ports(0)[survivor]]], 2, 1);
    assert!(after.wait_for_acks(0, 200, DEADLINE), "writes resume");
    let (after, _) = after.finish();
    if let Err(e) = after.check_writes_on(&[port]).and(after.check_reads()) {
        net.dump();
        panic!("after the failover:\n{e}");
    }
}

/// G1, G7: the witness is killed under load; the primary keeps its lease
/// with the other server's acks and the pair keeps acknowledging writes,
/// none lost, with no change of primary.
#[test]
fn g1_g7_the_pair_keeps_working_when_the_witness_dies() {
    let mut net = witness_net(|_| Vec::new());
    let Some(first) = net.await_primary(None, 0, &[]) else {
        net.dump();
        panic!("no primary: {:?}", net.statuses());
    };
    let monitor = Monitor::start(data_ports(&net), Duration::from_millis(20));
    let load = Load::start(&[net.client_ports(0)], 2, 1);
    assert!(load.wait_for_acks(0, 200, DEADLINE), "writes flow");
    load.fault();
    net.kill(WITNESS);
    let killed = Instant::now();
    if !load.wait_for_acks(0, 500, DEADLINE) {
        net.dump();
        panic!("the pair stopped taking writes without the witness");
    }
    let during = load.acks_of(0, killed, Instant::now());
    let (history, _) = load.finish();
    let seen = monitor.finish();
    eprintln!("{during} writes acknowledged after the witness died");
    if let Err(e) = history.check_writes_on(&data_ports(&net)) {
        net.dump();
        panic!("G1:\n{e}");
    }
    if let Err(e) = history.check_reads() {
        net.dump();
        panic!("G6:\n{e}");
    }
    let epochs = common::net::primary_epochs(&seen);
    assert_eq!(
        epochs,
        vec![(first.id, first.epoch)],
        "the primary stayed the same"
    );
}

/// Two servers without a witness keep today's behaviour (documented in
/// docs/failover.md): no election, the first write makes its server
/// primary.
#[test]
fn two_servers_without_a_witness_keep_todays_takeover() {
    let net = Net::start(2, &[], 1, |_| Vec::new());
    let ports = net.direct_ports();
    // Watched for longer than an election takes (≈ 0.5 s): nobody leads.
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        for &p in &ports {
            let r = report(p).expect("status");
            assert_ne!(r.role, Role::Primary, "nobody leads before a write");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Client::connect(
        "127.0.0.1",
        net.client_ports(0)[1],
        Some(Duration::from_secs(10)),
    )
    .unwrap();
    c.order(3, 1).expect("the write is placed");
    c.close();
    assert!(
        wait_until(|| report(ports[1]).is_some_and(|r| r.role == Role::Primary)),
        "the server that took the first write leads: {:?}",
        net.statuses()
    );
}

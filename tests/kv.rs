//! Protocol v2 end to end on clusters inside the test process: the
//! semantics of every operation (checked on every server once replicated),
//! create racing create, compare-and-set on a stale version, a thousand
//! requests in flight on one connection, size limits and --max-memory.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{in_process_cluster, in_process_cluster_with, wait_until};
use factory::kv::{KvClient, KvReply, NO_VERSION};
use factory::server::Server;
use factory::wire::kv::{KvBody, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, KV_TAG};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

fn connect(server: &Server) -> KvClient {
    KvClient::connect(server.local_addr(), TIMEOUT).expect("connect v2")
}

/// Every server of `servers` answers `key` with `expected` (once the
/// commit point reached it).
fn everywhere(servers: &[Server], key: &[u8], expected: Option<(u64, Vec<u8>)>) {
    for s in servers {
        let mut c = connect(s);
        assert!(
            wait_until(|| c.get(key).unwrap() == expected),
            "server {} answers {key:?} with {:?}, expected {expected:?}",
            s.factory_id(),
            c.get(key).unwrap()
        );
    }
}

#[test]
fn every_operation_on_three_servers() {
    let servers = in_process_cluster(3);
    let mut c = connect(&servers[0]);
    assert_eq!(c.get(b"k").unwrap(), None);
    let v1 = c.put(b"k", b"one").unwrap();
    assert_eq!(c.get(b"k").unwrap(), Some((v1, b"one".to_vec())));
    // put overwrites; versions are log indexes, so they grow.
    let v2 = c.put(b"k", b"two").unwrap();
    assert!(v2 > v1);
    // create only when absent: the existing version is reported.
    assert_eq!(c.create(b"k", b"x").unwrap(), KvReply::Exists(v2));
    let Ok(KvReply::Ok(vc)) = c.create(b"new", b"fresh") else {
        panic!("create of an absent key")
    };
    // update only when present.
    assert_eq!(c.update(b"absent", b"x").unwrap(), KvReply::NotFound);
    assert_eq!(c.get(b"absent").unwrap(), None);
    let Ok(KvReply::Ok(v3)) = c.update(b"k", b"three") else {
        panic!("update of a present key")
    };
    // cas against the current version, a stale one, and "absent".
    let Ok(KvReply::Ok(v4)) = c.cas(b"k", v3, b"four") else {
        panic!("cas on the current version")
    };
    assert_eq!(c.cas(b"k", v3, b"stale").unwrap(), KvReply::Mismatch(v4));
    assert_eq!(
        c.cas(b"k", NO_VERSION, b"x").unwrap(),
        KvReply::Mismatch(v4)
    );
    let Ok(KvReply::Ok(_)) = c.cas(b"cas-new", NO_VERSION, b"made") else {
        panic!("cas on absent")
    };
    assert_eq!(
        c.cas(b"never", 5, b"x").unwrap(),
        KvReply::Mismatch(NO_VERSION)
    );
    // delete, then it is gone; a second delete finds nothing.
    assert!(matches!(c.delete(b"new").unwrap(), KvReply::Ok(_)));
    assert_eq!(c.delete(b"new").unwrap(), KvReply::NotFound);
    assert_eq!(c.get(b"new").unwrap(), None);
    assert!(vc > 0);
    // Binary keys and values, empty ones included.
    let binary = [0u8, 255, 10, 0];
    let vb = c.put(&binary, &[]).unwrap();
    let ve = c.put(b"", &binary).unwrap();
    assert_eq!(c.get(&binary).unwrap(), Some((vb, Vec::new())));
    assert_eq!(c.get(b"").unwrap(), Some((ve, binary.to_vec())));
    // scan: byte order from the start key, limit and `more`.
    let (items, more) = c.scan(b"", 10).unwrap();
    let keys: Vec<&[u8]> = items.iter().map(|i| i.key.as_slice()).collect();
    assert_eq!(keys, [&b""[..], &binary[..], b"cas-new", b"k"]);
    assert!(!more);
    let (items, more) = c.scan(b"c", 1).unwrap();
    assert_eq!((items[0].key.as_slice(), more), (&b"cas-new"[..], true));
    assert_eq!(items[0].value, b"made");
    // Every server holds the same values at the same versions.
    everywhere(&servers, b"k", Some((v4, b"four".to_vec())));
    everywhere(&servers, b"new", None);
    everywhere(&servers, &binary, Some((vb, Vec::new())));
    // v1 customers live in the same cluster, on the same log.
    let mut v1 =
        factory::client::Client::connect("127.0.0.1", servers[0].local_addr().port(), None)
            .unwrap();
    v1.order(3, 33).unwrap();
    assert_eq!(v1.read(3).unwrap().last_order, 33);
    assert!(c.put(b"after-v1", b"x").unwrap() > v4);
    for s in servers {
        s.stop();
    }
}

#[test]
fn of_two_creates_racing_exactly_one_wins() {
    let servers = in_process_cluster(3);
    let keys = 100;
    let start = Arc::new(Barrier::new(2));
    let racers: Vec<_> = (0..2)
        .map(|who| {
            let mut c = connect(&servers[0]);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                (0..keys)
                    .map(|k| {
                        let key = format!("race-{k}").into_bytes();
                        c.create(&key, format!("by {who}").as_bytes()).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<KvReply>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut c = connect(&servers[0]);
    for (k, (&a, &b)) in results[0].iter().zip(&results[1]).enumerate() {
        let (winner, version) = match (a, b) {
            (KvReply::Ok(v), KvReply::Exists(e)) if e == v => (0, v),
            (KvReply::Exists(e), KvReply::Ok(v)) if e == v => (1, v),
            other => panic!("key {k}: {other:?}, expected exactly one Ok"),
        };
        let stored = c.get(format!("race-{k}").as_bytes()).unwrap();
        assert_eq!(stored, Some((version, format!("by {winner}").into_bytes())));
    }
    for s in servers {
        s.stop();
    }
}

#[test]
fn cas_on_a_stale_version_changes_nothing() {
    let servers = in_process_cluster(3);
    let mut a = connect(&servers[0]);
    let mut b = connect(&servers[0]);
    let seen = a.put(b"counter", b"0").unwrap();
    // b moves the key on; a's compare-and-set against what it saw fails.
    let Ok(KvReply::Ok(now)) = b.cas(b"counter", seen, b"1") else {
        panic!("b's cas")
    };
    assert_eq!(
        a.cas(b"counter", seen, b"lost").unwrap(),
        KvReply::Mismatch(now)
    );
    assert_eq!(a.get(b"counter").unwrap(), Some((now, b"1".to_vec())));
    everywhere(&servers, b"counter", Some((now, b"1".to_vec())));
    for s in servers {
        s.stop();
    }
}

fn raw_connect(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(TIMEOUT).unwrap();
    s.write_all(&KV_TAG).unwrap();
    s
}

fn read_answer(s: &mut TcpStream) -> KvResponse {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let mut buf = vec![0; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut buf).unwrap();
    KvResponse::decode(&buf, &KvLimits::default()).unwrap()
}

#[test]
fn a_thousand_requests_in_flight_on_one_connection_are_answered_by_id() {
    let servers = in_process_cluster(3);
    let mut s = raw_connect(&servers[0]);
    // Ids far apart and not in order; every request written before any
    // answer is read.
    let mut out = Vec::new();
    let ids: Vec<u64> = (0..1000u64)
        .map(|i| (i * 7919) % 1000 * 1_000_003 + 5)
        .collect();
    for (n, &id) in ids.iter().enumerate() {
        let key = format!("p{}", n % 300).into_bytes();
        let op = if n % 3 == 2 {
            KvOp::Get { key }
        } else {
            KvOp::Put {
                key,
                value: id.to_be_bytes().to_vec(),
            }
        };
        KvRequest { id, op }.encode(&mut out);
    }
    s.write_all(&out).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..ids.len() {
        let answer = read_answer(&mut s);
        assert!(
            matches!(answer.status, KvStatus::Ok | KvStatus::NotFound),
            "{answer:?}"
        );
        assert!(seen.insert(answer.id), "id {} answered twice", answer.id);
    }
    assert_eq!(seen, ids.iter().copied().collect::<HashSet<_>>());
    // The client's batch does the same through its window.
    let mut c = connect(&servers[0]);
    let ops: Vec<KvOp> = (0..1000)
        .map(|i| KvOp::Put {
            key: format!("b{i}").into_bytes(),
            value: vec![i as u8; 100],
        })
        .collect();
    let answers = c.batch(ops).unwrap();
    assert_eq!(answers.len(), 1000);
    let mut versions: Vec<u64> = answers
        .iter()
        .map(|a| match a.body {
            KvBody::Version(v) if a.status == KvStatus::Ok => v,
            _ => panic!("{a:?}"),
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 1000, "each put has its own index");
    assert_eq!(c.get(b"b999").unwrap().unwrap().1, vec![999u32 as u8; 100]);
    for s in servers {
        s.stop();
    }
}

/// Answers leave in request order even when some are sent by the
/// session's reader (known at once: a put on a backup is `not primary`)
/// and others by its writer thread (a get on a backup waits for a
/// read-index round trip): bursts of each kind, written back to back.
#[test]
fn answers_known_at_once_do_not_overtake_answers_still_to_come() {
    let servers = in_process_cluster(3);
    let mut primary = connect(&servers[0]);
    primary.put(b"k", b"v").unwrap();
    let mut backup = connect(&servers[1]);
    assert!(
        wait_until(|| matches!(backup.get(b"k"), Ok(Some(_)))),
        "the backup serves reads by read index"
    );
    // Which answers the reader sends depends on how frames gather into
    // bursts: several connections give the mix many chances.
    for _ in 0..5 {
        let mut s = raw_connect(&servers[1]);
        s.set_nodelay(true).unwrap();
        let mut id = 0u64;
        for round in 0..200 {
            let mut out = Vec::new();
            for _ in 0..1 + round % 7 {
                let key = b"k".to_vec();
                let op = if round % 2 == 0 {
                    KvOp::Get { key }
                } else {
                    KvOp::Put {
                        key,
                        value: vec![1],
                    }
                };
                KvRequest { id, op }.encode(&mut out);
                id += 1;
            }
            s.write_all(&out).unwrap();
        }
        for expected in 0..id {
            let answer = read_answer(&mut s);
            assert_eq!(answer.id, expected, "answers in request order: {answer:?}");
            let want = if answer.op == 1 {
                KvStatus::Ok
            } else {
                KvStatus::NotPrimary
            };
            assert_eq!(answer.status, want, "{answer:?}");
        }
    }
    for s in servers {
        s.stop();
    }
}

#[test]
fn oversized_keys_and_values_are_answered_too_large_by_id() {
    let servers = in_process_cluster_with(1, |c| {
        c.kv.limits = KvLimits {
            max_key: 8,
            max_value: 16,
        };
    });
    let mut s = raw_connect(&servers[0]);
    let mut out = Vec::new();
    let over = [
        KvOp::Put {
            key: vec![1; 9],
            value: vec![],
        },
        KvOp::Put {
            key: vec![1],
            value: vec![2; 17],
        },
        KvOp::Get { key: vec![1; 9] },
    ];
    for (id, op) in over.into_iter().enumerate() {
        KvRequest {
            id: id as u64 + 40,
            op,
        }
        .encode(&mut out);
    }
    KvRequest {
        id: 50,
        op: KvOp::Put {
            key: vec![1; 8],
            value: vec![2; 16],
        },
    }
    .encode(&mut out);
    s.write_all(&out).unwrap();
    for id in 40..43 {
        let a = read_answer(&mut s);
        assert_eq!((a.id, a.status), (id, KvStatus::TooLarge));
    }
    let a = read_answer(&mut s);
    assert_eq!((a.id, a.status), (50, KvStatus::Ok), "the session goes on");
    // A length over the largest request closes the connection.
    s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    assert!(
        common::closed_without_reply(&mut s),
        "closed without an answer"
    );
    for s in servers {
        s.stop();
    }
}

#[test]
fn writes_past_max_memory_are_refused_and_reads_served() {
    let servers = in_process_cluster_with(3, |c| c.kv.max_memory = Some(10_000));
    let mut c = connect(&servers[0]);
    let value = vec![7u8; 1000];
    let mut stored = Vec::new();
    let refused = loop {
        let key = format!("m{}", stored.len()).into_bytes();
        match c.put(&key, &value) {
            Ok(v) => stored.push((key, v)),
            Err(factory::kv::KvClientError::Status { status, .. }) => break status,
            Err(e) => panic!("{e}"),
        }
        assert!(stored.len() < 100, "never refused");
    };
    assert_eq!(refused, KvStatus::NoMemory);
    // 1000 + 2 + 64 bytes per key: nine fit under 10,000, the tenth not.
    assert_eq!(stored.len(), 9);
    for (key, version) in &stored {
        assert_eq!(c.get(key).unwrap(), Some((*version, value.clone())));
    }
    // Deleting frees room; a write that does not grow the store passes.
    assert!(matches!(c.delete(&stored[0].0).unwrap(), KvReply::Ok(_)));
    c.put(b"m-again", &value).unwrap();
    c.put(b"m-again", b"smaller").unwrap();
    for s in servers {
        s.stop();
    }
}

#[test]
fn hostile_frames_close_only_their_own_connection() {
    let servers = in_process_cluster_with(1, |c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
    });
    let mut good = connect(&servers[0]);
    good.put(b"k", b"before").unwrap();
    // Half a frame, then nothing: closed once the handshake timeout passes.
    let mut stalled = raw_connect(&servers[0]);
    let mut frame = Vec::new();
    KvRequest {
        id: 1,
        op: KvOp::Get { key: b"k".to_vec() },
    }
    .encode(&mut frame);
    stalled.write_all(&frame[..7]).unwrap();
    // A frame shorter than its header: closed at once.
    let mut short = raw_connect(&servers[0]);
    short.write_all(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    // An unknown op: answered bad request by id, then closed.
    let mut unknown = raw_connect(&servers[0]);
    let mut bad = Vec::new();
    KvRequest {
        id: 9,
        op: KvOp::Get { key: b"k".to_vec() },
    }
    .encode(&mut bad);
    bad[12] = 42;
    unknown.write_all(&bad).unwrap();
    let a = read_answer(&mut unknown);
    assert_eq!((a.id, a.op, a.status), (9, 42, KvStatus::BadRequest));
    for (name, s) in [
        ("short", &mut short),
        ("unknown op", &mut unknown),
        ("stalled", &mut stalled),
    ] {
        assert!(common::closed_without_reply(s), "{name}: closed");
    }
    // Everyone else is served as before.
    assert_eq!(good.get(b"k").unwrap().unwrap().1, b"before");
    good.put(b"k", b"after").unwrap();
    for s in servers {
        s.stop();
    }
}

#[test]
fn pipelined_reads_of_large_values_are_all_answered() {
    let servers = in_process_cluster(1);
    let mut c = connect(&servers[0]);
    let value = vec![0x5a; 1 << 20];
    let version = c.put(b"big", &value).unwrap();
    // 100 MiB of answers asked for before any is read: the server holds
    // back (its queue is bounded in bytes) and still answers every one.
    let mut s = raw_connect(&servers[0]);
    let mut out = Vec::new();
    for id in 0..100 {
        KvRequest {
            id,
            op: KvOp::Get {
                key: b"big".to_vec(),
            },
        }
        .encode(&mut out);
    }
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || s.write_all(&out).unwrap())
    };
    for id in 0..100 {
        let a = read_answer(&mut s);
        assert_eq!((a.id, a.status), (id, KvStatus::Ok));
        assert_eq!(
            a.body,
            KvBody::Value {
                version,
                value: value.clone()
            }
        );
    }
    writer.join().unwrap();
    for s in servers {
        s.stop();
    }
}

#[test]
fn a_pipeline_of_writes_cannot_pass_max_memory_either() {
    let servers = in_process_cluster_with(1, |c| c.kv.max_memory = Some(10_000));
    let mut c = connect(&servers[0]);
    // Twenty puts in one pipeline: none is applied when the later ones
    // arrive, so only what is reserved for those in flight stops them.
    let ops: Vec<KvOp> = (0..20)
        .map(|i| KvOp::Put {
            key: format!("p{i:02}").into_bytes(),
            value: vec![1; 1000],
        })
        .collect();
    let answers = c.batch(ops).unwrap();
    let ok = answers.iter().filter(|a| a.status == KvStatus::Ok).count();
    let refused = answers
        .iter()
        .filter(|a| a.status == KvStatus::NoMemory)
        .count();
    // 1000 + 3 + 64 bytes a key: nine fit under 10,000. A write applied
    // but not yet answered still holds its reservation, so a pipeline may
    // be refused early, never late.
    assert!((1..=9).contains(&ok), "{answers:?}");
    assert_eq!(ok + refused, 20);
    // Nothing stays reserved once they are answered: one at a time, the
    // store fills to exactly nine keys.
    let mut more = 0;
    while c.put(format!("q{more}").as_bytes(), &[2; 1000]).is_ok() {
        more += 1;
        assert!(more <= 9, "past the limit");
    }
    assert_eq!(ok + more, 9);
    // After a delete, one more fits, and only one.
    let (first, _) = c.scan(b"", 1).unwrap();
    assert!(matches!(c.delete(&first[0].key).unwrap(), KvReply::Ok(_)));
    c.put(b"again", &[2; 1000]).unwrap();
    assert!(c.put(b"again2", &[2; 1000]).is_err());
    for s in servers {
        s.stop();
    }
}

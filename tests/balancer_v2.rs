//! Protocol v2 through the load balancer (issue 16, v2 clients) in front
//! of server processes: every op and status relayed, `create` racing
//! `create` from two connections with one winner, a thousand pipelined
//! requests answered in order and by id (reads after writes seeing them),
//! reads spread over every server, `put`s and `get`s that never fail
//! across a primary SIGKILL and restart (every acknowledged put on every
//! server afterwards, fresh keys after each fault), and hostile frames
//! that close or are answered on their connection only.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{wait_until, ProcessCluster, DEADLINE};
use factory::balancer::{Balancer, BalancerConfig, UpstreamOptions};
use factory::kv::{KvClient, KvClientError, KvReply, NO_VERSION};
use factory::wire::kv::{KvBody, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, KV_TAG};

fn addresses(ports: &[u16]) -> Vec<String> {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
}

fn balancer_with(list: &[String], adjust: impl FnOnce(&mut BalancerConfig)) -> Balancer {
    let mut config = BalancerConfig::loopback(0, list.to_vec());
    config.upstream = UpstreamOptions {
        deadline: DEADLINE,
        attempt_timeout: Duration::from_secs(5),
        pool_per_server: 8,
    };
    adjust(&mut config);
    Balancer::start(config).expect("start the balancer")
}

fn balancer(list: &[String]) -> Balancer {
    balancer_with(list, |_| {})
}

/// A plain v2 client of the balancer's one address: every failure the
/// balancer lets through is seen. Its timeout outlasts the deadline.
fn kv_of(b: &Balancer) -> KvClient {
    let addr = format!("127.0.0.1:{}", b.local_addr().port());
    KvClient::connect(addr, Some(DEADLINE + Duration::from_secs(10))).unwrap()
}

fn status_of(e: KvClientError) -> KvStatus {
    match e {
        KvClientError::Status { status, .. } => status,
        other => panic!("a status was expected, got {other}"),
    }
}

#[test]
fn every_op_and_status_is_relayed() {
    // A small memory limit, so that `no memory` can be seen too.
    let cluster = ProcessCluster::start_with(3, |_| vec!["--max-memory".into(), "200000".into()]);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let mut kv = kv_of(&b);
    let v1 = kv.put(b"k", b"one").unwrap();
    assert_eq!(kv.get(b"k").unwrap(), Some((v1, b"one".to_vec())));
    assert_eq!(kv.get(b"absent").unwrap(), None);
    assert_eq!(kv.create(b"k", b"x").unwrap(), KvReply::Exists(v1));
    assert!(matches!(kv.create(b"new", b"n").unwrap(), KvReply::Ok(_)));
    assert_eq!(kv.update(b"absent", b"x").unwrap(), KvReply::NotFound);
    let KvReply::Ok(v2) = kv.update(b"k", b"two").unwrap() else {
        panic!("update of a present key")
    };
    assert!(v2 > v1);
    assert_eq!(kv.cas(b"k", v1, b"x").unwrap(), KvReply::Mismatch(v2));
    let KvReply::Ok(v3) = kv.cas(b"k", v2, b"three").unwrap() else {
        panic!("cas at the key's version")
    };
    assert_eq!(kv.get(b"k").unwrap(), Some((v3, b"three".to_vec())));
    assert!(matches!(
        kv.cas(b"fresh", NO_VERSION, b"f").unwrap(),
        KvReply::Ok(_)
    ));
    assert!(matches!(kv.delete(b"k").unwrap(), KvReply::Ok(_)));
    assert_eq!(kv.delete(b"k").unwrap(), KvReply::NotFound);
    assert_eq!(kv.get(b"k").unwrap(), None);
    let (items, more) = kv.scan(b"", 2).unwrap();
    let keys: Vec<&[u8]> = items.iter().map(|i| i.key.as_slice()).collect();
    assert_eq!(keys, [&b"fresh"[..], b"new"]);
    assert!(!more, "two keys, both returned");
    // Refusals are relayed as they are, and the session goes on: a key
    // over the servers' 1 KiB limit, a value over the balancer's own.
    assert_eq!(
        status_of(kv.get(&[b'x'; 2000]).unwrap_err()),
        KvStatus::TooLarge
    );
    assert_eq!(
        status_of(kv.put(b"big", &vec![0; (1 << 20) + 1]).unwrap_err()),
        KvStatus::TooLarge
    );
    assert_eq!(
        status_of(kv.put(b"big", &vec![0; 300_000]).unwrap_err()),
        KvStatus::NoMemory
    );
    assert_eq!(kv.get(b"new").unwrap().map(|(_, v)| v), Some(b"n".to_vec()));
    let m = b.metrics();
    assert_eq!(m.requests, 19, "every v2 request counted: {m:?}");
    // Less the one the balancer refused itself.
    assert_eq!(m.served.iter().sum::<u64>(), 18, "{m:?}");
    b.stop();
}

#[test]
fn of_two_racing_creates_exactly_one_wins() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("race-{i}").into_bytes()).collect();
    let start = Barrier::new(2);
    let answers: Vec<Vec<KvResponse>> = thread::scope(|s| {
        let racers: Vec<_> = (0..2u8)
            .map(|n| {
                let (keys, start, mut kv) = (&keys, &start, kv_of(&b));
                s.spawn(move || {
                    let ops = keys
                        .iter()
                        .map(|key| KvOp::Create {
                            key: key.clone(),
                            value: vec![n],
                        })
                        .collect();
                    start.wait();
                    kv.batch(ops).unwrap()
                })
            })
            .collect();
        racers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut kv = kv_of(&b);
    for (i, key) in keys.iter().enumerate() {
        let (a, c) = (&answers[0][i], &answers[1][i]);
        let won: Vec<u8> = [a, c]
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == KvStatus::Ok)
            .map(|(n, _)| n as u8)
            .collect();
        assert_eq!(won.len(), 1, "key {i}: {a:?} {c:?}");
        let (winner, loser) = if won[0] == 0 { (a, c) } else { (c, a) };
        assert_eq!(loser.status, KvStatus::Exists, "key {i}: {loser:?}");
        assert_eq!(
            loser.body, winner.body,
            "the loser sees the winner's version"
        );
        let KvBody::Version(v) = winner.body else {
            panic!("{winner:?}")
        };
        assert_eq!(kv.get(key).unwrap(), Some((v, vec![won[0]])));
    }
    b.stop();
}

/// The bytes after the length prefix of one answer, read within bounds.
fn read_answer(s: &mut TcpStream) -> KvResponse {
    let limits = KvLimits::default();
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let len = u32::from_be_bytes(prefix) as usize;
    assert!(len <= limits.max_response(), "answer of {len} bytes");
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).unwrap();
    KvResponse::decode(&buf, &limits).unwrap()
}

fn raw_v2(b: &Balancer) -> TcpStream {
    let mut s = TcpStream::connect(b.local_addr()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(&KV_TAG).unwrap();
    s
}

#[test]
fn a_thousand_pipelined_requests_are_answered_in_order_by_id() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let mut s = raw_v2(&b);
    // 500 puts, each followed by a get of its key; ids that neither start
    // at 1 nor count up, so that the balancer's own ids cannot pass.
    let requests: Vec<KvRequest> = (0..1000u64)
        .map(|i| {
            let key = format!("p{}", i / 2).into_bytes();
            let op = if i % 2 == 0 {
                KvOp::Put {
                    key,
                    value: format!("v{i}").into_bytes(),
                }
            } else {
                KvOp::Get { key }
            };
            KvRequest {
                id: (i * 7_919 + 13) ^ 0xdead_beef_0000,
                op,
            }
        })
        .collect();
    let mut out = Vec::new();
    for r in &requests {
        r.encode(&mut out);
    }
    // Everything is sent before a single answer is read.
    let mut sender = s.try_clone().unwrap();
    let answers = thread::scope(|scope| {
        let sending = scope.spawn(move || sender.write_all(&out).unwrap());
        let answers: Vec<KvResponse> = (0..requests.len()).map(|_| read_answer(&mut s)).collect();
        sending.join().unwrap();
        answers
    });
    for (i, (request, answer)) in requests.iter().zip(&answers).enumerate() {
        assert_eq!(answer.id, request.id, "answer {i} is to request {i}");
        assert_eq!(answer.op, request.op.code(), "answer {i}");
        assert_eq!(answer.status, KvStatus::Ok, "answer {i}: {answer:?}");
        if i % 2 == 1 {
            // The get sent right after its put sees it.
            let KvBody::Version(put) = answers[i - 1].body else {
                panic!("answer {}: {:?}", i - 1, answers[i - 1])
            };
            let expected = KvBody::Value {
                version: put,
                value: format!("v{}", i - 1).into_bytes(),
            };
            assert_eq!(answer.body, expected, "answer {i}");
        }
    }
    let m = b.metrics();
    assert_eq!(m.requests, 1000, "{m:?}");
    assert_eq!(m.served.iter().sum::<u64>(), 1000, "{m:?}");
    b.stop();
}

#[test]
fn reads_spread_over_every_server_that_can_answer_them() {
    let cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let mut kv = kv_of(&b);
    let keys = 30;
    for k in 0..keys {
        kv.put(format!("s{k}").as_bytes(), b"v").unwrap();
    }
    let writes = b.metrics().served;
    assert_eq!(writes.iter().sum::<u64>(), keys, "{writes:?}");
    assert_eq!(
        writes.iter().filter(|&&n| n > 0).count(),
        1,
        "writes go to the primary only: {writes:?}"
    );
    // A backup joins the readers once it reports following the primary.
    let mut reads = Vec::new();
    let spread = wait_until(|| {
        for k in 0..keys {
            let got = kv.get(format!("s{k}").as_bytes()).unwrap();
            assert_eq!(got.map(|(_, v)| v), Some(b"v".to_vec()), "key s{k}");
        }
        let served = b.metrics().served;
        reads = served.iter().zip(&writes).map(|(a, w)| a - w).collect();
        reads.iter().all(|&n| n > 0)
    });
    assert!(spread, "every server answered reads: {reads:?}");
    b.stop();
}

/// `key → (version, value)` of every acknowledged put.
type Held = HashMap<Vec<u8>, (u64, Vec<u8>)>;
type Acked = Arc<Mutex<Held>>;

/// Writers through the balancer putting fresh keys and reading each back
/// at once; any failure, or a read that does not return the acknowledged
/// put, is recorded.
struct Traffic {
    acked: Acked,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(b: &Balancer, name: &str, writers: usize) -> Traffic {
        let acked: Acked = Arc::default();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..writers)
            .map(|n| {
                let (acked, failures, stop) =
                    (Arc::clone(&acked), Arc::clone(&failures), Arc::clone(&stop));
                let mut kv = kv_of(b);
                let prefix = format!("{name}{n}-");
                thread::spawn(move || {
                    for i in 0..10_000_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let key = format!("{prefix}{i}").into_bytes();
                        let value = format!("value {i}").into_bytes();
                        let version = match kv.put(&key, &value) {
                            Ok(v) => v,
                            Err(e) => return failures.lock().unwrap().push(format!("put: {e}")),
                        };
                        acked
                            .lock()
                            .unwrap()
                            .insert(key.clone(), (version, value.clone()));
                        match kv.get(&key) {
                            Ok(Some(got)) if got == (version, value.clone()) => {}
                            other => {
                                return failures.lock().unwrap().push(format!(
                                    "get {}: {other:?} after put {version}",
                                    String::from_utf8_lossy(&key)
                                ))
                            }
                        }
                    }
                })
            })
            .collect();
        Traffic {
            acked,
            failures,
            stop,
            threads,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    fn wait_for_more(&self, more: usize) -> bool {
        let target = self.count() + more;
        wait_until(|| self.count() >= target || !self.failures().is_empty())
            && self.count() >= target
    }

    fn finish(self) -> (Held, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures)
    }
}

/// Waits until server `address` answers every acknowledged key with its
/// acknowledged version and value (a backup catching up says `not
/// primary` meanwhile).
fn assert_held_by(address: &str, acked: &HashMap<Vec<u8>, (u64, Vec<u8>)>) {
    let mut last = String::new();
    let ok = wait_until(|| {
        let Ok(mut c) = KvClient::connect(address, Some(Duration::from_secs(5))) else {
            return false;
        };
        acked.iter().all(|(key, expected)| match c.get(key) {
            Ok(Some(got)) if &got == expected => true,
            other => {
                last = format!("{}: {other:?}", String::from_utf8_lossy(key));
                false
            }
        })
    });
    assert!(ok, "server {address} lacks an acknowledged put: {last}");
}

#[test]
fn puts_and_gets_ride_through_a_primary_kill_and_restart() {
    let mut cluster = ProcessCluster::start(3);
    let list = addresses(&cluster.ports());
    let b = balancer(&list);
    let traffic = Traffic::start(&b, "before", 4);
    assert!(traffic.wait_for_more(100), "{:?}", traffic.failures());
    let primary = cluster.primary().expect("a primary");
    cluster.kill(primary);
    assert!(
        traffic.wait_for_more(100),
        "traffic resumed after the kill: {:?}",
        traffic.failures()
    );
    // Fresh keys on new connections after the fault.
    let after_kill = Traffic::start(&b, "kill", 2);
    assert!(after_kill.wait_for_more(50), "{:?}", after_kill.failures());
    cluster.restart(primary);
    assert!(
        traffic.wait_for_more(100),
        "traffic goes on after the restart: {:?}",
        traffic.failures()
    );
    let after_restart = Traffic::start(&b, "restart", 2);
    assert!(
        after_restart.wait_for_more(50),
        "{:?}",
        after_restart.failures()
    );
    let mut acked = HashMap::new();
    for t in [traffic, after_kill, after_restart] {
        let (got, failures) = t.finish();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        acked.extend(got);
    }
    let m = b.metrics();
    eprintln!(
        "balancer after the kill and restart: {m:?}, {} puts",
        acked.len()
    );
    assert!(m.retries >= 1, "the kill was crossed by retrying: {m:?}");
    assert!(m.failovers >= 1, "a new primary was found: {m:?}");
    b.stop();
    // Every server, the restarted one included, holds every acknowledged put.
    for address in &list {
        assert_held_by(address, &acked);
    }
}

/// Reads `answers` answers from `s`, then asserts the balancer closed it
/// without sending anything more.
fn answers_then_close(s: &mut TcpStream, answers: usize) -> Vec<KvResponse> {
    let got: Vec<KvResponse> = (0..answers).map(|_| read_answer(s)).collect();
    assert!(
        common::closed_without_reply(s),
        "closed after {answers} answers"
    );
    got
}

#[test]
fn hostile_frames_close_or_are_answered_on_their_connection_only() {
    let cluster = ProcessCluster::start(1);
    let list = addresses(&cluster.ports());
    let b = balancer_with(&list, |c| c.handshake_timeout = Duration::from_millis(500));
    let mut good = kv_of(&b);
    good.put(b"k", b"before").unwrap();
    let get = |id| {
        let mut out = Vec::new();
        KvRequest {
            id,
            op: KvOp::Get { key: b"k".to_vec() },
        }
        .encode(&mut out);
        out
    };
    // Oversize length prefix: closed, after the answer already due.
    let mut s = raw_v2(&b);
    s.write_all(&get(1)).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let got = answers_then_close(&mut s, 1);
    assert_eq!((got[0].id, got[0].status), (1, KvStatus::Ok));
    // A frame shorter than its header: closed.
    let mut s = raw_v2(&b);
    s.write_all(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    answers_then_close(&mut s, 0);
    // A garbage op: answered bad request by id, then closed.
    let mut s = raw_v2(&b);
    let mut garbage = get(77);
    garbage[12] = 0xee;
    s.write_all(&garbage).unwrap();
    s.write_all(&get(78)).unwrap();
    let got = answers_then_close(&mut s, 1);
    assert_eq!((got[0].id, got[0].status), (77, KvStatus::BadRequest));
    // A value length over the limit in a short frame: answered too large
    // by id, and the session goes on; nothing is allocated for it.
    let mut s = raw_v2(&b);
    let mut claim = Vec::new();
    KvRequest {
        id: 5,
        op: KvOp::Put {
            key: b"k".to_vec(),
            value: vec![],
        },
    }
    .encode(&mut claim);
    let at = claim.len() - 4;
    claim[at..].copy_from_slice(&(64u32 << 20).to_be_bytes());
    s.write_all(&claim).unwrap();
    s.write_all(&get(6)).unwrap();
    let (a, c) = (read_answer(&mut s), read_answer(&mut s));
    assert_eq!((a.id, a.status), (5, KvStatus::TooLarge));
    assert_eq!((c.id, c.status), (6, KvStatus::Ok));
    drop(s);
    // A frame begun and never finished: closed after the handshake timeout.
    let mut s = raw_v2(&b);
    s.write_all(&[0, 0, 0, 40, 0, 0]).unwrap();
    answers_then_close(&mut s, 0);
    // The client that behaved was not disturbed.
    good.put(b"k", b"after").unwrap();
    assert_eq!(
        good.get(b"k").unwrap().map(|(_, v)| v),
        Some(b"after".to_vec())
    );
    b.stop();
}

//! The balancer's read cache (issue 16.3) and reads spread over replicas
//! (issue 16.2), against in-process three-server clusters.
//!
//! Coherence: two caching balancers and a direct client write the same
//! customers while readers read through both balancers; every write and
//! read is recorded and the whole history is checked (`common::history`):
//! no read returns less than a write acknowledged before it began, by any
//! path, nor less than a read that ended before it began. Writes of one
//! customer take turns (a lock per customer in the test), so its register
//! only rises and "less than an earlier acknowledged write" is a stale
//! read, never a legitimate overwrite. Hits are required, so the test
//! cannot pass by never answering from the cache.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::history::{Ack, History, Observed};
use common::{in_process_cluster, wait_until, DEADLINE, IO_TIMEOUT};
use factory::balancer::{Balancer, BalancerConfig, BalancerMetrics};
use factory::client::status::{fetch, ServerStatus};
use factory::client::Client;

/// Customers every path writes.
const CUSTOMERS: i32 = 12;
/// Writer threads per path (two balancers and the primary directly).
const WRITERS_PER_PATH: usize = 2;
/// Readers per balancer.
const READERS_PER_BALANCER: usize = 2;
/// The run ends after this many acknowledged writes (or at the deadline).
const WRITES: u64 = 900;

fn caching_balancer(list: &[String], cache_size: usize) -> Balancer {
    let mut config = BalancerConfig::loopback(0, list.to_vec());
    config.cache_size = cache_size;
    config.upstream.deadline = DEADLINE;
    Balancer::start(config).expect("start the balancer")
}

/// Waits until the balancer's cache follows a commit stream.
fn cache_on(b: &Balancer) -> bool {
    wait_until(|| {
        matches!(
            fetch(&b.local_addr().to_string(), Duration::from_secs(2)),
            ServerStatus::Report(r) if r.balancer.as_ref().is_some_and(|v| v.cache_enabled)
        )
    })
}

fn primary_port(servers: &[factory::server::Server]) -> u16 {
    let mut port = None;
    wait_until(|| {
        port = servers
            .iter()
            .find(|s| s.status().primary_id == s.factory_id())
            .map(|s| s.local_addr().port());
        port.is_some()
    });
    port.expect("a primary")
}

struct Run {
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Run {
    fn fail(failures: &Mutex<Vec<String>>, what: String) {
        failures.lock().unwrap().push(what);
    }

    /// One writer: round the customers, each write the customer's last
    /// order plus one, holding that customer's turn while it is in flight.
    fn writer(&mut self, port: u16, turns: Arc<Vec<Mutex<i32>>>, first: i32) {
        let (history, stop, acked, failures) = (
            Arc::clone(&self.history),
            Arc::clone(&self.stop),
            Arc::clone(&self.acked),
            Arc::clone(&self.failures),
        );
        self.threads.push(thread::spawn(move || {
            let mut c = Client::connect("127.0.0.1", port, IO_TIMEOUT).expect("connect");
            let mut customer = first;
            for _ in 0..1_000_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                customer = (customer + 1) % CUSTOMERS;
                let mut last = turns[customer as usize].lock().unwrap();
                let order = *last + 1;
                history.record_sent(customer, order);
                let sent = Instant::now();
                if let Err(e) = c.order(customer, order) {
                    Run::fail(
                        &failures,
                        format!("write of {customer} through :{port}: {e}"),
                    );
                    break;
                }
                history.record_ack(Ack {
                    customer,
                    order,
                    round: 0,
                    sent,
                    acked: Instant::now(),
                });
                *last = order;
                drop(last);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            c.close();
        }));
    }

    /// One reader: round the customers through `port`, recording each read.
    fn reader(&mut self, port: u16, first: i32) {
        let (history, stop, failures) = (
            Arc::clone(&self.history),
            Arc::clone(&self.stop),
            Arc::clone(&self.failures),
        );
        self.threads.push(thread::spawn(move || {
            let mut c = Client::connect("127.0.0.1", port, IO_TIMEOUT).expect("connect");
            let mut customer = first;
            for _ in 0..10_000_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                customer = (customer + 5) % CUSTOMERS;
                let began = Instant::now();
                match c.read(customer) {
                    Ok(r) => history.record_read(Observed {
                        customer,
                        value: r.last_order,
                        port,
                        began,
                        ended: Instant::now(),
                    }),
                    Err(e) => {
                        Run::fail(
                            &failures,
                            format!("read of {customer} through :{port}: {e}"),
                        );
                        break;
                    }
                }
            }
            c.close();
        }));
    }

    fn finish(self) -> (Arc<History>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a test thread panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.history, failures)
    }
}

fn describe(name: &str, m: &BalancerMetrics) -> String {
    format!(
        "{name}: hits {} misses {} invalidations {} entries {} stream starts {} answered {:?}",
        m.cache_hits,
        m.cache_misses,
        m.cache_invalidations,
        m.cache_entries,
        m.cache_starts,
        m.served
    )
}

#[test]
fn cached_reads_through_two_balancers_see_every_write_from_every_path() {
    let servers = in_process_cluster(3);
    let ports: Vec<u16> = servers.iter().map(|s| s.local_addr().port()).collect();
    let list: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    // Something committed first, so that there is a primary to follow.
    let mut c = Client::connect("127.0.0.1", ports[0], IO_TIMEOUT).unwrap();
    c.order(CUSTOMERS + 1, 0).unwrap();
    c.close();
    let primary = primary_port(&servers);
    let a = caching_balancer(&list, 64);
    let b = caching_balancer(&list, 64);
    assert!(
        cache_on(&a) && cache_on(&b),
        "both caches follow the primary"
    );
    let mut run = Run {
        history: Arc::new(History::new()),
        stop: Arc::default(),
        acked: Arc::default(),
        failures: Arc::default(),
        threads: Vec::new(),
    };
    let turns: Arc<Vec<Mutex<i32>>> = Arc::new((0..CUSTOMERS).map(|_| Mutex::new(-1)).collect());
    let (pa, pb) = (a.local_addr().port(), b.local_addr().port());
    let mut first = 0;
    for port in [pa, pb, primary] {
        for _ in 0..WRITERS_PER_PATH {
            run.writer(port, Arc::clone(&turns), first);
            first += 4;
        }
    }
    for port in [pa, pb] {
        for r in 0..READERS_PER_BALANCER {
            run.reader(port, r as i32 * 3);
        }
    }
    let acked = Arc::clone(&run.acked);
    let failures = Arc::clone(&run.failures);
    let done = wait_until(|| {
        acked.load(Ordering::SeqCst) >= WRITES || !failures.lock().unwrap().is_empty()
    });
    let (history, failures) = run.finish();
    let (ma, mb) = (a.metrics(), b.metrics());
    eprintln!(
        "{} writes, {} reads; {}; {}",
        history.ack_count(),
        history.reads().len(),
        describe("balancer a", &ma),
        describe("balancer b", &mb)
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        done,
        "only {} writes acknowledged in time",
        history.ack_count()
    );
    if let Err(problems) = history.check_reads() {
        panic!("stale reads through the cache:\n{problems}");
    }
    for (name, m) in [("a", &ma), ("b", &mb)] {
        assert!(
            m.cache_hits > 0,
            "balancer {name} answered no read from its cache: {m:?}"
        );
        assert!(
            m.cache_invalidations > 0,
            "balancer {name} saw no commit change a cached record: {m:?}"
        );
    }
    a.stop();
    b.stop();
    if let Err(problems) = history.check_writes_on(&ports) {
        panic!("{problems}");
    }
}

/// A server that takes v1 client sessions and answers every read with
/// `BOGUS`, and closes a status request unanswered, as an original server
/// does: it could not answer a read under G6.
struct Original {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

const BOGUS: i32 = 999_999;

impl Original {
    fn start() -> Original {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut sessions = Vec::new();
            for conn in listener.incoming().take(10_000) {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                sessions.push(thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(DEADLINE));
                    let mut tag = [0u8; 8];
                    if s.read_exact(&mut tag).is_err() || !tag.starts_with(b"CLIENT") {
                        return;
                    }
                    let mut req = [0u8; 12];
                    while s.read_exact(&mut req).is_ok() {
                        // A read (type 2) of any customer: BOGUS.
                        let mut reply = [0u8; 8];
                        reply[..4].copy_from_slice(&req[..4]);
                        reply[4..].copy_from_slice(&BOGUS.to_be_bytes());
                        if s.write_all(&reply).is_err() {
                            return;
                        }
                    }
                }));
            }
            for t in sessions {
                let _ = t.join();
            }
        });
        Original {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Original {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn reads_spread_over_every_server_that_can_answer_them() {
    let servers = in_process_cluster(3);
    let original = Original::start();
    let mut list: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.local_addr().port()))
        .collect();
    list.push(format!("127.0.0.1:{}", original.port));
    let b = caching_balancer(&list, 0);
    let mut c = Client::connect("127.0.0.1", b.local_addr().port(), IO_TIMEOUT).unwrap();
    let customers = 30;
    for customer in 0..customers {
        c.order(customer, customer + 100).unwrap();
    }
    let writes = b.metrics().served;
    let primary = primary_port(&servers);
    let p = list
        .iter()
        .position(|a| a.ends_with(&format!(":{primary}")))
        .unwrap();
    assert_eq!(
        writes[p], customers as u64,
        "writes go to the primary: {writes:?}"
    );
    for round in 0..4 {
        for customer in 0..customers {
            let got = c.read(customer).unwrap().last_order;
            assert_eq!(got, customer + 100, "round {round}, customer {customer}");
        }
    }
    c.close();
    let m = b.metrics();
    let reads: Vec<u64> = m.served.iter().zip(&writes).map(|(a, w)| a - w).collect();
    eprintln!("reads answered per server: {reads:?} ({m:?})");
    assert_eq!(reads.iter().sum::<u64>(), 4 * customers as u64);
    for (i, &n) in reads[..3].iter().enumerate() {
        assert!(n > 0, "server {i} answered no read: {reads:?}");
    }
    assert_eq!(reads[3], 0, "the original server answered reads: {reads:?}");
    assert_eq!(m.cache_hits + m.cache_misses, 0, "no cache: {m:?}");
    b.stop();
    drop(original);
}

#[test]
fn cache_size_zero_answers_every_read_from_a_server() {
    let servers = in_process_cluster(1);
    let list = vec![format!("127.0.0.1:{}", servers[0].local_addr().port())];
    let b = caching_balancer(&list, 0);
    let mut c = Client::connect("127.0.0.1", b.local_addr().port(), IO_TIMEOUT).unwrap();
    c.order(1, 5).unwrap();
    for _ in 0..20 {
        assert_eq!(c.read(1).unwrap().last_order, 5);
    }
    c.close();
    let m = b.metrics();
    assert_eq!(m.served, [21]);
    assert_eq!((m.cache_hits, m.cache_misses, m.cache_entries), (0, 0, 0));
    let ServerStatus::Report(r) = fetch(&b.local_addr().to_string(), Duration::from_secs(5)) else {
        panic!("no status");
    };
    assert!(!r.balancer.unwrap().cache_enabled);
    b.stop();
}

#[test]
fn the_cache_holds_at_most_cache_size_records() {
    let servers = in_process_cluster(1);
    let list = vec![format!("127.0.0.1:{}", servers[0].local_addr().port())];
    let mut direct =
        Client::connect("127.0.0.1", servers[0].local_addr().port(), IO_TIMEOUT).unwrap();
    direct.order(100, 1).unwrap();
    let b = caching_balancer(&list, 4);
    assert!(cache_on(&b));
    let mut c = Client::connect("127.0.0.1", b.local_addr().port(), IO_TIMEOUT).unwrap();
    for customer in 0..10 {
        assert_eq!(c.read(customer).unwrap().last_order, -1);
        assert!(b.metrics().cache_entries <= 4);
    }
    assert_eq!(b.metrics().cache_entries, 4);
    // 6..9 are held (the most recently used), 0..5 were evicted.
    let before = b.metrics();
    for customer in 6..10 {
        c.read(customer).unwrap();
    }
    let after = b.metrics();
    assert_eq!(after.cache_hits - before.cache_hits, 4, "{after:?}");
    c.read(0).unwrap();
    assert_eq!(
        b.metrics().cache_misses - after.cache_misses,
        1,
        "0 was evicted"
    );
    // A write by another path reaches the cached record through the stream.
    direct.order(7, 42).unwrap();
    assert_eq!(c.read(7).unwrap().last_order, 42);
    direct.close();
    c.close();
    b.stop();
}

/// The observer endpoint treats its input as hostile: a huge length, a
/// wrong first frame or a subscription to a server that is not the primary
/// each closes that connection (after a refusal naming the primary where
/// there is one), and the server keeps serving.
#[test]
fn the_observer_endpoint_closes_what_it_cannot_serve() {
    use factory::wire::observe::{read_observe, ObserveFrame, OBSERVE_TAG};

    let servers = in_process_cluster(2);
    let port = |i: usize| servers[i].local_addr().port();
    let mut c = Client::connect("127.0.0.1", port(0), IO_TIMEOUT).unwrap();
    c.order(1, 1).unwrap();
    c.close();
    let primary = primary_port(&servers);
    let backup = if primary == port(0) { port(1) } else { port(0) };
    let open = |port: u16, bytes: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(IO_TIMEOUT).unwrap();
        s.write_all(&OBSERVE_TAG).unwrap();
        s.write_all(bytes).unwrap();
        s
    };
    let mut huge = open(primary, &[0xff, 0xff, 0xff, 0xff, 1]);
    assert!(common::closed_by_server(&mut huge));
    let mut confirm_first = Vec::new();
    ObserveFrame::Confirm { seq: 1 }.encode(&mut confirm_first);
    let mut wrong = open(primary, &confirm_first);
    assert!(common::closed_by_server(&mut wrong));
    let mut subscribe = Vec::new();
    ObserveFrame::Subscribe { applied: None }.encode(&mut subscribe);
    let mut to_backup = open(backup, &subscribe);
    let mut scratch = Vec::new();
    let primary_id = servers
        .iter()
        .find(|s| s.local_addr().port() == primary)
        .unwrap()
        .factory_id();
    assert_eq!(
        read_observe(&mut to_backup, &mut scratch),
        Ok(ObserveFrame::Refused {
            primary: primary_id
        })
    );
    assert!(common::closed_by_server(&mut to_backup));
    // The primary streams to a well-behaved observer, and still serves.
    let mut good = open(primary, &subscribe);
    let start = read_observe(&mut good, &mut scratch).unwrap();
    assert!(
        matches!(start, ObserveFrame::Start { reset: true, applied, .. } if applied >= 0),
        "{start:?}"
    );
    let mut c = Client::connect("127.0.0.1", primary, IO_TIMEOUT).unwrap();
    c.order(2, 7).unwrap();
    c.close();
    let mut seen = Vec::new();
    let end = Instant::now() + DEADLINE;
    while !seen.contains(&(2, 7)) && Instant::now() < end {
        if let ObserveFrame::Entries { entries, .. } =
            read_observe(&mut good, &mut scratch).unwrap()
        {
            for e in entries {
                if let factory::wire::Op::Set {
                    customer_id,
                    order_number,
                } = e.op
                {
                    seen.push((customer_id, order_number));
                }
            }
        }
    }
    assert!(seen.contains(&(2, 7)), "the commit was streamed: {seen:?}");
    let mut confirm = Vec::new();
    ObserveFrame::Confirm { seq: 9 }.encode(&mut confirm);
    good.write_all(&confirm).unwrap();
    let mut confirmed = None;
    while confirmed.is_none() && Instant::now() < end {
        if let ObserveFrame::Confirmed { seq, commit } =
            read_observe(&mut good, &mut scratch).unwrap()
        {
            confirmed = Some((seq, commit));
        }
    }
    let (seq, commit) = confirmed.expect("a confirmation");
    assert_eq!(seq, 9);
    assert!(commit >= 1, "{commit}");
}

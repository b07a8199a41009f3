//! G6 for protocol v2, with real server processes: v2 readers on every
//! server (`get` one at a time, and pipelined batches of `get`s and a
//! `scan`) while v2 writers put rising numbers into their keys, through a
//! primary paused (SIGSTOP) and resumed (SIGCONT), and through a primary
//! killed (SIGKILL) and restarted. Every read is checked against the
//! history (`common::history`): none returns less than a put
//! acknowledged before the read began, nor less than an earlier completed
//! read of the same key; afterwards every server holds every acknowledged
//! put. A read may be refused (`not primary`, `unavailable`, a timeout);
//! it may never be older.
//!
//! Each key is a register written by one writer with rising numbers (the
//! value is the number in decimal; `not found` reads as -1, below the
//! first number 0), and writers move to fresh keys after each fault, as
//! the v1 workload does.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::history::{Ack, History, Observed};
use common::net::signal;
use common::{wait_until, ProcessCluster};
use factory::client::status::{fetch_all, ServerStatus};
use factory::kv::{KvClient, KvClientError};
use factory::wire::kv::{KvBody, KvOp, KvStatus};
use factory::wire::status::{Lease, Role, StatusReport};

const WRITERS: i32 = 6;

/// Client timeout: longer than the pauses here, so that reads sent to a
/// stopped server are answered after it resumes, and checked.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

fn key_of(customer: i32) -> Vec<u8> {
    format!("c{customer:08}").into_bytes()
}

fn customer_of_key(key: &[u8]) -> Option<i32> {
    std::str::from_utf8(key.strip_prefix(b"c")?)
        .ok()?
        .parse()
        .ok()
}

fn customer_of(round: u32, writer: i32) -> i32 {
    1000 + round as i32 * WRITERS + writer
}

/// A value as the number it holds (-1 when absent).
fn number(value: Option<&[u8]>) -> i32 {
    value.map_or(-1, |v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(i32::MIN)
    })
}

fn connect(port: u16) -> Option<KvClient> {
    KvClient::connect(format!("127.0.0.1:{port}"), Some(CLIENT_TIMEOUT)).ok()
}

/// The server a `not primary` answer names, if it is one of `ports`.
fn named(ports: &[u16], err: &KvClientError) -> Option<usize> {
    match err {
        KvClientError::Status {
            status: KvStatus::NotPrimary,
            text,
            ..
        } if !text.is_empty() => ports.iter().position(|p| text.ends_with(&format!(":{p}"))),
        _ => None,
    }
}

/// v2 writers and readers over a cluster, recording into one history.
struct KvWorkload {
    history: Arc<History>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
struct Ctx {
    history: Arc<History>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    ports: Vec<u16>,
}

impl KvWorkload {
    /// `WRITERS` writers; on every server two readers of single `get`s
    /// and one of pipelined batches.
    fn start(ports: &[u16]) -> KvWorkload {
        let ctx = Ctx {
            history: Arc::new(History::new()),
            round: Arc::new(AtomicU32::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            ports: ports.to_vec(),
        };
        let mut threads = Vec::new();
        for w in 0..WRITERS {
            let ctx = ctx.clone();
            threads.push(thread::spawn(move || write_loop(&ctx, w)));
        }
        for &port in ports {
            for r in 0..2 {
                let ctx = ctx.clone();
                threads.push(thread::spawn(move || get_loop(&ctx, port, r)));
            }
            let ctx = ctx.clone();
            threads.push(thread::spawn(move || batch_loop(&ctx, port)));
        }
        KvWorkload {
            history: ctx.history,
            round: ctx.round,
            stop: ctx.stop,
            threads,
        }
    }

    /// Every writer moves to a fresh key.
    fn fault(&self) {
        self.round.fetch_add(1, Ordering::SeqCst);
    }

    fn wait_for_more(&self, more: usize) -> bool {
        let target = self.history.ack_count() + more;
        wait_until(|| self.history.ack_count() >= target)
    }

    fn finish(self) -> Arc<History> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.history
    }
}

/// Bounded: at most this many attempts per thread over the whole test.
const MAX_ATTEMPTS: usize = 1_000_000;

fn write_loop(ctx: &Ctx, writer: i32) {
    let mut at = writer as usize % ctx.ports.len();
    let mut client: Option<KvClient> = None;
    let mut round = ctx.round.load(Ordering::SeqCst);
    let mut order = 0;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = ctx.round.load(Ordering::SeqCst);
        if now != round {
            (round, order) = (now, 0);
        }
        let customer = customer_of(round, writer);
        if client.is_none() {
            client = connect(ctx.ports[at]);
        }
        let Some(c) = client.as_mut() else {
            at = (at + 1) % ctx.ports.len();
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        ctx.history.record_sent(customer, order);
        let sent = Instant::now();
        match c.put(&key_of(customer), order.to_string().as_bytes()) {
            Ok(_) => {
                ctx.history.record_ack(Ack {
                    customer,
                    order,
                    round,
                    sent,
                    acked: Instant::now(),
                });
                order += 1;
            }
            Err(e) => {
                // Sent again (to the named primary or the next server):
                // an unacknowledged put may or may not apply.
                at = named(&ctx.ports, &e).unwrap_or((at + 1) % ctx.ports.len());
                client = None;
                if named(&ctx.ports, &e).is_none() {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The keys of the current and the previous round (the previous one's
/// last puts race the fault).
fn keys_now(ctx: &Ctx, n: usize) -> i32 {
    let round = ctx.round.load(Ordering::SeqCst);
    let round = if n.is_multiple_of(3) {
        round.saturating_sub(1)
    } else {
        round
    };
    customer_of(round, (n / 3) as i32 % WRITERS)
}

/// Single `get`s on one server, as fast as answers come.
fn get_loop(ctx: &Ctx, port: u16, reader: usize) {
    let mut client: Option<KvClient> = None;
    for n in reader..reader + MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        if client.is_none() {
            client = connect(port);
        }
        let Some(c) = client.as_mut() else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let customer = keys_now(ctx, n);
        let began = Instant::now();
        match c.get(&key_of(customer)) {
            Ok(found) => ctx.history.record_read(Observed {
                customer,
                value: number(found.as_ref().map(|(_, v)| v.as_slice())),
                port,
                began,
                ended: Instant::now(),
            }),
            Err(KvClientError::Status { .. }) => thread::sleep(Duration::from_millis(5)),
            Err(_) => {
                client = None;
                thread::sleep(Duration::from_millis(20));
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Pipelined reads on one server: a `get` of every key of the current
/// round and of the previous one, and a `scan` of the current round's
/// keys, sent together. Each answer counts as a read that began when the
/// batch was sent and ended when the whole batch was answered.
fn batch_loop(ctx: &Ctx, port: u16) {
    let mut client: Option<KvClient> = None;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        if client.is_none() {
            client = connect(port);
        }
        let Some(c) = client.as_mut() else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let round = ctx.round.load(Ordering::SeqCst);
        let mut customers = Vec::new();
        for r in [round.saturating_sub(1), round] {
            customers.extend((0..WRITERS).map(|w| customer_of(r, w)));
        }
        let mut ops: Vec<KvOp> = customers
            .iter()
            .map(|&c| KvOp::Get { key: key_of(c) })
            .collect();
        ops.push(KvOp::Scan {
            start: key_of(customer_of(round, 0)),
            limit: WRITERS as u32,
        });
        let began = Instant::now();
        let answers = match c.batch(ops) {
            Ok(answers) => answers,
            Err(_) => {
                client = None;
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let ended = Instant::now();
        let record = |customer, value| {
            ctx.history.record_read(Observed {
                customer,
                value,
                port,
                began,
                ended,
            })
        };
        for (answer, &customer) in answers.iter().zip(&customers) {
            match (&answer.status, &answer.body) {
                (KvStatus::Ok, KvBody::Value { value, .. }) => {
                    record(customer, number(Some(value)))
                }
                (KvStatus::NotFound, _) => record(customer, -1),
                _ => {}
            }
        }
        if let Some(KvBody::Items { items, .. }) = answers
            .last()
            .filter(|a| a.status == KvStatus::Ok)
            .map(|a| &a.body)
        {
            for item in items {
                if let Some(customer) = customer_of_key(&item.key) {
                    record(customer, number(Some(&item.value)));
                }
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Every server answers every key's last acknowledged number (or a later
/// one that was sent), and they agree: `Err` names what is not so.
fn check_puts_on(history: &History, ports: &[u16]) -> Result<(), String> {
    let mut problems = Vec::new();
    let last: HashMap<i32, Ack> = history.last_acks();
    for &port in ports {
        let mut c = connect(port).ok_or(format!("cannot connect to :{port}"))?;
        for ack in last.values() {
            match c.get(&key_of(ack.customer)) {
                Ok(found) => {
                    let v = number(found.as_ref().map(|(_, v)| v.as_slice()));
                    if v < ack.order {
                        problems.push(format!(
                            "LOST: key {} (round {}): {} acknowledged, :{port} answers {v}",
                            ack.customer, ack.round, ack.order
                        ));
                    }
                }
                Err(e) => return Err(format!(":{port}: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(40);
        Err(problems.join("\n"))
    }
}

/// Checks the history: every put on every server (once they converge),
/// every read against the puts and reads before it; readers read every
/// server.
fn check(cluster: &ProcessCluster, history: &History) {
    let ports = cluster.ports();
    let mut last = Ok(());
    if !wait_until(|| {
        last = check_puts_on(history, &ports);
        last.is_ok()
    }) {
        cluster.dump();
        panic!(
            "acknowledged puts missing ({} acks):\n{}",
            history.ack_count(),
            last.unwrap_err()
        );
    }
    if let Err(e) = history.check_reads() {
        cluster.dump();
        panic!(
            "G6: v2 reads against the history ({} reads):\n{e}",
            history.reads().len()
        );
    }
    for &port in &ports {
        let n = history.reads().iter().filter(|r| r.port == port).count();
        assert!(n > 50, "readers read server :{port} too ({n} reads)");
    }
    eprintln!(
        "{} acknowledged puts, {} v2 reads checked",
        history.ack_count(),
        history.reads().len()
    );
}

fn flowing(cluster: &ProcessCluster, load: &KvWorkload, more: usize, what: &str) {
    if !load.wait_for_more(more) {
        cluster.dump();
        panic!("{what}: {more} more puts were not acknowledged in time");
    }
}

/// The primary every server's status names, once they agree and it
/// holds its lease.
fn the_primary(cluster: &ProcessCluster, what: &str) -> usize {
    let list: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut found = None;
    let agreed = wait_until(|| {
        let rows: Option<Vec<StatusReport>> = fetch_all(&list, Duration::from_millis(500))
            .into_iter()
            .map(|s| match s {
                ServerStatus::Report(r) => Some(r),
                _ => None,
            })
            .collect();
        let Some(rows) = rows else { return false };
        let p = rows[0].primary_id;
        found = rows
            .iter()
            .all(|r| r.primary_id == p)
            .then(|| rows.iter().find(|r| r.factory_id == p))
            .flatten()
            .filter(|r| r.role == Role::Primary && r.lease == Lease::Held)
            .map(|r| r.factory_id as usize);
        found.is_some()
    });
    if !agreed {
        cluster.dump();
        panic!("{what}: the servers do not agree on a primary");
    }
    found.unwrap()
}

/// G6 with a paused primary, twice: while it is stopped the others elect
/// a new primary and acknowledge newer puts; reads sent to the stopped
/// one wait in its socket and are answered after SIGCONT, when its lease
/// has long ended: it must answer none of them (nor any later read) from
/// its older records, as primary or as a backup.
#[test]
fn g6_v2_reads_on_every_server_through_a_paused_primary() {
    let cluster = ProcessCluster::start(3);
    let load = KvWorkload::start(&cluster.ports());
    flowing(&cluster, &load, 200, "start");
    for round in 0..2 {
        let old = the_primary(&cluster, "before the pause");
        flowing(&cluster, &load, 100, "before the pause");
        signal(cluster.servers[old].pid(), "-STOP");
        load.fault();
        flowing(&cluster, &load, 200, "while the primary is stopped");
        signal(cluster.servers[old].pid(), "-CONT");
        load.fault();
        flowing(&cluster, &load, 200, "after SIGCONT");
        let new = the_primary(&cluster, "after SIGCONT");
        assert_ne!(new, old, "round {round}: a new primary was elected");
    }
    let history = load.finish();
    check(&cluster, &history);
}

/// G6 with a killed primary, twice: the others elect a new one; the old
/// one restarts empty (no data directory) and is read at once, while it
/// knows no primary, while it catches up, and once in sync again: it must
/// never answer older state.
#[test]
fn g6_v2_reads_on_every_server_through_a_killed_and_restarted_primary() {
    let mut cluster = ProcessCluster::start(3);
    let load = KvWorkload::start(&cluster.ports());
    flowing(&cluster, &load, 200, "start");
    for round in 0..2 {
        let old = the_primary(&cluster, "before the kill");
        flowing(&cluster, &load, 100, "before the kill");
        cluster.kill(old);
        load.fault();
        flowing(&cluster, &load, 200, "after the kill");
        cluster.restart(old);
        load.fault();
        if !cluster.wait_in_sync(old) {
            cluster.dump();
            panic!("round {round}: server {old} was not re-admitted");
        }
        flowing(&cluster, &load, 200, "after the rejoin");
    }
    let history = load.finish();
    check(&cluster, &history);
}

//! The history of a fault test and the checks run on it: writers and
//! readers that record every acknowledged write and every completed read
//! (customer, value, when it was sent and when it was answered), and,
//! afterwards, a check of every acknowledged write on every server and of
//! every read against the writes and reads that finished before it began.
//!
//! Each customer is a register written by one writer with rising order
//! numbers, so a later write hides the loss of an earlier one. That is why
//! [`Workload::fault`] moves every writer to a fresh customer: the
//! customers of a round are not written after its next fault, and a write
//! that fault loses stays visible.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use factory::client::Client;

use super::{wait_until, IO_TIMEOUT};

/// One acknowledged write.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub customer: i32,
    pub order: i32,
    /// The fault round it was sent in (0: before the first fault).
    pub round: u32,
    pub sent: Instant,
    pub acked: Instant,
}

/// One completed read.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    pub customer: i32,
    pub value: i32,
    pub port: u16,
    pub began: Instant,
    pub ended: Instant,
}

/// Everything the writers and readers saw, in the order it happened.
pub struct History {
    start: Instant,
    acks: Mutex<Vec<Ack>>,
    reads: Mutex<Vec<Observed>>,
    /// Per customer, the highest order ever sent (acknowledged or not).
    sent: Mutex<HashMap<i32, i32>>,
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            acks: Mutex::default(),
            reads: Mutex::default(),
            sent: Mutex::default(),
        }
    }

    pub fn record_sent(&self, customer: i32, order: i32) {
        let mut sent = self.sent.lock().unwrap();
        let top = sent.entry(customer).or_insert(order);
        *top = (*top).max(order);
    }

    pub fn record_ack(&self, ack: Ack) {
        self.acks.lock().unwrap().push(ack);
    }

    pub fn record_read(&self, read: Observed) {
        self.reads.lock().unwrap().push(read);
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    pub fn reads(&self) -> Vec<Observed> {
        self.reads.lock().unwrap().clone()
    }

    pub fn ack_count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Milliseconds since the history began, for messages.
    fn ms(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.start).as_millis()
    }

    /// The last acknowledged write of every customer.
    pub fn last_acks(&self) -> HashMap<i32, Ack> {
        let mut last: HashMap<i32, Ack> = HashMap::new();
        for ack in self.acks() {
            let e = last.entry(ack.customer).or_insert(ack);
            if ack.order > e.order {
                *e = ack;
            }
        }
        last
    }

    /// Reads every customer that has an acknowledged write from each of
    /// `ports`: `Err` names every write a server lacks (it returns less
    /// than the customer's last acknowledged order), every value no writer
    /// sent, every server that cannot be read, and every customer the
    /// servers disagree on.
    pub fn check_writes_on(&self, ports: &[u16]) -> Result<(), String> {
        let sent = self.sent.lock().unwrap().clone();
        let mut problems = Vec::new();
        let mut last: Vec<Ack> = self.last_acks().into_values().collect();
        last.sort_by_key(|a| a.customer);
        let mut clients: Vec<Option<Client>> = ports.iter().map(|_| None).collect();
        for ack in &last {
            let mut values = Vec::new();
            for (i, &port) in ports.iter().enumerate() {
                match read_with(&mut clients[i], port, ack.customer) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        problems.push(format!("server :{port} cannot be read: {e}"));
                        continue;
                    }
                }
                let v = *values.last().unwrap();
                if v < ack.order {
                    problems.push(format!(
                        "LOST: customer {} (round {}): order {} acknowledged at {} ms, server :{port} returns {v}",
                        ack.customer,
                        ack.round,
                        ack.order,
                        self.ms(ack.acked)
                    ));
                }
                if v > sent.get(&ack.customer).copied().unwrap_or(-1) {
                    problems.push(format!(
                        "customer {}: server :{port} returns {v}, never sent",
                        ack.customer
                    ));
                }
            }
            if values.windows(2).any(|w| w[0] != w[1]) {
                problems.push(format!(
                    "customer {}: servers {ports:?} disagree: {values:?}",
                    ack.customer
                ));
            }
        }
        for c in clients.into_iter().flatten() {
            c.close();
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// Every read against the history: none may return less than a write
    /// of its customer acknowledged before it began, nor less than a read
    /// of its customer that ended before it began.
    pub fn check_reads(&self) -> Result<(), String> {
        let mut acks: HashMap<i32, Vec<Ack>> = HashMap::new();
        for a in self.acks() {
            acks.entry(a.customer).or_default().push(a);
        }
        let mut reads: HashMap<i32, Vec<Observed>> = HashMap::new();
        for r in self.reads() {
            reads.entry(r.customer).or_default().push(r);
        }
        let mut problems = Vec::new();
        for (customer, mut rs) in reads {
            let written = acks.remove(&customer).unwrap_or_default();
            rs.sort_by_key(|r| r.ended);
            for r in &rs {
                if let Some(a) = written
                    .iter()
                    .filter(|a| a.acked < r.began)
                    .max_by_key(|a| a.order)
                {
                    if r.value < a.order {
                        problems.push(format!(
                            "customer {customer}: read at {}-{} ms on :{} returned {}, but order {} was acknowledged at {} ms",
                            self.ms(r.began),
                            self.ms(r.ended),
                            r.port,
                            r.value,
                            a.order,
                            self.ms(a.acked)
                        ));
                    }
                }
                if let Some(earlier) = rs
                    .iter()
                    .filter(|e| e.ended < r.began)
                    .max_by_key(|e| e.value)
                {
                    if r.value < earlier.value {
                        problems.push(format!(
                            "customer {customer}: read at {}-{} ms on :{} returned {}, back in time from {} read at {} ms on :{}",
                            self.ms(r.began),
                            self.ms(r.ended),
                            r.port,
                            r.value,
                            earlier.value,
                            self.ms(earlier.ended),
                            earlier.port
                        ));
                    }
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
}

/// Reads `customer` through `slot`'s session to `port`, opening one if
/// needed; a failed session is dropped so the next call opens a new one.
fn read_with(slot: &mut Option<Client>, port: u16, customer: i32) -> Result<i32, String> {
    if slot.is_none() {
        *slot = Some(Client::connect("127.0.0.1", port, IO_TIMEOUT).map_err(|e| e.to_string())?);
    }
    let result = slot.as_mut().unwrap().read(customer);
    match result {
        Ok(r) => Ok(r.last_order),
        Err(e) => {
            *slot = None;
            Err(e.to_string())
        }
    }
}

/// Writers (one thread each, one customer at a time) and readers over a
/// cluster, all recording into one [`History`]. Writers move to another
/// server when theirs fails and to a fresh customer after every fault.
pub struct Workload {
    pub history: Arc<History>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    read_port: Arc<AtomicU32>,
    threads: Vec<JoinHandle<()>>,
}

/// Where readers read: nowhere yet, or from every server in turn.
const PAUSED: u32 = u32::MAX;
const EVERY: u32 = u32::MAX - 1;

/// Customers of round `round` for `writers` writers start here; keeps clear
/// of the small ids tests write by hand.
pub const FIRST_CUSTOMER: i32 = 10_000;

impl Workload {
    /// Starts `writers` writers and `readers` readers spread over `ports`.
    pub fn start(ports: &[u16], writers: i32, readers: i32) -> Workload {
        let history = Arc::new(History::new());
        let round = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let read_port = Arc::new(AtomicU32::new(PAUSED));
        let mut threads = Vec::new();
        for w in 0..writers {
            let ctx = Ctx {
                history: Arc::clone(&history),
                round: Arc::clone(&round),
                stop: Arc::clone(&stop),
                read_port: Arc::clone(&read_port),
                ports: ports.to_vec(),
            };
            threads.push(thread::spawn(move || write_loop(&ctx, w, writers)));
        }
        for r in 0..readers {
            let ctx = Ctx {
                history: Arc::clone(&history),
                round: Arc::clone(&round),
                stop: Arc::clone(&stop),
                read_port: Arc::clone(&read_port),
                ports: ports.to_vec(),
            };
            threads.push(thread::spawn(move || read_loop(&ctx, r, writers)));
        }
        Workload {
            history,
            round,
            stop,
            read_port,
            threads,
        }
    }

    /// Readers read only from the server at `port` from now on. They wait
    /// for this (or [`Workload::read_from_every`]) before their first read.
    pub fn read_from(&self, port: u16) {
        self.read_port.store(u32::from(port), Ordering::SeqCst);
    }

    /// Readers read from every server in turn from now on.
    pub fn read_from_every(&self) {
        self.read_port.store(EVERY, Ordering::SeqCst);
    }

    /// Marks a fault (a kill, a restart, a stop): every writer moves to a
    /// fresh customer for its next write.
    pub fn fault(&self) {
        self.round.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until `more` further writes are acknowledged.
    pub fn wait_for_more(&self, more: usize) -> bool {
        let target = self.history.ack_count() + more;
        wait_until(|| self.history.ack_count() >= target)
    }

    /// Stops every writer and reader; the history is complete afterwards.
    pub fn finish(self) -> Arc<History> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.history
    }
}

struct Ctx {
    history: Arc<History>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    read_port: Arc<AtomicU32>,
    ports: Vec<u16>,
}

fn customer_of(round: u32, writer: i32, writers: i32) -> i32 {
    FIRST_CUSTOMER + round as i32 * writers + writer
}

/// Bounded: at most this many attempts per thread over the whole test.
const MAX_ATTEMPTS: usize = 1_000_000;

fn write_loop(ctx: &Ctx, writer: i32, writers: i32) {
    let mut server = writer as usize % ctx.ports.len();
    let mut session: Option<Client> = None;
    let mut round = ctx.round.load(Ordering::SeqCst);
    let mut order = 0;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        let now = ctx.round.load(Ordering::SeqCst);
        if now != round {
            (round, order) = (now, 0);
        }
        let customer = customer_of(round, writer, writers);
        let c = match connected(&mut session, ctx.ports[server]) {
            Some(c) => c,
            None => {
                server = (server + 1) % ctx.ports.len();
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        ctx.history.record_sent(customer, order);
        let sent = Instant::now();
        match c.order(customer, order) {
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
            Err(_) => {
                // Sent again elsewhere (or as the fresh customer's first
                // order): an unacknowledged write may or may not apply.
                session = None;
                server = (server + 1) % ctx.ports.len();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Readers go round the servers (or read from the one
/// [`Workload::read_from`] names), reading the customers of the current and
/// the previous round (the previous one's last writes race the fault).
fn read_loop(ctx: &Ctx, reader: i32, writers: i32) {
    let mut sessions: Vec<Option<Client>> = ctx.ports.iter().map(|_| None).collect();
    let mut n: usize = reader as usize;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        n += 1;
        let round = ctx.round.load(Ordering::SeqCst);
        let round = if n.is_multiple_of(3) {
            round.saturating_sub(1)
        } else {
            round
        };
        let customer = customer_of(round, (n / 3) as i32 % writers, writers);
        let only = ctx.read_port.load(Ordering::SeqCst);
        if only == PAUSED {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let i = match ctx.ports.iter().position(|&p| u32::from(p) == only) {
            Some(i) => i,
            None => n % ctx.ports.len(),
        };
        let began = Instant::now();
        match read_with(&mut sessions[i], ctx.ports[i], customer) {
            Ok(value) => ctx.history.record_read(Observed {
                customer,
                value,
                port: ctx.ports[i],
                began,
                ended: Instant::now(),
            }),
            // A server down or restarting: try the next one.
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
        // Leaves the two cores to the servers and writers.
        thread::sleep(Duration::from_millis(2));
    }
}

fn connected(session: &mut Option<Client>, port: u16) -> Option<&mut Client> {
    if session.is_none() {
        *session = Client::connect("127.0.0.1", port, Some(Duration::from_secs(5))).ok();
    }
    session.as_mut()
}

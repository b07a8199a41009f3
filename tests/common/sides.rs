//! Writers and readers in client groups (one per side of a partition),
//! all recording into one [`History`], so that a read on one side is
//! checked against writes acknowledged on the other. Each writer owns its
//! customers and moves to a fresh one after every fault ([`Load::fault`]),
//! so a write lost by one fault stays visible. Besides the history, every
//! acknowledgement's group and time is kept, to check that a side kept (or
//! stopped) taking writes during a fault.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use factory::client::Client;

use super::history::{Ack, History, Observed};

/// Customers of this load start here (clear of other tests' small ids and
/// of `history::FIRST_CUSTOMER`'s range for a few hundred rounds).
const FIRST_CUSTOMER: i32 = 1_000_000;

/// How long one request may wait on one server.
const ATTEMPT: Duration = Duration::from_secs(2);

/// Bounded: most attempts per thread over the whole test.
const MAX_ATTEMPTS: usize = 2_000_000;

/// Where an acknowledgement came from.
#[derive(Clone, Copy, Debug)]
pub struct GroupAck {
    pub group: usize,
    pub sent: Instant,
    pub acked: Instant,
}

/// A running load over client groups.
pub struct Load {
    pub history: Arc<History>,
    pub group_acks: Arc<Mutex<Vec<GroupAck>>>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Ctx {
    history: Arc<History>,
    group_acks: Arc<Mutex<Vec<GroupAck>>>,
    round: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    group: usize,
    ports: Vec<u16>,
    first: i32,
}

impl Load {
    /// `groups[g]` is the ports group `g` uses (its client proxies); each
    /// group gets `writers` writers and `readers` readers.
    pub fn start(groups: &[Vec<u16>], writers: usize, readers: usize) -> Load {
        Self::start_from(FIRST_CUSTOMER, groups, writers, readers)
    }

    /// As [`Load::start`], with customers from `first` on (a second load
    /// in one test must not rewrite the first one's customers).
    pub fn start_from(first: i32, groups: &[Vec<u16>], writers: usize, readers: usize) -> Load {
        let history = Arc::new(History::new());
        let group_acks = Arc::new(Mutex::new(Vec::new()));
        let round = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let all_writers = (groups.len() * writers) as i32;
        let mut threads = Vec::new();
        for (g, ports) in groups.iter().enumerate() {
            let ctx = || Ctx {
                history: Arc::clone(&history),
                group_acks: Arc::clone(&group_acks),
                round: Arc::clone(&round),
                stop: Arc::clone(&stop),
                group: g,
                ports: ports.clone(),
                first,
            };
            for w in 0..writers {
                let (c, id) = (ctx(), (g * writers + w) as i32);
                threads.push(thread::spawn(move || write_loop(&c, id, all_writers)));
            }
            for r in 0..readers {
                let c = ctx();
                threads.push(thread::spawn(move || read_loop(&c, r, all_writers)));
            }
        }
        Load {
            history,
            group_acks,
            round,
            stop,
            threads,
        }
    }

    /// Marks a fault: every writer moves to a fresh customer.
    pub fn fault(&self) {
        self.round.fetch_add(1, Ordering::SeqCst);
    }

    /// Acknowledgements of group `g` received within `[from, to]`.
    pub fn acks_of(&self, g: usize, from: Instant, to: Instant) -> usize {
        self.group_acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.group == g && a.acked >= from && a.acked <= to)
            .count()
    }

    /// Acknowledgements of group `g` whose request was sent within
    /// `[from, to]` (and answered whenever).
    pub fn sent_and_acked(&self, g: usize, from: Instant, to: Instant) -> Vec<GroupAck> {
        self.group_acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.group == g && a.sent >= from && a.sent <= to)
            .copied()
            .collect()
    }

    /// Waits (bounded by `limit`) until group `g` has `more` further acks.
    pub fn wait_for_acks(&self, g: usize, more: usize, limit: Duration) -> bool {
        let count = || {
            self.group_acks
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.group == g)
                .count()
        };
        let target = count() + more;
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if count() >= target {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        count() >= target
    }

    /// Stops every thread; the history is complete afterwards.
    pub fn finish(self) -> (Arc<History>, Vec<GroupAck>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let acks = self.group_acks.lock().unwrap().clone();
        (self.history, acks)
    }
}

fn customer_of(first: i32, round: u32, writer: i32, writers: i32) -> i32 {
    first + round as i32 * writers + writer
}

fn open(port: u16) -> Option<Client> {
    Client::connect("127.0.0.1", port, Some(ATTEMPT)).ok()
}

fn write_loop(ctx: &Ctx, writer: i32, writers: i32) {
    let mut server = writer as usize % ctx.ports.len().max(1);
    let mut session: Option<Client> = None;
    let mut round = ctx.round.load(Ordering::SeqCst);
    let mut order = 0;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) || ctx.ports.is_empty() {
            break;
        }
        let now = ctx.round.load(Ordering::SeqCst);
        if now != round {
            (round, order) = (now, 0);
        }
        let customer = customer_of(ctx.first, round, writer, writers);
        if session.is_none() {
            session = open(ctx.ports[server]);
        }
        let Some(c) = session.as_mut() else {
            server = (server + 1) % ctx.ports.len();
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        ctx.history.record_sent(customer, order);
        let sent = Instant::now();
        match c.order(customer, order) {
            Ok(info) if (info.customer_id, info.order_number) == (customer, order) => {
                let acked = Instant::now();
                ctx.history.record_ack(Ack {
                    customer,
                    order,
                    round,
                    sent,
                    acked,
                });
                ctx.group_acks.lock().unwrap().push(GroupAck {
                    group: ctx.group,
                    sent,
                    acked,
                });
                order += 1;
            }
            _ => {
                // Not acknowledged: it may or may not apply; the next
                // attempt sends the next order (the history knows both).
                order += 1;
                session = None;
                server = (server + 1) % ctx.ports.len();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn read_loop(ctx: &Ctx, reader: usize, writers: i32) {
    let mut sessions: Vec<Option<Client>> = ctx.ports.iter().map(|_| None).collect();
    let mut n = reader;
    for _ in 0..MAX_ATTEMPTS {
        if ctx.stop.load(Ordering::SeqCst) || ctx.ports.is_empty() {
            break;
        }
        n += 1;
        let round = ctx.round.load(Ordering::SeqCst);
        // Every third read looks at the previous round, whose last
        // writes raced the fault.
        let round = if n.is_multiple_of(3) {
            round.saturating_sub(1)
        } else {
            round
        };
        let customer = customer_of(ctx.first, round, (n / 3) as i32 % writers, writers);
        let i = n % ctx.ports.len();
        if sessions[i].is_none() {
            sessions[i] = open(ctx.ports[i]);
        }
        let began = Instant::now();
        let result = match sessions[i].as_mut() {
            Some(c) => c.read(customer).map(|r| r.last_order),
            None => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        match result {
            Ok(value) => ctx.history.record_read(Observed {
                customer,
                value,
                port: ctx.ports[i],
                began,
                ended: Instant::now(),
            }),
            Err(_) => {
                sessions[i] = None;
                thread::sleep(Duration::from_millis(20));
            }
        }
        // Leaves the two cores to the servers and writers.
        thread::sleep(Duration::from_millis(3));
    }
}

//! Network partitions between real server processes (issue 13), with the
//! fault-injecting proxy on every link between servers and between clients
//! and servers (peer lists name the proxies; `common::net`). Writers and
//! readers record every acknowledged write and every read
//! (`common::sides`), moving to fresh customers after every fault, and a
//! monitor asks every server for its status every 20 ms. After each
//! scenario heals, every test checks:
//!
//! - G1: every acknowledged write is on every server, and the servers agree;
//! - G6: no read returned less than a write acknowledged before it began,
//!   nor less than an earlier read;
//! - G2: no two servers held a primary lease at one moment, and each epoch
//!   had one primary (its owner), from the monitor's record; a minority
//!   side acknowledged nothing once its primary's lease had to be over;
//! - G7: the majority side kept taking writes during the fault.
//!
//! Scenarios: the primary isolated (reset, blackhole) and cut one way
//! (either direction), 3 servers; a split with the primary in the
//! minority, 3 and 5 servers, reset and blackhole, clients on both sides;
//! flapping links under load; a bridge node.
//!
//! Loops are bounded in count and time; ports are ephemeral; every process
//! and thread is stopped when its handle drops. The flapping test runs
//! 8 s by default (`make test`'s budget); `FACTORY_FLAP_SECS=20` runs the
//! issue's 20 s.

mod common;

use std::time::{Duration, Instant};

use common::net::{check_epoch_owners, check_leases, primary_epochs, Monitor, Net, Settled};
use common::proxy::Mode;
use common::sides::{GroupAck, Load};
use common::{wait_until, DEADLINE};

/// How long a fault is held: well past a failover (≈ 0.5 s) and the lease.
const HOLD: Duration = Duration::from_secs(4);

/// After this long into a fault, a primary cut off from the majority has
/// certainly lost its lease (300 ms) and any in-flight ack has arrived:
/// its side may acknowledge nothing more until the heal.
const MINORITY_QUIET_AFTER: Duration = Duration::from_millis(1500);

/// Writes acknowledged before a fault, and again after the heal, before
/// the scenario counts as running and recovered.
const WARM_UP: usize = 200;

/// Every server's log on failure, then the message.
fn fail(net: &Net, msg: String) -> ! {
    net.dump();
    panic!("{msg}");
}

fn first_primary(net: &Net) -> Settled {
    match net.await_primary(None, 0, &[]) {
        Some(p) => p,
        None => fail(
            net,
            format!(
                "no primary elected without any client write (G7): {:?}",
                net.statuses()
            ),
        ),
    }
}

/// What a scenario saw, checked by [`check_all`].
struct Run {
    load: Load,
    monitor: Monitor,
    fault_at: Instant,
    heal_at: Instant,
}

/// The checks every scenario ends with (see the module comment).
/// `majority`/`minority` are client groups; `None` where a side has no
/// clients.
/// Returns the monitor's record for further checks.
fn check_all(
    net: &Net,
    run: Run,
    majority: usize,
    minority: Option<usize>,
) -> Vec<common::net::Seen> {
    let Run {
        load,
        monitor,
        fault_at,
        heal_at,
    } = run;
    // G7: the majority side took writes during the fault (sent after it
    // began, acknowledged before the heal).
    let taken: Vec<GroupAck> = load
        .sent_and_acked(majority, fault_at, heal_at)
        .into_iter()
        .filter(|a| a.acked <= heal_at)
        .collect();
    let during = taken.len();
    let first = taken
        .iter()
        .map(|a| a.acked.saturating_duration_since(fault_at))
        .min();
    eprintln!(
        "majority acks during the fault: {during}; first {:?} after the fault",
        first
    );
    let minority_late = minority.map_or(0, |g| {
        load.acks_of(g, fault_at + MINORITY_QUIET_AFTER, heal_at)
    });
    let (history, _) = load.finish();
    let seen = monitor.finish();
    if during == 0 {
        fail(
            net,
            "G7: the majority side took no write during the fault".into(),
        );
    }
    // G2 on the minority side.
    if minority_late > 0 {
        fail(
            net,
            format!(
                "G2: the minority side had {minority_late} writes acknowledged more than {MINORITY_QUIET_AFTER:?} into the fault"
            ),
        );
    }
    // G1: every acknowledged write on every data server, all equal.
    let ports: Vec<u16> = net
        .data_servers()
        .into_iter()
        .map(|i| net.direct_ports()[i])
        .collect();
    let mut last = Ok(());
    if !wait_until(|| {
        last = history.check_writes_on(&ports);
        last.is_ok()
    }) {
        fail(
            net,
            format!(
                "G1: acknowledged writes missing or servers disagree ({} acks):\n{}",
                history.ack_count(),
                last.unwrap_err()
            ),
        );
    }
    // G6.
    if let Err(e) = history.check_reads() {
        fail(net, format!("G6 ({} reads):\n{e}", history.reads().len()));
    }
    // G2: leases and epochs, from the status record.
    match check_leases(&seen) {
        Ok(held) => eprintln!("{held} held-lease reports, none overlapping"),
        Err(e) => fail(net, format!("G2: {e}")),
    }
    if let Err(e) = check_epoch_owners(&seen) {
        fail(net, format!("G2: {e}"));
    }
    eprintln!(
        "{} acks, {} reads; primaries (server, epoch): {:x?}",
        history.ack_count(),
        history.reads().len(),
        primary_epochs(&seen)
    );
    seen
}

/// Starts the load on `groups`, waits until it runs, applies `fault`,
/// holds it, heals, and waits until writes flow again.
fn scenario(net: &Net, groups: &[Vec<u16>], fault: impl FnOnce(&Net)) -> Run {
    let monitor = Monitor::start(net.direct_ports(), Duration::from_millis(20));
    let load = Load::start(groups, 2, 1);
    if !load.wait_for_acks(0, WARM_UP, DEADLINE) {
        fail(net, "writes did not flow before the fault".into());
    }
    load.fault();
    let fault_at = Instant::now();
    fault(net);
    std::thread::sleep(HOLD); // the fault's duration, not a synchronisation
    load.fault();
    net.heal();
    let heal_at = Instant::now();
    for g in 0..groups.len() {
        if !load.wait_for_acks(g, WARM_UP, DEADLINE) {
            fail(
                net,
                format!("client group {g}: writes did not resume after the heal"),
            );
        }
    }
    Run {
        load,
        monitor,
        fault_at,
        heal_at,
    }
}

fn others(net: &Net, p: usize) -> Vec<usize> {
    (0..net.len()).filter(|&i| i != p).collect()
}

/// The primary is cut off from both other servers and from every client:
/// the other two elect one of them and take the writes; the old primary
/// stops serving within its lease and follows after the heal.
fn isolate_the_primary(mode: Mode) {
    let net = Net::start(3, &[], 1, |_| Vec::new());
    let p = first_primary(&net).id;
    let run = scenario(&net, &[net.client_ports(0)], |net| {
        let rest = others(net, p);
        net.split(&[&rest, &[p]], mode);
    });
    check_all(&net, run, 0, None);
}

/// G1 G2 G6 G7: an isolated primary (connections reset), 3 servers.
#[test]
fn g1_g2_g6_g7_isolated_primary_reset() {
    isolate_the_primary(Mode::Reset);
}

/// G1 G2 G6 G7: an isolated primary (packets dropped), 3 servers.
#[test]
fn g1_g2_g6_g7_isolated_primary_blackhole() {
    isolate_the_primary(Mode::Blackhole);
}

/// The primary's links to the other servers cut in one direction only
/// (`outbound`: what it sends is lost, it still hears them; else the
/// reverse), blackholed; clients cannot reach it. Either way it cannot
/// keep a majority's acks, so its lease ends and the others must elect.
fn one_way_cut_of_the_primary(outbound: bool) {
    let net = Net::start(3, &[], 1, |_| Vec::new());
    let p = first_primary(&net).id;
    let run = scenario(&net, &[net.client_ports(0)], |net| {
        for q in others(net, p) {
            if outbound {
                net.cut_one_way(p, q, Mode::Blackhole);
            } else {
                net.cut_one_way(q, p, Mode::Blackhole);
            }
        }
        net.cut_clients(0, p, Mode::Blackhole);
    });
    check_all(&net, run, 0, None);
}

/// G1 G2 G6 G7: the primary's outbound links blackholed (one-way), 3 servers.
#[test]
fn g1_g2_g6_g7_one_way_cut_primary_cannot_send() {
    one_way_cut_of_the_primary(true);
}

/// G1 G2 G6 G7: the primary's inbound links blackholed (one-way): its
/// heartbeats still arrive, their acks do not, 3 servers.
#[test]
fn g1_g2_g6_g7_one_way_cut_primary_cannot_hear() {
    one_way_cut_of_the_primary(false);
}

/// A split with the primary (and `with_primary - 1` backups) on the
/// minority side, writers and readers on both sides.
fn split_with_primary_in_minority(n: usize, with_primary: usize, mode: Mode) {
    let net = Net::start(n, &[], 2, |_| Vec::new());
    let p = first_primary(&net).id;
    let mut minority = vec![p];
    minority.extend(others(&net, p).into_iter().take(with_primary - 1));
    let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
    let groups = [
        net.client_ports_on(0, &majority),
        net.client_ports_on(1, &minority),
    ];
    let run = scenario(&net, &groups, |net| {
        net.split(&[&majority, &minority], mode)
    });
    check_all(&net, run, 0, Some(1));
}

/// G1 G2 G6 G7: 3 servers split 2 | 1 with the primary alone, clients on
/// both sides, connections reset.
#[test]
fn g1_g2_g6_g7_split_3_primary_in_minority_reset() {
    split_with_primary_in_minority(3, 1, Mode::Reset);
}

/// G1 G2 G6 G7: as above, packets dropped.
#[test]
fn g1_g2_g6_g7_split_3_primary_in_minority_blackhole() {
    split_with_primary_in_minority(3, 1, Mode::Blackhole);
}

/// G1 G2 G6 G7: 5 servers split 3 | 2 with the primary and one backup on
/// the minority side, clients on both sides, packets dropped.
#[test]
fn g1_g2_g6_g7_split_5_primary_in_minority_blackhole() {
    split_with_primary_in_minority(5, 2, Mode::Blackhole);
}

/// G1 G2 G6 G7: 5 servers split 3 | 2 as above, connections reset.
#[test]
fn g1_g2_g6_g7_split_5_primary_in_minority_reset() {
    split_with_primary_in_minority(5, 2, Mode::Reset);
}

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn flap_duration() -> Duration {
    let secs = std::env::var("FACTORY_FLAP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    Duration::from_secs(secs.clamp(1, 120))
}

/// G1 G2 G6 G7: links that flap under load for 8 s (20 s with
/// `FACTORY_FLAP_SECS=20`): every 50-500 ms a random change around one
/// random server (isolated both ways, cut one way in either direction,
/// cut from one peer only, cut from the clients; by reset or blackhole),
/// or everything healed. The other two servers always see each other, so
/// a majority exists throughout and must keep taking writes; afterwards
/// the checks.
#[test]
fn g1_g2_g6_g7_flapping_links_under_load() {
    let net = Net::start(3, &[], 1, |_| Vec::new());
    first_primary(&net);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("flapping seed {seed:#x}");
    let mut rng = Rng(seed);
    let monitor = Monitor::start(net.direct_ports(), Duration::from_millis(20));
    let load = Load::start(&[net.client_ports(0)], 3, 1);
    if !load.wait_for_acks(0, WARM_UP, DEADLINE) {
        fail(&net, "writes did not flow before the flapping".into());
    }
    let fault_at = Instant::now();
    let end = fault_at + flap_duration();
    let mut changes = 0;
    // Bounded: at most one change per 50 ms of the duration.
    while Instant::now() < end && changes < 10_000 {
        let mode = if rng.below(2) == 0 {
            Mode::Reset
        } else {
            Mode::Blackhole
        };
        let x = rng.below(3) as usize;
        let rest = others(&net, x);
        let y = rest[rng.below(2) as usize];
        net.heal();
        match rng.below(6) {
            0 => {}
            1 => net.split(&[&rest, &[x]], mode),
            2 => rest.iter().for_each(|&q| net.cut_one_way(x, q, mode)),
            3 => rest.iter().for_each(|&q| net.cut_one_way(q, x, mode)),
            4 => net.cut(x, y, mode),
            _ => net.cut_clients(0, x, mode),
        }
        load.fault();
        changes += 1;
        std::thread::sleep(Duration::from_millis(50 + rng.below(450)));
    }
    net.heal();
    load.fault();
    let heal_at = Instant::now();
    eprintln!("{changes} link changes");
    if !load.wait_for_acks(0, WARM_UP, DEADLINE) {
        fail(&net, "writes did not resume after the flapping".into());
    }
    let run = Run {
        load,
        monitor,
        fault_at,
        heal_at,
    };
    check_all(&net, run, 0, None);
}

/// G1 G2 G6 G7: a bridge. The primary and another server cannot see each
/// other (blackholed); the third (the bridge) sees both. Clients on both
/// ends. Servers run with `--peer-timeout 1`. The
/// cluster keeps taking writes, the epoch barely moves (the isolated
/// backup's pre-votes fail at the bridge while it honours the primary's
/// lease), and at the heal nothing old is applied over anything newer.
#[test]
fn g1_g2_g6_g7_bridge_node() {
    // The far server stops acking the primary's heartbeats: the primary
    // drops it from the in-sync set after a lease period (a majority
    // accepts), not after --peer-timeout (5 s by default, longer than the
    // fault is held here).
    let net = Net::start(3, &[], 2, |_| Vec::new());
    let p = first_primary(&net);
    let rest = others(&net, p.id);
    let (bridge, far) = (rest[0], rest[1]);
    let groups = [
        net.client_ports_on(0, &[p.id, bridge]),
        net.client_ports_on(1, &[far, bridge]),
    ];
    let run = scenario(&net, &groups, |net| {
        net.cut(p.id, far, Mode::Blackhole);
        net.cut_clients(0, far, Mode::Blackhole);
        net.cut_clients(1, p.id, Mode::Blackhole);
    });
    // Both ends keep writing through the bridge or their own server.
    let far_during = run.load.acks_of(1, run.fault_at, run.heal_at);
    eprintln!("far-side acks during the bridge: {far_during}");
    let seen = check_all(&net, run, 0, None);
    // Pre-vote keeps the far server from raising the epoch while the
    // bridge honours the primary: no epoch storm (the issue saw ~360
    // takeover attempts in 7 s). At most one election is allowed.
    let top = seen.iter().map(|s| s.epoch).max().unwrap_or(p.epoch);
    let primaries = primary_epochs(&seen);
    eprintln!(
        "bridge: epoch {:#x} -> {top:#x}, primaries {primaries:x?}",
        p.epoch
    );
    if (top >> 16) > (p.epoch >> 16) + 1 {
        fail(
            &net,
            format!(
                "the bridge drove epoch changes: {:#x} -> {top:#x}, primaries {primaries:x?}",
                p.epoch
            ),
        );
    }
    if far_during == 0 {
        fail(
            &net,
            "G7: the far side took no write through the bridge".into(),
        );
    }
}

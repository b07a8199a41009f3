//! A cluster of server processes with the fault-injecting proxy on every
//! path: one proxy per directed link between servers (server `a`'s peer
//! list names `links[a][b]`, which forwards to `b`), and one per client
//! group and server (clients of group `g` reach server `b` only through
//! `clients[g][b]`). A partition is then a set of sides, each holding some
//! servers and some client groups; links between sides are reset or
//! blackholed, in one direction or both. Servers are observed directly
//! (their status request, never through a proxy), so that a cut-off
//! primary can still be watched.
//!
//! Everything is stopped when the [`Net`] drops: servers (SIGCONT first,
//! then SIGKILL), proxies and their threads.

use std::time::{Duration, Instant};

use factory::client::status::{self, ServerStatus};
use factory::wire::status::{Lease, Role, StatusReport};

use super::proxy::{Dir, Mode, Proxy};
use super::{free_port, wait_until, ServerProcess, SpawnError};

/// How long one status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// The servers, by id (`servers[i].id == i`), and every proxy.
pub struct Net {
    pub servers: Vec<ServerProcess>,
    ports: Vec<u16>,
    /// `links[a][b]`: the proxy `a` reaches `b` through (`None` for a == b).
    links: Vec<Vec<Option<Proxy>>>,
    /// `clients[g][b]`: the proxy clients of group `g` reach `b` through.
    clients: Vec<Vec<Proxy>>,
    witnesses: Vec<usize>,
    extra: Vec<Vec<String>>,
    stopped: Vec<bool>,
}

impl Net {
    /// `n` servers (those in `witnesses` started with `--witness`, the
    /// others told `--witnesses` of them), `groups` client groups, extra
    /// arguments per server; retried on fresh ports if one was taken.
    pub fn start(
        n: usize,
        witnesses: &[usize],
        groups: usize,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Net {
        let extra: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let mut args = extra(i);
                if witnesses.contains(&i) {
                    args.push("--witness".into());
                } else if !witnesses.is_empty() {
                    let ids: Vec<String> = witnesses.iter().map(usize::to_string).collect();
                    args.extend(["--witnesses".into(), ids.join(",")]);
                }
                args
            })
            .collect();
        for _ in 0..5 {
            if let Some(net) = Self::try_start(n, witnesses, groups, &extra) {
                return net;
            }
        }
        panic!("could not start {n} proxied servers");
    }

    fn try_start(
        n: usize,
        witnesses: &[usize],
        groups: usize,
        extra: &[Vec<String>],
    ) -> Option<Net> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let target = |b: usize| std::net::SocketAddr::from(([127, 0, 0, 1], ports[b]));
        let links: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| (a != b).then(|| Proxy::start(target(b)).expect("start a proxy")))
                    .collect()
            })
            .collect();
        let clients: Vec<Vec<Proxy>> = (0..groups)
            .map(|_| {
                (0..n)
                    .map(|b| Proxy::start(target(b)).expect("start a proxy"))
                    .collect()
            })
            .collect();
        let mut net = Net {
            servers: Vec::new(),
            ports,
            links,
            clients,
            witnesses: witnesses.to_vec(),
            extra: extra.to_vec(),
            stopped: vec![false; n],
        };
        for i in 0..n {
            match net.spawn(i) {
                Ok(s) => net.servers.push(s),
                Err(SpawnError::PortInUse) => return None,
                Err(e) => panic!("server {i} did not start: {e:?}"),
            }
        }
        Some(net)
    }

    fn spawn(&self, i: usize) -> Result<ServerProcess, SpawnError> {
        let peers: Vec<(i32, u16)> = (0..self.ports.len())
            .filter(|&b| b != i)
            .map(|b| (b as i32, self.links[i][b].as_ref().unwrap().port()))
            .collect();
        ServerProcess::spawn_with(i as i32, self.ports[i], &peers, &self.extra[i])
    }

    /// Number of servers (witnesses included).
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// The servers that hold data (not witnesses).
    pub fn data_servers(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|i| !self.witnesses.contains(i))
            .collect()
    }

    /// The servers' own ports (no proxy): for final checks and status.
    pub fn direct_ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// The port server `a`'s peer list names for `b` (its proxy to `b`).
    pub fn peer_port(&self, a: usize, b: usize) -> u16 {
        self.links[a][b].as_ref().expect("a != b").port()
    }

    /// The ports clients of group `g` use, by server (data servers only).
    pub fn client_ports(&self, g: usize) -> Vec<u16> {
        self.data_servers()
            .into_iter()
            .map(|b| self.clients[g][b].port())
            .collect()
    }

    /// As [`Net::client_ports`], for the servers in `side` only.
    pub fn client_ports_on(&self, g: usize, side: &[usize]) -> Vec<u16> {
        self.data_servers()
            .into_iter()
            .filter(|b| side.contains(b))
            .map(|b| self.clients[g][b].port())
            .collect()
    }

    /// Cuts traffic from `a` to `b` (only that direction): on `a`'s
    /// connections to `b` the way up, on `b`'s connections to `a` the way
    /// down.
    pub fn cut_one_way(&self, a: usize, b: usize, mode: Mode) {
        if let Some(p) = &self.links[a][b] {
            p.set(Dir::Up, mode);
        }
        if let Some(p) = &self.links[b][a] {
            p.set(Dir::Down, mode);
        }
    }

    /// Cuts `a` and `b` apart, both ways.
    pub fn cut(&self, a: usize, b: usize, mode: Mode) {
        self.cut_one_way(a, b, mode);
        self.cut_one_way(b, a, mode);
    }

    /// Cuts client group `g` off from server `b`, both ways.
    pub fn cut_clients(&self, g: usize, b: usize, mode: Mode) {
        self.clients[g][b].set_both(mode);
    }

    /// A partition: `sides[k]` holds servers, and client group `k` is on
    /// side `k` (groups beyond the sides are left connected to all).
    pub fn split(&self, sides: &[&[usize]], mode: Mode) {
        for (k, side) in sides.iter().enumerate() {
            for (j, other) in sides.iter().enumerate() {
                if j == k {
                    continue;
                }
                for &a in *side {
                    for &b in *other {
                        self.cut_one_way(a, b, mode);
                    }
                }
            }
            if k < self.clients.len() {
                for b in 0..self.len() {
                    if !side.contains(&b) {
                        self.cut_clients(k, b, mode);
                    }
                }
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        self.links.iter().flatten().flatten().for_each(Proxy::heal);
        self.clients.iter().flatten().for_each(Proxy::heal);
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        self.cont(i);
        self.servers[i].kill();
    }

    /// Starts server `i` again with its arguments.
    pub fn restart(&mut self, i: usize) {
        for _ in 0..50 {
            match self.spawn(i) {
                Ok(s) => {
                    self.servers[i] = s;
                    return;
                }
                Err(SpawnError::PortInUse) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("server {i} did not restart: {e:?}"),
            }
        }
        panic!("server {i} could not get its port back");
    }

    /// SIGSTOPs server `i`.
    pub fn pause(&mut self, i: usize) {
        signal(self.servers[i].pid(), "-STOP");
        self.stopped[i] = true;
    }

    /// SIGCONTs server `i` if it was stopped.
    pub fn cont(&mut self, i: usize) {
        if std::mem::take(&mut self.stopped[i]) {
            signal(self.servers[i].pid(), "-CONT");
        }
    }

    /// Every server's status (asked directly, one after the other).
    pub fn statuses(&self) -> Vec<ServerStatus> {
        (0..self.len())
            .map(|i| {
                if self.stopped[i] {
                    ServerStatus::Unreachable("stopped by the test".into())
                } else {
                    status::fetch(&format!("127.0.0.1:{}", self.ports[i]), STATUS_TIMEOUT)
                }
            })
            .collect()
    }

    /// Waits for a settled primary other than `not`: a server that says it
    /// is primary in an epoch above `above`, followed in that epoch by
    /// every other reachable data server in `among` (all when empty).
    pub fn await_primary(
        &self,
        not: Option<usize>,
        above: u64,
        among: &[usize],
    ) -> Option<Settled> {
        let mut found = None;
        wait_until(|| {
            found = settled(&self.statuses(), not, above, among);
            found.is_some()
        });
        found
    }

    /// Prints every server's log (for a failing test).
    pub fn dump(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            eprintln!("---- server {i} ----\n{}", s.log_text());
        }
    }

    /// Every server's log, joined.
    pub fn logs(&self) -> Vec<String> {
        self.servers.iter().map(ServerProcess::log_text).collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.cont(i);
        }
        // Servers first (their drops kill), then the proxies.
        self.servers.clear();
    }
}

/// A primary that the other servers follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub id: usize,
    pub epoch: u64,
}

fn settled(
    statuses: &[ServerStatus],
    not: Option<usize>,
    above: u64,
    among: &[usize],
) -> Option<Settled> {
    let reports: Vec<(usize, &StatusReport)> = statuses
        .iter()
        .enumerate()
        .filter(|(i, _)| among.is_empty() || among.contains(i))
        .filter_map(|(i, s)| s.report().map(|r| (i, r)))
        .collect();
    let (id, primary) = reports
        .iter()
        .filter(|(i, r)| r.role == Role::Primary && r.epoch > above && Some(*i) != not)
        .max_by_key(|(_, r)| r.epoch)?;
    let followed = reports.iter().all(|(i, r)| {
        i == id
            || r.role == Role::Witness
            || (r.role == Role::Backup && r.primary_id == *id as i32 && r.epoch == primary.epoch)
    });
    followed.then_some(Settled {
        id: *id,
        epoch: primary.epoch,
    })
}

/// Sends `sig` (as `kill` spells it) to process `pid`, which the test started.
/// `kill` returns once the signal is queued, while the process's threads may
/// still run for a moment (long enough to acknowledge a write), so a
/// `-STOP` returns only once every thread of the process is stopped.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
    if sig == "-STOP" {
        assert!(
            super::wait_until(|| all_threads_stopped(pid)),
            "process {pid} did not stop"
        );
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in
/// /proc/PID/task/TID/stat, the field after the parenthesised name).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

/// One status answer as the monitor saw it: asked at `sent`, answered by
/// `got`.
#[derive(Clone, Debug)]
pub struct Seen {
    pub server: usize,
    pub sent: Instant,
    pub got: Instant,
    pub role: Role,
    pub epoch: u64,
    pub lease: Lease,
    pub lease_ms: u32,
}

/// Asks every server for its status every `every` until stopped, on a
/// thread of its own, and keeps every answer: the record from which G2 is
/// checked afterwards ([`check_leases`]).
pub struct Monitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Seen>>>,
}

impl Monitor {
    /// Watches the servers on `ports` (direct ports).
    pub fn start(ports: Vec<u16>, every: Duration) -> Monitor {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // Bounded: at most ten minutes of rounds.
            let end = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < end {
                for (server, port) in ports.iter().enumerate() {
                    let sent = Instant::now();
                    let answer =
                        status::fetch(&format!("127.0.0.1:{port}"), Duration::from_millis(200));
                    if let ServerStatus::Report(r) = answer {
                        seen.push(Seen {
                            server,
                            sent,
                            got: Instant::now(),
                            role: r.role,
                            epoch: r.epoch,
                            lease: r.lease,
                            lease_ms: r.lease_ms,
                        });
                    }
                }
                std::thread::sleep(every);
            }
            seen
        });
        Monitor {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching; everything seen.
    pub fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How old a status report's lease figure may be (the election thread
/// publishes every 10 ms; a loaded machine delays it).
const PUBLISH_SLACK_MS: u64 = 50;

/// G2 from the monitor's record: `Err` names two servers that both held a
/// primary lease at one moment, or two servers that were primary in one
/// epoch. A report of a lease held with `lease_ms` left, answered within
/// `[sent, got]`, proves the lease live from `got` until `sent + lease_ms`
/// (less [`PUBLISH_SLACK_MS`]);
/// another server's held lease answered within that span is a second live
/// lease. Also `Err` when no lease was ever reported held (the record
/// would prove nothing).
pub fn check_leases(seen: &[Seen]) -> Result<usize, String> {
    let held: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.role == Role::Primary && s.lease == Lease::Held)
        .collect();
    if held.is_empty() {
        return Err(format!(
            "no server ever reported a held lease ({} status answers): nothing proves G2",
            seen.len()
        ));
    }
    let mut problems = Vec::new();
    for a in &held {
        // The report is the state the election thread last published
        // (every 10 ms), possibly from before the request was sent.
        let left = u64::from(a.lease_ms).saturating_sub(PUBLISH_SLACK_MS);
        let live_until = a.sent + Duration::from_millis(left);
        for b in &held {
            if b.server != a.server && b.sent >= a.got && b.got <= live_until {
                problems.push(format!(
                    "servers {} (epoch {:#x}, {} ms left) and {} (epoch {:#x}) held leases at once",
                    a.server, a.epoch, a.lease_ms, b.server, b.epoch
                ));
            }
        }
    }
    let mut owners: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for s in seen.iter().filter(|s| s.role == Role::Primary) {
        if let Some(&o) = owners.get(&s.epoch) {
            if o != s.server {
                problems.push(format!(
                    "servers {o} and {} both primary in epoch {:#x}",
                    s.server, s.epoch
                ));
            }
        }
        owners.insert(s.epoch, s.server);
    }
    problems.truncate(20);
    if problems.is_empty() {
        Ok(held.len())
    } else {
        Err(problems.join("\n"))
    }
}

/// The epochs each server said it was primary in (monitor record).
pub fn primary_epochs(seen: &[Seen]) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = seen
        .iter()
        .filter(|s| s.role == Role::Primary)
        .map(|s| (s.server, s.epoch))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every primary's status said "primary" only in epochs it owns (an
/// epoch's low 16 bits are its candidate's id).
pub fn check_epoch_owners(seen: &[Seen]) -> Result<(), String> {
    let wrong: Vec<String> = primary_epochs(seen)
        .into_iter()
        .filter(|(server, epoch)| (*epoch & 0xffff) as usize != *server)
        .map(|(server, epoch)| {
            format!("server {server} primary in epoch {epoch:#x} it does not own")
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

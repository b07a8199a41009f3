//! Cluster helpers shared by the integration tests: free loopback ports,
//! server processes whose log lines can be awaited, in-process clusters, and
//! a bounded wait for a condition. Everything started here is stopped when
//! its handle drops, so a failing test leaves no process behind.
#![allow(dead_code)] // each test binary uses a different subset

pub mod history;
pub mod net;
pub mod prometheus;
pub mod proxy;
pub mod sides;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use factory::client::Client;
use factory::server::{PeerConfig, Server, ServerConfig};

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Client I/O timeout in tests: a hang becomes an error, not a stuck test.
pub const IO_TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Polls `condition` until it holds or `DEADLINE` passes; true if it held.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// True when the server closed `stream` (end of file, or a reset), reading
/// and discarding anything it still sent; false when the stream's read
/// timeout (or the deadline) passes with the connection still open, so a
/// server that hangs instead of closing fails the test. `stream` must have
/// a read timeout.
pub fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let end = Instant::now() + DEADLINE;
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
    false
}

/// A child's stderr read line by line on a thread of its own: every line
/// kept in the returned log and sent on the channel, so that a test can
/// both wait for a line and read everything afterwards.
pub fn capture_lines(
    stderr: std::process::ChildStderr,
) -> (
    mpsc::Receiver<String>,
    Arc<Mutex<Vec<String>>>,
    JoinHandle<()>,
) {
    let (tx, lines) = mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    let reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log2.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (lines, log, reader)
}

/// True when the server closed `stream` without sending a byte first (end
/// of file, or a reset); false on data or when the read timeout passes.
pub fn closed_without_reply(stream: &mut std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

/// Connects a client to 127.0.0.1:`port`.
pub fn client(port: u16) -> Client {
    Client::connect("127.0.0.1", port, IO_TIMEOUT).expect("connect to test server")
}

/// Reads `customer`'s last order from the server at `port`.
pub fn read(port: u16, customer: i32) -> i32 {
    let mut c = client(port);
    let r = c.read(customer).expect("read").last_order;
    c.close();
    r
}

/// A `server` process on 127.0.0.1 whose stderr lines are collected.
pub struct ServerProcess {
    pub id: i32,
    pub port: u16,
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// Why a server process did not come up.
#[derive(Debug)]
pub enum SpawnError {
    PortInUse,
    Exited(ExitStatus, String),
    NoListenLine,
}

impl ServerProcess {
    /// Starts `server port id N peers... --bind 127.0.0.1` and waits until
    /// it logs that it listens.
    pub fn spawn(id: i32, port: u16, peers: &[(i32, u16)]) -> Result<ServerProcess, SpawnError> {
        Self::spawn_with(id, port, peers, &[])
    }

    /// As [`ServerProcess::spawn`], with extra command-line arguments.
    pub fn spawn_with(
        id: i32,
        port: u16,
        peers: &[(i32, u16)],
        extra: &[String],
    ) -> Result<ServerProcess, SpawnError> {
        let mut args = vec![port.to_string(), id.to_string(), peers.len().to_string()];
        for (peer_id, peer_port) in peers {
            args.extend([
                peer_id.to_string(),
                "127.0.0.1".into(),
                peer_port.to_string(),
            ]);
        }
        args.extend(["--bind".into(), "127.0.0.1".into()]);
        args.extend(extra.iter().cloned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, log, reader) = capture_lines(stderr);
        let mut server = ServerProcess {
            id,
            port,
            child,
            lines,
            log,
            reader: Some(reader),
        };
        if server.wait_for_line("listening on") {
            return Ok(server);
        }
        let text = server.log_text();
        // Told by the log, not by the exit status: a server that closed its
        // stderr may not be reaped yet, and a taken port must be retried.
        if text.contains("already in use") {
            return Err(SpawnError::PortInUse);
        }
        match server.child.try_wait() {
            Ok(Some(status)) => Err(SpawnError::Exited(status, text)),
            _ => Err(SpawnError::NoListenLine),
        }
    }

    /// Waits for a new stderr line containing `needle`; false at the
    /// deadline or when the process ends first.
    pub fn wait_for_line(&self, needle: &str) -> bool {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return false
                }
            }
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The arguments that turn the majority election off: the original's
/// rule (a takeover on a client's write), which clusters with original
/// servers keep, and the tests of that rule.
pub fn election_off() -> Vec<String> {
    vec!["--election".into(), "off".into()]
}

/// A server with no peers on a free port, started with `extra` arguments.
pub fn lone_server(extra: &[&str]) -> ServerProcess {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for _ in 0..5 {
        match ServerProcess::spawn_with(0, free_port(), &[], &extra) {
            Ok(server) => return server,
            Err(SpawnError::PortInUse) => continue,
            Err(e) => panic!("server did not start: {e:?}"),
        }
    }
    panic!("no free port for a server");
}

/// `n` server processes, each with every other as a peer.
pub struct ProcessCluster {
    pub servers: Vec<ServerProcess>,
    ports: Vec<u16>,
    /// Extra arguments of server `i`.
    extra: Vec<Vec<String>>,
}

impl ProcessCluster {
    /// Starts the cluster on fresh ports, retrying if a port was taken
    /// between choosing it and binding it.
    pub fn start(n: usize) -> ProcessCluster {
        Self::start_with(n, |_| Vec::new())
    }

    /// As [`ProcessCluster::start`], with extra arguments per server id.
    pub fn start_with(n: usize, extra: impl Fn(usize) -> Vec<String>) -> ProcessCluster {
        let extra: Vec<Vec<String>> = (0..n).map(extra).collect();
        for _ in 0..5 {
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            if let Some(cluster) = Self::try_start(&ports, &extra) {
                return cluster;
            }
        }
        panic!("could not start a {n}-server cluster");
    }

    fn try_start(ports: &[u16], extra: &[Vec<String>]) -> Option<ProcessCluster> {
        let mut servers = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let peers = peers_of(i, ports);
            match ServerProcess::spawn_with(i as i32, port, &peers, &extra[i]) {
                Ok(s) => servers.push(s),
                Err(SpawnError::PortInUse) => return None,
                Err(e) => panic!("server {i} did not start: {e:?}"),
            }
        }
        Some(ProcessCluster {
            servers,
            ports: ports.to_vec(),
            extra: extra.to_vec(),
        })
    }

    /// The ports, by server id.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Starts server `i` again on its port with its arguments.
    pub fn restart(&mut self, i: usize) {
        let peers = peers_of(i, &self.ports);
        for _ in 0..50 {
            match ServerProcess::spawn_with(i as i32, self.ports[i], &peers, &self.extra[i]) {
                Ok(s) => {
                    self.servers[i] = s;
                    return;
                }
                // The old socket may linger a moment after SIGKILL.
                Err(SpawnError::PortInUse) => thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("server {i} did not restart: {e:?}"),
            }
        }
        panic!("server {i} could not get its port back");
    }

    /// The one live server that claims the primary role, once every other
    /// live server's log says it follows that server in its epoch; `None`
    /// when that does not happen within the deadline. Panics as soon as two
    /// live servers claim the role at once (G2), with their logs.
    pub fn primary(&mut self) -> Option<usize> {
        let mut found = None;
        wait_until(|| {
            let views = self.role_views();
            let claims: Vec<usize> = (0..views.len())
                .filter(|&i| matches!(views[i], Some(Role::Primary(_))))
                .collect();
            if claims.len() > 1 {
                self.dump();
                panic!("servers {claims:?} all claim the primary role: {views:?}");
            }
            let Some(&p) = claims.first() else {
                return false;
            };
            let Some(Role::Primary(epoch)) = views[p] else {
                return false;
            };
            let agreed = views.iter().enumerate().all(|(i, v)| {
                i == p || v.is_none() || *v == Some(Role::Following(p as i32, epoch))
            });
            if agreed {
                found = Some(p);
            }
            agreed
        });
        found
    }

    /// Each server's own view of its role (`None`: not running).
    pub fn role_views(&mut self) -> Vec<Option<Role>> {
        self.servers
            .iter_mut()
            .map(|s| s.is_running().then(|| role_view(s.id, &s.log_text())))
            .collect()
    }

    /// The in-sync set the primary's log names, if there is one primary.
    pub fn in_sync(&mut self) -> Option<Vec<i32>> {
        let p = self.primary()?;
        in_sync_view(p as i32, &self.servers[p].log_text())
    }

    /// Waits until the primary's in-sync set holds server `member` again
    /// (G4: a restarted backup is re-admitted once it caught up).
    pub fn wait_in_sync(&mut self, member: usize) -> bool {
        wait_until(|| self.in_sync().is_some_and(|s| s.contains(&(member as i32))))
    }

    /// Prints every server's log (for a failing test).
    /// Waits until every server holds every acknowledged write of
    /// `history` and they agree, then checks every read against it; panics
    /// naming each lost write or stale read, with the servers' logs.
    pub fn check_history(&self, history: &history::History) {
        let ports = self.ports();
        let mut last = Ok(());
        if !wait_until(|| {
            last = history.check_writes_on(&ports);
            last.is_ok()
        }) {
            self.dump();
            panic!(
                "acknowledged writes missing or servers disagree ({} acks, {} reads):\n{}",
                history.ack_count(),
                history.reads().len(),
                last.unwrap_err()
            );
        }
        if let Err(e) = history.check_reads() {
            self.dump();
            panic!(
                "reads against the history ({} reads):\n{e}",
                history.reads().len()
            );
        }
    }

    pub fn dump(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            eprintln!("---- server {i} ----\n{}", s.log_text());
        }
    }
}

/// A server's role as its latest role line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It became primary in this epoch and its term has not ended.
    Primary(u64),
    /// It follows primary `.0` in epoch `.1`.
    Following(i32, u64),
    /// No primary: not yet chosen, its term ended, or its primary was lost.
    None,
}

/// The number that follows `key` in `line`, if any.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Server `id`'s role from its log: the last line that changes it wins. A
/// term's end or a primary's loss is logged after the next role may have
/// been, so it only clears the role it names.
pub fn role_view(id: i32, log: &str) -> Role {
    let mut role = Role::None;
    for line in log.lines() {
        if line.contains(&format!("factory {id} became primary in epoch")) {
            if let Some(e) = number_after(line, "in epoch ") {
                role = Role::Primary(e);
            }
        } else if line.contains(&format!("factory {id} steps down")) {
            if matches!(role, Role::Primary(_)) {
                role = Role::None;
            }
        } else if line.contains(&format!("factory {id}: primary term")) {
            if number_after(line, "primary term ").map(Role::Primary) == Some(role) {
                role = Role::None;
            }
        } else if line.contains("following primary ") && line.contains(" in epoch ") {
            if let (Some(p), Some(e)) = (
                number_after(line, "following primary "),
                number_after(line, " in epoch "),
            ) {
                role = Role::Following(p as i32, e);
            }
        } else if line.contains("lost primary ") {
            let lost = (
                number_after(line, "lost primary "),
                number_after(line, "(epoch "),
            );
            if let (Some(p), Some(e)) = lost {
                if role == Role::Following(p as i32, e) {
                    role = Role::None;
                }
            }
        }
    }
    role
}

/// The in-sync set primary `id`'s log names in its latest term: the set it
/// took over with, and every peer dropped or re-admitted since.
pub fn in_sync_view(id: i32, log: &str) -> Option<Vec<i32>> {
    let became = format!("factory {id} became primary in epoch");
    let mut set: Option<Vec<i32>> = None;
    for line in log.lines() {
        if line.contains(&became) {
            let list = &line[line.rfind('[')? + 1..line.rfind(']')?];
            set = Some(list.split(", ").filter_map(|n| n.parse().ok()).collect());
        } else if let Some(s) = set.as_mut() {
            let peer = number_after(line, "peer ").map(|p| p as i32);
            if line.contains("dropped from the in-sync set") {
                s.retain(|&m| Some(m) != peer);
            } else if line.contains("caught up and rejoins the in-sync set") {
                s.extend(peer);
            }
        }
    }
    set
}

/// True when every server in `ports` returns exactly `expected`'s order for
/// each of its customers.
pub fn every_server_holds(ports: &[u16], expected: &std::collections::HashMap<i32, i32>) -> bool {
    expected.iter().all(|(&customer, &order)| {
        ports.iter().all(|&p| {
            Client::connect("127.0.0.1", p, IO_TIMEOUT)
                .and_then(|mut c| c.read(customer))
                .is_ok_and(|r| r.last_order == order)
        })
    })
}

/// Every server but `i`, as `(id, port)`.
pub fn peers_of(i: usize, ports: &[u16]) -> Vec<(i32, u16)> {
    ports
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(j, &p)| (j as i32, p))
        .collect()
}

/// `n` servers in this process on loopback port 0, each with every other as
/// a peer (added once all ports are known).
pub fn in_process_cluster(n: usize) -> Vec<Server> {
    in_process_cluster_with(n, |_| {})
}

/// As [`in_process_cluster`], letting the caller adjust each config.
pub fn in_process_cluster_with(n: usize, adjust: impl Fn(&mut ServerConfig)) -> Vec<Server> {
    let servers: Vec<Server> = (0..n)
        .map(|i| {
            let mut config = ServerConfig::loopback(0, i as i32);
            adjust(&mut config);
            Server::start(config).expect("start in-process server")
        })
        .collect();
    for a in &servers {
        for b in &servers {
            if a.factory_id() != b.factory_id() {
                a.add_peer(PeerConfig {
                    id: b.factory_id(),
                    host: "127.0.0.1".into(),
                    port: b.local_addr().port(),
                });
            }
        }
    }
    servers
}

/// Writes orders `0..orders` for each of `customers` customers, one thread
/// and one session per customer, through the server at `port`.
pub fn write_concurrently(port: u16, customers: i32, orders: i32) {
    thread::scope(|s| {
        for customer in 0..customers {
            s.spawn(move || {
                let mut c = client(port);
                for order in 0..orders {
                    let info = c.order(customer, order).expect("order");
                    assert_eq!((info.customer_id, info.order_number), (customer, order));
                }
                c.close();
            });
        }
    });
}

/// Checks what a server returns after `customers` × `orders` writes: with
/// `exact`, every customer has `orders - 1`; otherwise the server may trail
/// by the last entry (a v1 backup right after the writes, PROTOCOL.md §4),
/// so one customer may read `orders - 2`.
pub fn assert_all_written(port: u16, customers: i32, orders: i32, exact: bool) {
    let mut trailing = Vec::new();
    for customer in 0..customers {
        let value = read(port, customer);
        if value == orders - 1 {
            continue;
        }
        assert!(
            !exact && value == orders - 2,
            "server :{port} customer {customer}: {value}, expected {}",
            orders - 1
        );
        trailing.push(customer);
    }
    assert!(
        trailing.len() <= 1,
        "server :{port}: customers {trailing:?} trail"
    );
}

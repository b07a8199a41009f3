//! Cluster helpers shared by the integration tests: free loopback ports,
//! server processes whose log lines can be awaited, in-process clusters, and
//! a bounded wait for a condition. Everything started here is stopped when
//! its handle drops, so a failing test leaves no process behind.
#![allow(dead_code)] // each test binary uses a different subset

pub mod proxy;

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
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
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
        match server.child.try_wait() {
            Ok(Some(status)) if text.contains("already in use") => {
                let _ = status;
                Err(SpawnError::PortInUse)
            }
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

    /// The live server whose log says it became primary last, if any.
    pub fn primary(&mut self) -> Option<usize> {
        (0..self.servers.len()).find(|&i| {
            let s = &mut self.servers[i];
            if !s.is_running() {
                return false;
            }
            let log = s.log_text();
            let became = log.rfind("became primary");
            let ended = log.rfind("primary term");
            became.is_some() && became > ended
        })
    }
}

/// Writers, one thread and customer each, that move to another server
/// when theirs fails, recording per customer the last order acknowledged.
pub struct FailoverWriters {
    acked: Arc<Mutex<std::collections::HashMap<i32, i32>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FailoverWriters {
    /// Starts `customers` writers spread over `ports`.
    pub fn start(ports: &[u16], customers: i32) -> FailoverWriters {
        let acked = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..customers)
            .map(|customer| {
                let (acked, stop, ports) = (Arc::clone(&acked), Arc::clone(&stop), ports.to_vec());
                thread::spawn(move || write_with_failover(customer, &ports, &acked, &stop))
            })
            .collect();
        FailoverWriters {
            acked,
            stop,
            threads,
        }
    }

    /// Total acknowledged writes so far.
    pub fn acked_total(&self) -> i64 {
        self.acked
            .lock()
            .unwrap()
            .values()
            .map(|&v| i64::from(v) + 1)
            .sum()
    }

    /// Waits until `more` further writes are acknowledged.
    pub fn wait_for_more(&self, more: i64) -> bool {
        let target = self.acked_total() + more;
        wait_until(|| self.acked_total() >= target)
    }

    /// Stops the writers and returns the last acknowledged order per customer.
    pub fn finish(self) -> std::collections::HashMap<i32, i32> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

fn write_with_failover(
    customer: i32,
    ports: &[u16],
    acked: &Mutex<std::collections::HashMap<i32, i32>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut server = customer as usize % ports.len();
    let mut session: Option<Client> = None;
    let mut order = 0;
    // Bounded: at most this many attempts over the whole test.
    for _ in 0..1_000_000 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let c = match session.as_mut() {
            Some(c) => c,
            None => match Client::connect("127.0.0.1", ports[server], Some(Duration::from_secs(5)))
            {
                Ok(c) => session.insert(c),
                Err(_) => {
                    server = (server + 1) % ports.len();
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        match c.order(customer, order) {
            Ok(_) => {
                acked.lock().unwrap().insert(customer, order);
                order += 1;
            }
            Err(_) => {
                // The same order is sent again elsewhere: setting a record
                // to the same value twice is harmless.
                session = None;
                server = (server + 1) % ports.len();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Reads every customer in `acked` on each port; true when every server
/// returns the same value and it is at least the last acknowledged order.
pub fn converged(ports: &[u16], acked: &std::collections::HashMap<i32, i32>) -> bool {
    acked.iter().all(|(&customer, &order)| {
        let values: Vec<i32> = ports
            .iter()
            .map(|&p| {
                Client::connect("127.0.0.1", p, IO_TIMEOUT)
                    .and_then(|mut c| c.read(customer))
                    .map_or(i32::MIN, |r| r.last_order)
            })
            .collect();
        values.iter().all(|&v| v == values[0] && v >= order)
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

//! Power cuts for server processes: the LD_PRELOAD shim of
//! `tests/preload/powercut.c` (compiled here with `cc`) records what each
//! server made durable, and [`CutDir::roll_back`] turns a data directory
//! back into what a machine that lost power would find: the names of the
//! last directory fsync, each file cut to its last fsynced length. Also a
//! cluster of such servers and writers that use fresh customers after each
//! cut, so that a lost write can never be hidden by a later one.
//!
//! Used by `tests/power_cut.rs` only (through `#[path]`).
#![allow(dead_code)] // the tests use different subsets

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use factory::client::Client;

use crate::common::{free_port, peers_of, wait_until, DEADLINE, IO_TIMEOUT};

/// The compiled shim, or `None` when `cc` is missing and `FACTORY_SKIP`
/// names it (then the caller skips, loudly). Panics when `cc` is missing
/// otherwise, or fails.
pub fn shim() -> Option<PathBuf> {
    static SHIM: OnceLock<Option<PathBuf>> = OnceLock::new();
    SHIM.get_or_init(compile_shim).clone()
}

fn compile_shim() -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/preload/powercut.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("libpowercut-{}.so", std::process::id()));
    let run = Command::new("cc")
        .args([
            "-shared",
            "-fPIC",
            "-O1",
            "-Wall",
            "-Wno-format-truncation",
            "-o",
        ])
        .arg(&out)
        .arg(&source)
        .arg("-ldl")
        .output();
    match run {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let skip = std::env::var("FACTORY_SKIP").unwrap_or_default();
            if skip.split(',').any(|s| s.trim() == "cc") {
                eprintln!("power cut tests: no cc: skipped (FACTORY_SKIP)");
                return None;
            }
            panic!("cc not found: the power cut tests compile an LD_PRELOAD shim with it (set FACTORY_SKIP=cc to skip them)");
        }
        Err(e) => panic!("cannot run cc: {e}"),
        Ok(o) if !o.status.success() => panic!(
            "cc failed on {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => Some(out),
    }
}

/// Which names a rollback keeps. Both are states a real file system may
/// be found in after a power cut: a journal commit can make renames and
/// removals durable before any fsync, but never file data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// The names of the last directory fsync: nothing else reached the disk.
    LastDirFsync,
    /// The names as they are now: the journal committed every rename, but
    /// file data only as far as it was fsynced (how a snapshot renamed
    /// into place before its data became a 0-byte file).
    AsNow,
}

/// What a rollback dropped from one data directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dropped {
    /// Bytes cut off files (written but never fsynced).
    pub bytes: u64,
    /// Names removed, or put back to an older file, because no directory
    /// fsync made the change durable.
    pub names: usize,
}

/// A data directory watched by the shim: `NAME.pcdata`, with its journal
/// `NAME.pcdata.journal` and shadow directory `NAME.pcdata.shadow`.
pub struct CutDir {
    pub dir: PathBuf,
    journal: PathBuf,
    shadow: PathBuf,
    /// Names, inodes and lengths when the server started: all durable.
    baseline: Vec<(String, u64, u64)>,
}

impl CutDir {
    /// Creates the directory `parent/NAME.pcdata` and its companions.
    pub fn new(parent: &Path, name: &str) -> CutDir {
        let dir = parent.join(format!("{name}.pcdata"));
        let journal = parent.join(format!("{name}.pcdata.journal"));
        let shadow = parent.join(format!("{name}.pcdata.shadow"));
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&shadow).unwrap();
        CutDir {
            dir,
            journal,
            shadow,
            baseline: Vec::new(),
        }
    }

    /// Notes the directory as it is before a server starts on it: after a
    /// rollback (or when new) every byte of it counts as durable.
    pub fn start_watching(&mut self) {
        self.baseline = list(&self.dir)
            .into_iter()
            .map(|(name, meta)| (name, meta.ino(), meta.len()))
            .collect();
        let _ = fs::remove_file(&self.journal);
    }

    /// Rebuilds the directory as a power cut would leave it, keeping the
    /// names `keep` says. The server must be dead.
    pub fn roll_back(&mut self, keep: Names) -> Dropped {
        let journal = fs::read_to_string(&self.journal).unwrap_or_default();
        let mut synced: HashMap<u64, u64> = self
            .baseline
            .iter()
            .map(|&(_, ino, len)| (ino, len))
            .collect();
        let mut names: Vec<(String, u64)> = self
            .baseline
            .iter()
            .map(|(name, ino, _)| (name.clone(), *ino))
            .collect();
        for line in journal.lines() {
            let mut words = line.split(' ');
            match words.next() {
                Some("F") => {
                    let ino = words.next().unwrap().parse().unwrap();
                    let len = words.next().unwrap().parse().unwrap();
                    synced.insert(ino, len);
                }
                Some("D") => {
                    names = words
                        .map(|w| {
                            let (ino, name) = w.split_once('/').unwrap();
                            (name.to_string(), ino.parse().unwrap())
                        })
                        .collect();
                }
                _ => panic!("bad journal line {line:?} in {}", self.journal.display()),
            }
        }
        let now = list(&self.dir);
        if keep == Names::AsNow {
            names = now.iter().map(|(n, m)| (n.clone(), m.ino())).collect();
        }
        let mut dropped = Dropped::default();
        let mut rebuilt = Vec::new();
        for (name, ino) in &names {
            let current = now.iter().find(|(_, m)| m.ino() == *ino);
            if now.iter().all(|(n, m)| n != name || m.ino() != *ino) {
                dropped.names += 1;
            }
            let source = match current {
                Some((n, _)) => self.dir.join(n),
                None => self.shadow.join(ino.to_string()),
            };
            let bytes = fs::read(&source).unwrap_or_else(|e| {
                panic!("{} (inode {ino} of {name}) is gone: {e}", source.display())
            });
            let keep = synced
                .get(ino)
                .copied()
                .unwrap_or(0)
                .min(bytes.len() as u64);
            dropped.bytes += bytes.len() as u64 - keep;
            rebuilt.push((name.clone(), bytes[..keep as usize].to_vec()));
        }
        for (name, meta) in &now {
            if !names.iter().any(|(n, _)| n == name) {
                dropped.names += 1;
                dropped.bytes += meta.len();
            }
            fs::remove_file(self.dir.join(name)).unwrap();
        }
        for (name, bytes) in rebuilt {
            fs::write(self.dir.join(name), bytes).unwrap();
        }
        fs::remove_dir_all(&self.shadow).unwrap();
        fs::create_dir_all(&self.shadow).unwrap();
        dropped
    }

    /// Total size of the data directory's files.
    pub fn disk_bytes(&self) -> u64 {
        list(&self.dir).iter().map(|(_, m)| m.len()).sum()
    }
}

fn list(dir: &Path) -> Vec<(String, fs::Metadata)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.metadata().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A server process under the shim.
pub struct CutServer {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

/// Why a server did not come up.
#[derive(Debug)]
pub enum StartError {
    PortInUse,
    Failed(String),
}

impl CutServer {
    fn spawn(shim: &Path, args: &[String]) -> Result<CutServer, StartError> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(args)
            .env("LD_PRELOAD", shim)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().unwrap();
        let (lines, log, reader) = crate::common::capture_lines(stderr);
        let mut server = CutServer {
            child,
            log,
            lines,
            reader: Some(reader),
        };
        if server.wait_for_line("listening on") {
            return Ok(server);
        }
        server.kill();
        let text = server.log_text();
        if text.contains("already in use") {
            Err(StartError::PortInUse)
        } else {
            Err(StartError::Failed(text))
        }
    }

    /// Waits for a new log line holding `needle` (false at the deadline or
    /// when the process ends).
    pub fn wait_for_line(&self, needle: &str) -> bool {
        let end = Instant::now() + DEADLINE;
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                return true;
            }
        }
        false
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL, reaped, its log reader joined.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for CutServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` servers, each a peer of every other, each on a watched data
/// directory, started with `--fsync POLICY` and `extra` arguments.
pub struct CutCluster {
    pub servers: Vec<Option<CutServer>>,
    pub dirs: Vec<CutDir>,
    pub ports: Vec<u16>,
    shim: PathBuf,
    args: Vec<String>,
}

impl CutCluster {
    pub fn start(shim: PathBuf, root: &Path, n: usize, policy: &str, extra: &[&str]) -> CutCluster {
        let mut args = vec!["--fsync".to_string(), policy.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let dirs = (0..n)
            .map(|i| CutDir::new(root, &format!("s{i}")))
            .collect();
        let mut cluster = CutCluster {
            servers: (0..n).map(|_| None).collect(),
            dirs,
            ports: (0..n).map(|_| free_port()).collect(),
            shim,
            args,
        };
        cluster.start_all();
        cluster
    }

    /// Starts every server that is not running; panics with its log when
    /// one does not open its data directory.
    pub fn start_all(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].is_none() {
                self.start_one(i);
            }
        }
    }

    fn start_one(&mut self, i: usize) {
        self.dirs[i].start_watching();
        for _ in 0..20 {
            let mut args = vec![
                self.ports[i].to_string(),
                i.to_string(),
                (self.ports.len() - 1).to_string(),
            ];
            for (id, port) in peers_of(i, &self.ports) {
                args.extend([id.to_string(), "127.0.0.1".into(), port.to_string()]);
            }
            args.extend(["--bind".into(), "127.0.0.1".into(), "--data-dir".into()]);
            args.push(self.dirs[i].dir.display().to_string());
            args.extend(self.args.iter().cloned());
            match CutServer::spawn(&self.shim, &args) {
                Ok(s) => {
                    self.servers[i] = Some(s);
                    return;
                }
                // The old socket may linger a moment after SIGKILL.
                Err(StartError::PortInUse) => thread::sleep(Duration::from_millis(100)),
                Err(StartError::Failed(log)) => {
                    panic!("server {i} did not open its data directory again:\n{log}")
                }
            }
        }
        panic!("server {i} could not bind its port");
    }

    /// A power cut of every server: SIGKILL all, then roll every data
    /// directory back to what was durable. Returns what each lost.
    pub fn cut_all(&mut self, keep: Names) -> Vec<Dropped> {
        for s in self.servers.iter_mut() {
            if let Some(mut s) = s.take() {
                s.kill();
            }
        }
        self.dirs.iter_mut().map(|d| d.roll_back(keep)).collect()
    }

    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            if let Some(s) = s {
                out += &format!("---- server {i} ----\n{}\n", s.log_text());
            }
        }
        out
    }
}

/// Writers, one thread each, that move to another server when theirs
/// fails and write customer `round * 1000 + writer` with rising orders:
/// [`FreshWriters::next_round`] makes every writer take a new customer, so
/// no write after a cut can overwrite (and hide) one acknowledged before.
pub struct FreshWriters {
    acked: Arc<Mutex<HashMap<i32, i32>>>,
    round: Arc<AtomicI32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FreshWriters {
    pub fn start(ports: &[u16], writers: i32) -> FreshWriters {
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let round = Arc::new(AtomicI32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..writers)
            .map(|w| {
                let (acked, round, stop) =
                    (Arc::clone(&acked), Arc::clone(&round), Arc::clone(&stop));
                let ports = ports.to_vec();
                thread::spawn(move || write_loop(w, &ports, &acked, &round, &stop))
            })
            .collect();
        FreshWriters {
            acked,
            round,
            stop,
            threads,
        }
    }

    /// Acknowledged writes so far.
    pub fn acked_total(&self) -> i64 {
        self.acked
            .lock()
            .unwrap()
            .values()
            .map(|&o| i64::from(o) + 1)
            .sum()
    }

    /// Waits until `more` further writes are acknowledged.
    pub fn wait_for_more(&self, more: i64) -> bool {
        let target = self.acked_total() + more;
        wait_until(|| self.acked_total() >= target)
    }

    /// Fresh customers for every write from now on.
    pub fn next_round(&self) {
        self.round.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops the writers; returns the last acknowledged order per customer.
    pub fn finish(self) -> HashMap<i32, i32> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

fn write_loop(
    writer: i32,
    ports: &[u16],
    acked: &Mutex<HashMap<i32, i32>>,
    round: &AtomicI32,
    stop: &AtomicBool,
) {
    let mut server = writer as usize % ports.len();
    let mut session: Option<Client> = None;
    let (mut customer, mut order) = (-1, 0);
    // Bounded: at most this many attempts over the whole test.
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = round.load(Ordering::SeqCst) * 1000 + writer;
        if now != customer {
            (customer, order) = (now, 0);
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
                session = None;
                server = (server + 1) % ports.len();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One customer whose last acknowledged order is missing.
#[derive(Debug)]
pub struct Lost {
    pub customer: i32,
    pub acked: i32,
    pub found: i32,
}

/// Waits until every server returns the same value for every customer in
/// `acked`, then lists those whose agreed value is below the last
/// acknowledged order. Panics if the servers never agree.
pub fn lost_writes(ports: &[u16], acked: &HashMap<i32, i32>) -> Vec<Lost> {
    let read_all = || -> Option<HashMap<i32, i32>> {
        let mut agreed = HashMap::new();
        for (&customer, _) in acked.iter() {
            let mut values = ports.iter().map(|&p| {
                Client::connect("127.0.0.1", p, IO_TIMEOUT)
                    .and_then(|mut c| c.read(customer))
                    .map(|r| r.last_order)
                    .ok()
            });
            let first = values.next()??;
            if !values.all(|v| v == Some(first)) {
                return None;
            }
            agreed.insert(customer, first);
        }
        Some(agreed)
    };
    let mut agreed = None;
    assert!(
        wait_until(|| {
            agreed = read_all();
            agreed.is_some()
        }),
        "the servers never agreed"
    );
    let agreed = agreed.unwrap();
    let mut lost: Vec<Lost> = acked
        .iter()
        .filter(|&(c, &o)| agreed[c] < o)
        .map(|(&customer, &acked)| Lost {
            customer,
            acked,
            found: agreed[&customer],
        })
        .collect();
    lost.sort_by_key(|l| l.customer);
    lost
}

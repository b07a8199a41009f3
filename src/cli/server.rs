//! The server's command line: `server PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...` and its options.

use std::net::IpAddr;
use std::time::Duration;

use super::{host, number, ordinal, port, split_args, usage_error, Command, UsageError};
use crate::replication::lease::Timing;
use crate::server::PeerConfig;
use crate::wire::kv::KEY_CEILING;
use crate::wire::MAX_VALUE_LEN;

/// Usage text of the server.
pub const SERVER_USAGE: &str = "\
usage: server [OPTIONS] PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...
       server --witness [OPTIONS] PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...

Runs one factory server. In a cluster of three or more factory servers a
majority elects the primary (see --election): it holds a lease renewed by
heartbeats, answers a write only when every in-sync peer holds it and its
lease is live, and a new one is elected within about half a second when it
dies, pauses or is cut off; a change of the in-sync set counts only once a
majority accepted it. A write or read sent to a backup is forwarded to the
primary (reads: the backup first learns the primary's commit point). A
primary that loses its lease refuses writes and reads (the client's
connection is closed).

With the election off (one or two servers, --election off, or a cluster with
original servers) the first write a cluster without a live primary receives
makes the server that got it the primary, once its peers have told it that
it holds the longest log. A server that cannot be sure it holds every
acknowledged write (its in-sync peers are down and none that answers stayed
in sync) refuses writes; see --force-primary. Peers that are original (C++)
servers are replicated to with the original's frames.

arguments:
  PORT         TCP port to listen on (1-65535)
  FACTORY_ID   this server's id (0 or more), distinct from every peer's
  NUM_PEERS    number of peers that follow (0 or more)
  PEER_ID      a peer's factory id
  PEER_IP      a peer's host name or IP address
  PEER_PORT    a peer's port (1-65535)

options:
  --bind ADDR  listen on this address only (default 0.0.0.0, all IPv4 interfaces)
  --data-dir DIR
               keep the log durably in DIR (created if missing) and recover it
               at start; without it everything is in memory, as the original
  --fsync always|batch|never
               with --data-dir: fsync before every acknowledgement (always,
               the default); at most every 10 ms (batch: a write may be
               acknowledged before its fsync, so a power cut may lose the
               last ~10 ms of acknowledged writes); or never (the log is
               not fsynced; snapshots still are, so the directory opens)
  --force-primary
               take over even when this server cannot be sure it holds every
               acknowledged write (for example after restarting while the
               peers of its last in-sync set are down); may lose writes
  --log-retain N
               committed entries kept for catching up a backup by log suffix;
               one further behind gets a snapshot (default 100000)
  --metrics ADDR
               serve Prometheus metrics on http://ADDR/metrics (for example
               127.0.0.1:9100; port 0 picks a free one, logged at start)

election (docs/failover.md):
  --election auto|on|off
               who chooses the primary. auto (the default): a majority
               election when this server and its peers are at least three,
               else off. on: the election whatever the size. off: the
               original's rule, a takeover on a client's write. Every
               factory server of one cluster must use the same mode. A
               cluster with original (C++) servers, which never vote: use
               off; a server in auto or on that finds an original peer
               (it closes the native handshake, or streams v1 frames to
               this server) turns the election off for good and says so
  --heartbeat-ms MS
               a primary sends a heartbeat to every peer this often
               (default 50)
  --lease-ms MS
               a heartbeat acknowledged by a majority keeps the primary's
               lease for MS after it was sent; at least two heartbeats
               (default 300)
  --grace-ms MS
               a server that took a heartbeat refuses votes for MS after
               it, and one that just started for as long; at least a tenth
               more than the lease, so the old primary's lease always ends
               first (default 360)
  --election-jitter-ms MS
               a backup whose primary went silent waits a random 0..MS more
               before it stands, so that two seldom stand at once
               (default 100)
  --election-round-ms MS
               a candidate without a majority after MS lost the round and
               backs off (default 100)

experts (custom orders, docs/protocol.md, section Custom orders):
  --experts N  start N expert threads that do custom orders, each costing
               --expert-work-us, then write them like a write (default 0:
               no experts, a custom order is answered no-experts)
  --expert-queue N
               custom orders that may wait for a free expert; one more is
               answered busy at once (default 64)
  --expert-work-us US
               the work of one custom order, in microseconds: the expert
               sleeps that long, as if waiting on an outside service, so N
               experts overlap whatever the number of CPUs (default 1000)

limits (against slow, silent or hostile peers):
  --max-connections N
               most connections served at once, client sessions and
               replication streams alike; one more is accepted, logged and
               closed at once (default 4096)
  --backlog N  connections the kernel queues for the server before it accepts
               them; a burst of connects beyond it waits for SYN retransmits
               (default: net.core.somaxconn, which also caps any larger N)
  --client-write-timeout SECS
               a client that does not take a reply within SECS seconds (it
               stopped reading) is disconnected (default 10)
  --peer-timeout SECS
               a backup must take each replication frame and acknowledge it
               within SECS seconds, or the primary drops it from the in-sync
               set and catches it up later; a replication stream that stops
               in the middle of a frame is closed after as long (default 5)
  --handshake-timeout SECS
               a connection must send its 8-byte handshake within SECS
               seconds of connecting, and a client must finish each request
               it begins within as long (default 5)

protocol v2 (string keys and values, docs/protocol.md section 9):
  --max-key BYTES
               longest key a request may carry, 1 to 65535 (default 1024)
  --max-value BYTES
               longest value a request may carry, 0 to 1048576 (default 1048576)
  --max-memory BYTES
               string writes that would take the keys and values held past
               BYTES (with 64 bytes per key counted for the map) are refused
               with the status 'no memory'; reads are still served (default:
               no limit)
witness (a vote-only member, docs/failover.md section Witness):
  --witness    run as a witness: it takes part in the majority election
               (grants votes and leases) and keeps only its epoch, its vote
               and the latest in-sync set (in DIR/election with --data-dir),
               holds no log and never becomes primary; clients are told
               \"not primary\" (v2: with the primary's address; v1: the
               session is closed), the status request reports role witness.
               Two servers and a witness fail over automatically; two
               servers without one keep the takeover on a client's write.
               A witness uses --bind, --data-dir, --witnesses, the election
               timing options (give it the servers' values),
               --max-connections and --handshake-timeout; the other options
               are accepted and ignored, --force-primary is refused
  --witnesses ID[,ID...]
               these peers are witnesses (every server of the cluster must
               name them, and each witness is started with --witness)
  -h, --help   print this help and exit
  -V, --version
               print the version and exit

Logging goes to stderr, one line per event with an RFC 3339 UTC time.
RUST_LOG sets what is logged, in env_logger's syntax: a level (error, warn,
info (the default), debug, trace, off), module filters such as
factory::server=debug, or both (warn,factory::server::primary=debug: the
primary's admin, term and replicators; also ::backup, ::session and
::election). A directive that is not valid is ignored with one warning line.

SIGTERM or SIGINT stops the server gracefully: it stops listening, answers
or refuses the requests in flight, flushes the data directory, logs one
line and exits 0.

example (a three-server cluster on one host):
  server 5000 0 2 1 127.0.0.1 5001 2 127.0.0.1 5002
  server 5001 1 2 0 127.0.0.1 5000 2 127.0.0.1 5002
  server 5002 2 2 0 127.0.0.1 5000 1 127.0.0.1 5001
";

/// The server's parsed command line.
#[derive(Debug, PartialEq)]
pub struct ServerArgs {
    /// Port to listen on.
    pub port: u16,
    /// This server's id.
    pub factory_id: i32,
    /// The peers, in command-line order.
    pub peers: Vec<PeerConfig>,
    /// Address to listen on.
    pub bind: IpAddr,
    /// `--data-dir`.
    pub data_dir: Option<std::path::PathBuf>,
    /// `--fsync`.
    pub fsync: crate::storage::FsyncPolicy,
    /// `--force-primary`.
    pub force_primary: bool,
    /// `--log-retain`.
    pub log_retain: usize,
    /// `--max-connections` and the timeouts.
    pub limits: crate::server::Limits,
    /// `--metrics`.
    pub metrics: Option<std::net::SocketAddr>,
    /// `--experts`, `--expert-queue`, `--expert-work-us`.
    pub experts: crate::server::ExpertConfig,
    /// `--max-key`, `--max-value`, `--max-memory`.
    pub kv: crate::server::KvConfig,
    /// `--witness`: run as a vote-only member.
    pub witness: bool,
    /// `--witnesses`: the peer ids that are witnesses.
    pub witnesses: Vec<i32>,
    /// `--election`.
    pub election: ElectionMode,
    /// `--heartbeat-ms`, `--lease-ms`, `--grace-ms`, `--election-jitter-ms`,
    /// `--election-round-ms`.
    pub timing: Timing,
}

/// `--election`: who chooses the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionMode {
    /// The election with at least three servers, else off.
    Auto,
    /// The election whatever the cluster's size.
    On,
    /// A takeover on a client's write (the original's rule).
    Off,
}

impl ServerArgs {
    /// True if this server runs the majority election.
    pub fn election_on(&self) -> bool {
        match self.election {
            ElectionMode::On => true,
            ElectionMode::Off => false,
            ElectionMode::Auto => self.peers.len() >= 2,
        }
    }
}

/// Parses the server's arguments (without the program name).
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_server(args: &[String]) -> Result<Command<ServerArgs>, UsageError> {
    let valued = [
        "--bind",
        "--data-dir",
        "--fsync",
        "--log-retain",
        "--max-connections",
        "--backlog",
        "--client-write-timeout",
        "--peer-timeout",
        "--handshake-timeout",
        "--metrics",
        "--experts",
        "--expert-queue",
        "--expert-work-us",
        "--max-key",
        "--max-value",
        "--max-memory",
        "--witnesses",
        "--election",
        "--heartbeat-ms",
        "--lease-ms",
        "--grace-ms",
        "--election-jitter-ms",
        "--election-round-ms",
    ];
    let flags = ["--force-primary", "--witness"];
    let (pos, options) = match split_args(args, &valued, &flags)? {
        Command::Run(split) => split,
        Command::Help => return Ok(Command::Help),
        Command::Version => return Ok(Command::Version),
    };
    if pos.len() < 3 {
        return Err(usage_error(format!(
            "expected PORT FACTORY_ID NUM_PEERS, got {} argument(s)",
            pos.len()
        )));
    }
    let port = port("PORT", &pos[0])?;
    let factory_id = number("FACTORY_ID", &pos[1], 0, i32::MAX)?;
    let num_peers = number("NUM_PEERS", &pos[2], 0u16, 1000)? as usize;
    let rest = &pos[3..];
    if rest.len() != 3 * num_peers {
        return Err(usage_error(format!(
            "NUM_PEERS is {num_peers}, so expected {} peer arguments (PEER_ID PEER_IP PEER_PORT each), got {}",
            3 * num_peers,
            rest.len()
        )));
    }
    let peers = parse_peers(rest, factory_id)?;
    let mut parsed = ServerArgs {
        port,
        factory_id,
        peers,
        bind: IpAddr::from([0, 0, 0, 0]),
        data_dir: None,
        fsync: crate::storage::FsyncPolicy::Always,
        force_primary: false,
        log_retain: crate::server::DEFAULT_LOG_RETAIN,
        limits: crate::server::Limits::default(),
        metrics: None,
        experts: crate::server::ExpertConfig::default(),
        kv: crate::server::KvConfig::default(),
        witness: false,
        witnesses: Vec::new(),
        election: ElectionMode::Auto,
        timing: Timing::default(),
    };
    let mut fsync_given = false;
    for (name, value) in options {
        match name.as_str() {
            "--bind" => {
                parsed.bind = value.parse().map_err(|_| {
                    usage_error(format!("--bind must be an IP address, got '{value}'"))
                })?
            }
            "--data-dir" => parsed.data_dir = Some(host("--data-dir", &value)?.into()),
            "--fsync" => {
                fsync_given = true;
                parsed.fsync = value.parse().map_err(|_| {
                    usage_error(format!(
                        "--fsync must be always, batch or never, got '{value}'"
                    ))
                })?
            }
            "--log-retain" => {
                parsed.log_retain = number("--log-retain", &value, 1u32, u32::MAX)? as usize
            }
            "--max-connections" => {
                parsed.limits.max_connections =
                    number("--max-connections", &value, 1u32, MAX_CONNECTIONS)? as usize
            }
            "--backlog" => {
                parsed.limits.backlog = Some(number("--backlog", &value, 1u32, MAX_BACKLOG)?)
            }
            "--client-write-timeout" => {
                parsed.limits.client_write_timeout = seconds("--client-write-timeout", &value)?
            }
            "--peer-timeout" => parsed.limits.peer_timeout = seconds("--peer-timeout", &value)?,
            "--metrics" => {
                parsed.metrics = Some(value.parse().map_err(|_| {
                    usage_error(format!(
                        "--metrics must be an IP address and port such as 127.0.0.1:9100, got '{value}'"
                    ))
                })?)
            }
            "--handshake-timeout" => {
                parsed.limits.handshake_timeout = seconds("--handshake-timeout", &value)?
            }
            "--experts" => {
                parsed.experts.threads = number("--experts", &value, 0u32, MAX_EXPERTS)? as usize
            }
            "--expert-queue" => {
                parsed.experts.queue =
                    number("--expert-queue", &value, 1u32, MAX_EXPERT_QUEUE)? as usize
            }
            "--expert-work-us" => {
                parsed.experts.work = Duration::from_micros(number(
                    "--expert-work-us",
                    &value,
                    0u64,
                    MAX_EXPERT_WORK_US,
                )?)
            }
            "--max-key" => {
                parsed.kv.limits.max_key =
                    number("--max-key", &value, 1u32, KEY_CEILING as u32)? as usize
            }
            "--max-value" => {
                parsed.kv.limits.max_value =
                    number("--max-value", &value, 0u32, MAX_VALUE_LEN as u32)? as usize
            }
            "--max-memory" => {
                parsed.kv.max_memory = Some(number("--max-memory", &value, 0u64, u64::MAX >> 1)?)
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            }
            "--witnesses" => parsed.witnesses.extend(witness_ids(&value)?),
            "--witness" => parsed.witness = true,
            "--election" => {
                parsed.election = match value.as_str() {
                    "auto" => ElectionMode::Auto,
                    "on" => ElectionMode::On,
                    "off" => ElectionMode::Off,
                    _ => {
                        return Err(usage_error(format!(
                            "--election must be auto, on or off, got '{value}'"
                        )))
                    }
                }
            }
            "--heartbeat-ms" => parsed.timing.heartbeat_ms = millis(&name, &value)?,
            "--lease-ms" => parsed.timing.lease_ms = millis(&name, &value)?,
            "--grace-ms" => parsed.timing.grace_ms = millis(&name, &value)?,
            "--election-jitter-ms" => parsed.timing.jitter_ms = millis(&name, &value)?,
            "--election-round-ms" => parsed.timing.round_ms = millis(&name, &value)?,
            _ => parsed.force_primary = true,
        }
    }
    if fsync_given && parsed.data_dir.is_none() {
        return Err(usage_error("--fsync needs --data-dir"));
    }
    check_witnesses(&parsed)?;
    if let Err(e) = parsed.timing.validate() {
        return Err(usage_error(format!(
            "election timing (--heartbeat-ms, --lease-ms, --grace-ms, --election-jitter-ms, --election-round-ms): {e}"
        )));
    }
    Ok(Command::Run(parsed))
}

/// The largest `--max-connections`: each connection is a thread.
const MAX_CONNECTIONS: u32 = 1_000_000;

/// The largest `--backlog`: listen() takes a C int (and the kernel caps it
/// at `somaxconn` anyway).
const MAX_BACKLOG: u32 = i32::MAX as u32;

/// The most expert threads: each is a thread, like a connection.
const MAX_EXPERTS: u32 = 1024;

/// The longest expert queue (its orders each hold a waiting session).
const MAX_EXPERT_QUEUE: u32 = 1_000_000;

/// The longest work per custom order: one minute.
const MAX_EXPERT_WORK_US: u64 = 60_000_000;

/// An election timing option in milliseconds.
fn millis(name: &str, value: &str) -> Result<u64, UsageError> {
    number(name, value, 1u64, crate::replication::lease::MAX_TIMING_MS)
}

/// The largest timeout in seconds (one day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// A timeout of at least one second; 0 ("never") is not offered, since
/// every limit exists so that nobody waits for ever.
fn seconds(name: &str, value: &str) -> Result<Duration, UsageError> {
    number(name, value, 1u64, MAX_TIMEOUT_SECS).map(Duration::from_secs)
}

/// The ids of `--witnesses ID[,ID...]`.
fn witness_ids(value: &str) -> Result<Vec<i32>, UsageError> {
    value
        .split(',')
        .map(|id| number("--witnesses", id.trim(), 0, i32::MAX))
        .collect()
}

/// Every id in `--witnesses` is a peer, and a witness is not forced.
fn check_witnesses(args: &ServerArgs) -> Result<(), UsageError> {
    if let Some(w) = args
        .witnesses
        .iter()
        .find(|w| !args.peers.iter().any(|p| p.id == **w))
    {
        return Err(usage_error(format!(
            "--witnesses names {w}, which is not a peer id{}",
            if *w == args.factory_id {
                " (this server is one with --witness)"
            } else {
                ""
            }
        )));
    }
    if !args.witnesses.is_empty() && args.election == ElectionMode::Off {
        return Err(usage_error(
            "--witnesses needs the election (a witness only votes), not --election off",
        ));
    }
    if args.witness && args.force_primary {
        return Err(usage_error(
            "--force-primary makes no sense with --witness (a witness is never primary)",
        ));
    }
    Ok(())
}

fn parse_peers(rest: &[String], own_id: i32) -> Result<Vec<PeerConfig>, UsageError> {
    let mut peers: Vec<PeerConfig> = Vec::new();
    for (i, chunk) in rest.chunks(3).enumerate() {
        let nth = format!("the {} peer triple", ordinal(i + 1));
        let id = number(&format!("PEER_ID of {nth}"), &chunk[0], 0, i32::MAX)?;
        if id == own_id {
            return Err(usage_error(format!(
                "{nth} has peer id {id}, which is this server's FACTORY_ID"
            )));
        }
        if peers.iter().any(|p| p.id == id) {
            return Err(usage_error(format!(
                "peer id {id} is given twice ({nth} repeats it)"
            )));
        }
        peers.push(PeerConfig {
            id,
            host: host(&format!("PEER_IP of {nth} (peer id {id})"), &chunk[1])?,
            port: port(&format!("PEER_PORT of {nth} (peer id {id})"), &chunk[2])?,
        });
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn server_err(s: &str) -> String {
        parse_server(&args(s)).unwrap_err().0
    }

    #[test]
    fn server_original_command_line() {
        let Command::Run(a) =
            parse_server(&args("5000 0 2 1 127.0.0.1 5001 2 localhost 5002")).unwrap()
        else {
            panic!("expected run");
        };
        assert_eq!((a.port, a.factory_id, a.peers.len()), (5000, 0, 2));
        assert_eq!(a.peers[1].host, "localhost");
        assert_eq!(a.bind, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn server_options_anywhere() {
        let Command::Run(a) = parse_server(&args("5000 --bind 127.0.0.1 3 0")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(parse_server(&args("5000 --help")), Ok(Command::Help));
        assert_eq!(parse_server(&args("-V")), Ok(Command::Version));
    }

    #[test]
    fn server_durability_options() {
        let Command::Run(a) = parse_server(&args(
            "5000 0 0 --data-dir /tmp/x --fsync=batch --force-primary --log-retain 10",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.data_dir, Some("/tmp/x".into()));
        assert_eq!(a.fsync, crate::storage::FsyncPolicy::Batch);
        assert!(a.force_primary);
        assert_eq!(a.log_retain, 10);
        assert!(server_err("5000 0 0 --fsync always").contains("--fsync needs --data-dir"));
        assert!(server_err("5000 0 0 --data-dir d --fsync sometimes").contains("--fsync must be"));
        assert!(server_err("5000 0 0 --log-retain 0").contains("--log-retain"));
    }

    #[test]
    fn server_limits() {
        use crate::server::Limits;
        let Command::Run(a) = parse_server(&args("5000 0 0")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.limits, Limits::default());
        let Command::Run(a) = parse_server(&args(
            "5000 0 0 --max-connections 10 --client-write-timeout=1 --peer-timeout 2 --handshake-timeout 3",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.limits.max_connections, 10);
        assert_eq!(a.limits.client_write_timeout, Duration::from_secs(1));
        assert_eq!(a.limits.peer_timeout, Duration::from_secs(2));
        assert_eq!(a.limits.handshake_timeout, Duration::from_secs(3));
        assert_eq!(a.limits.connect_timeout, Limits::default().connect_timeout);
        assert!(server_err("5000 0 0 --max-connections 0").contains("--max-connections"));
        assert_eq!(a.limits.backlog, None);
        let Command::Run(a) = parse_server(&args("5000 0 0 --backlog 20000")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.limits.backlog, Some(20_000));
        assert!(server_err("5000 0 0 --backlog 0").contains("--backlog must be between 1"));
        assert!(server_err("5000 0 0 --backlog -5").contains("--backlog"));
        assert!(server_err("5000 0 0 --peer-timeout 0").contains("--peer-timeout"));
        assert!(server_err("5000 0 0 --handshake-timeout x").contains("--handshake-timeout"));
        assert!(server_err("5000 0 0 --client-write-timeout 86401")
            .contains("--client-write-timeout must be between 1 and 86400"));
    }

    #[test]
    fn server_experts() {
        use crate::server::ExpertConfig;
        let Command::Run(a) = parse_server(&args("5000 0 0")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.experts, ExpertConfig::default());
        assert_eq!(a.experts.threads, 0);
        let Command::Run(a) = parse_server(&args(
            "5000 0 0 --experts 4 --expert-queue 8 --expert-work-us=250",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.experts.threads, 4);
        assert_eq!(a.experts.queue, 8);
        assert_eq!(a.experts.work, Duration::from_micros(250));
        assert!(server_err("5000 0 0 --experts 2000").contains("--experts must be between 0"));
        assert!(server_err("5000 0 0 --expert-queue 0").contains("--expert-queue"));
        assert!(server_err("5000 0 0 --expert-work-us x").contains("--expert-work-us"));
        let d = ExpertConfig::default();
        assert!(SERVER_USAGE.contains(&format!("(default {})", d.queue)));
        assert!(SERVER_USAGE.contains(&format!("(default {})", d.work.as_micros())));
    }

    #[test]
    fn server_v2_limits() {
        let Command::Run(a) = parse_server(&args("5000 0 0")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.kv, crate::server::KvConfig::default());
        let Command::Run(a) = parse_server(&args(
            "5000 0 0 --max-key 16 --max-value=1048576 --max-memory 100000",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.kv.limits.max_key, 16);
        assert_eq!(a.kv.limits.max_value, 1 << 20);
        assert_eq!(a.kv.max_memory, Some(100_000));
        assert!(server_err("5000 0 0 --max-key 0").contains("--max-key"));
        assert!(server_err("5000 0 0 --max-key 65536").contains("--max-key"));
        assert!(server_err("5000 0 0 --max-value 1048577").contains("--max-value"));
        assert!(server_err("5000 0 0 --max-memory x").contains("--max-memory"));
    }

    #[test]
    fn server_witness() {
        let Command::Run(a) = parse_server(&args(
            "5002 2 2 0 127.0.0.1 5000 1 127.0.0.1 5001 --witness --data-dir w",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert!(a.witness);
        assert!(a.witnesses.is_empty());
        let Command::Run(a) =
            parse_server(&args("5000 0 2 1 h 5001 2 h 5002 --witnesses 2")).unwrap()
        else {
            panic!("expected run");
        };
        assert!(!a.witness);
        assert_eq!(a.witnesses, vec![2]);
        let Command::Run(a) =
            parse_server(&args("5000 0 3 1 h 1 2 h 2 3 h 3 --witnesses=2,3")).unwrap()
        else {
            panic!("expected run");
        };
        assert_eq!(a.witnesses, vec![2, 3]);
        assert!(server_err("5000 0 1 1 h 1 --witnesses 5").contains("not a peer id"));
        assert!(server_err("5000 0 1 1 h 1 --witnesses 0").contains("--witness)"));
        assert!(server_err("5000 0 1 1 h 1 --witnesses x").contains("--witnesses"));
        assert!(server_err("5000 0 1 1 h 1 --witness --force-primary").contains("--force-primary"));
        assert!(SERVER_USAGE.contains("server --witness"));
    }

    #[test]
    fn server_help_shows_the_default_limits() {
        let d = crate::server::Limits::default();
        for (option, default) in [
            ("--max-connections N", d.max_connections as u64),
            (
                "--client-write-timeout SECS",
                d.client_write_timeout.as_secs(),
            ),
            ("--peer-timeout SECS", d.peer_timeout.as_secs()),
            ("--handshake-timeout SECS", d.handshake_timeout.as_secs()),
        ] {
            let at = SERVER_USAGE.find(option).expect(option);
            let text = &SERVER_USAGE[at..];
            let shown = text.find("(default ").expect("a default");
            assert!(
                text[shown..].starts_with(&format!("(default {default})")),
                "{option}: {}",
                &text[..shown + 14]
            );
        }
    }

    #[test]
    fn server_election_options() {
        let run = |s: &str| match parse_server(&args(s)).unwrap() {
            Command::Run(a) => a,
            _ => panic!("expected run"),
        };
        assert!(!run("5000 0 0").election_on(), "one server: off");
        assert!(!run("5000 0 1 1 h 1").election_on(), "two servers: off");
        let three = run("5000 0 2 1 h 1 2 h 2");
        assert!(three.election_on(), "three servers: on");
        assert_eq!(three.timing, Timing::default());
        assert!(!run("5000 0 2 1 h 1 2 h 2 --election off").election_on());
        assert!(run("5000 0 0 --election on").election_on());
        let a = run(
            "5000 0 0 --heartbeat-ms 20 --lease-ms 100 --grace-ms 120 --election-jitter-ms 30 --election-round-ms 40",
        );
        let t = a.timing;
        assert_eq!((t.heartbeat_ms, t.lease_ms, t.grace_ms), (20, 100, 120));
        assert_eq!((t.jitter_ms, t.round_ms), (30, 40));
        assert!(server_err("5000 0 0 --election maybe").contains("--election must be"));
        assert!(server_err("5000 0 0 --lease-ms 300 --grace-ms 300").contains("grace of 300 ms"));
        assert!(server_err("5000 0 0 --heartbeat-ms 200").contains("shorter than two heartbeats"));
        assert!(
            server_err("5000 0 0 --heartbeat-ms 0").contains("--heartbeat-ms must be between 1")
        );
        let d = Timing::default();
        for (option, default) in [
            ("--heartbeat-ms MS", d.heartbeat_ms),
            ("--lease-ms MS", d.lease_ms),
            ("--grace-ms MS", d.grace_ms),
            ("--election-jitter-ms MS", d.jitter_ms),
            ("--election-round-ms MS", d.round_ms),
        ] {
            let text = &SERVER_USAGE[SERVER_USAGE.find(option).expect(option)..];
            let shown = text.find("(default ").expect("a default");
            assert!(
                text[shown..].starts_with(&format!("(default {default})")),
                "{option}"
            );
        }
    }

    #[test]
    fn server_errors_name_the_argument() {
        assert!(server_err("5000 0").contains("expected PORT FACTORY_ID NUM_PEERS"));
        assert!(server_err("0 0 0").contains("PORT must be between 1 and 65535"));
        assert!(server_err("65536 0 0").contains("PORT"));
        assert!(server_err("abc 0 0").contains("PORT must be a whole number, got 'abc'"));
        assert!(server_err("5000 -1 0").contains("FACTORY_ID"));
        assert!(server_err("5000 0 -2").contains("NUM_PEERS"));
        assert!(server_err("5000 0 1 1 h").contains("expected 3 peer arguments"));
        assert_eq!(
            server_err("5000 0 1 0 h 1"),
            "the 1st peer triple has peer id 0, which is this server's FACTORY_ID"
        );
        assert_eq!(
            server_err("5000 0 2 1 h 1 1 h 2"),
            "peer id 1 is given twice (the 2nd peer triple repeats it)"
        );
        assert!(server_err("5000 0 2 1 h 1 2 h 0")
            .starts_with("PEER_PORT of the 2nd peer triple (peer id 2) must be between 1"));
        assert!(server_err("5000 0 1 x h 1").contains("PEER_ID of the 1st peer triple"));
        assert!(server_err("5000 0 0 --bind nowhere").contains("--bind"));
        assert!(server_err("5000 0 0 --metrics 9100").contains("--metrics must be"));
        let Command::Run(a) = parse_server(&args("5000 0 0 --metrics [::1]:9100")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.metrics, Some("[::1]:9100".parse().unwrap()));
        assert!(server_err("5000 0 0 --frob").contains("unknown option '--frob'"));
    }
}

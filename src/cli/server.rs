//! The server's command line: `server PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...` and its options.

use std::net::IpAddr;
use std::time::Duration;

use super::{host, number, port, split_args, usage_error, Command, UsageError};
use crate::server::PeerConfig;
use crate::wire::kv::KEY_CEILING;
use crate::wire::MAX_VALUE_LEN;

/// Usage text of the server.
pub const SERVER_USAGE: &str = "\
usage: server [OPTIONS] PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...

Runs one factory server. The first write a cluster without a live primary
receives makes the server that got it the primary, once its peers have told
it that it holds the longest log; the primary then answers a write only when
every in-sync peer holds it. A write sent to a backup is forwarded to the
primary. A server that cannot be sure it holds every acknowledged write (its
in-sync peers are down and none that answers stayed in sync) refuses writes:
the client's connection is closed; see --force-primary. Peers that are
original (C++) servers are replicated to with the original's frames.

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

limits (against slow, silent or hostile peers):
  --max-connections N
               most connections served at once, client sessions and
               replication streams alike; one more is accepted, logged and
               closed at once (default 4096)
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
  -h, --help   print this help and exit
  -V, --version
               print the version and exit

Logging goes to stderr; RUST_LOG=error|warn|info|debug|trace|off sets the
level (default info).

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
    /// `--max-key`, `--max-value`, `--max-memory`.
    pub kv: crate::server::KvConfig,
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
        "--client-write-timeout",
        "--peer-timeout",
        "--handshake-timeout",
        "--max-key",
        "--max-value",
        "--max-memory",
    ];
    let (pos, options) = match split_args(args, &valued, &["--force-primary"])? {
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
        kv: crate::server::KvConfig::default(),
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
            "--client-write-timeout" => {
                parsed.limits.client_write_timeout = seconds("--client-write-timeout", &value)?
            }
            "--peer-timeout" => parsed.limits.peer_timeout = seconds("--peer-timeout", &value)?,
            "--handshake-timeout" => {
                parsed.limits.handshake_timeout = seconds("--handshake-timeout", &value)?
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
            _ => parsed.force_primary = true,
        }
    }
    if fsync_given && parsed.data_dir.is_none() {
        return Err(usage_error("--fsync needs --data-dir"));
    }
    Ok(Command::Run(parsed))
}

/// The largest `--max-connections`: each connection is a thread.
const MAX_CONNECTIONS: u32 = 1_000_000;

/// The largest timeout in seconds (one day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// A timeout of at least one second; 0 ("never") is not offered, since
/// every limit exists so that nobody waits for ever.
fn seconds(name: &str, value: &str) -> Result<Duration, UsageError> {
    number(name, value, 1u64, MAX_TIMEOUT_SECS).map(Duration::from_secs)
}

fn parse_peers(rest: &[String], own_id: i32) -> Result<Vec<PeerConfig>, UsageError> {
    let mut peers: Vec<PeerConfig> = Vec::new();
    for (i, chunk) in rest.chunks(3).enumerate() {
        let n = i + 1;
        let id = number(&format!("PEER_ID of peer {n}"), &chunk[0], 0, i32::MAX)?;
        if id == own_id {
            return Err(usage_error(format!(
                "peer {n} has id {id}, the same as FACTORY_ID"
            )));
        }
        if peers.iter().any(|p| p.id == id) {
            return Err(usage_error(format!("peer id {id} is given twice")));
        }
        peers.push(PeerConfig {
            id,
            host: host(&format!("PEER_IP of peer {n}"), &chunk[1])?,
            port: port(&format!("PEER_PORT of peer {n}"), &chunk[2])?,
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
        assert!(server_err("5000 0 0 --peer-timeout 0").contains("--peer-timeout"));
        assert!(server_err("5000 0 0 --handshake-timeout x").contains("--handshake-timeout"));
        assert!(server_err("5000 0 0 --client-write-timeout 86401")
            .contains("--client-write-timeout must be between 1 and 86400"));
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
    fn server_errors_name_the_argument() {
        assert!(server_err("5000 0").contains("expected PORT FACTORY_ID NUM_PEERS"));
        assert!(server_err("0 0 0").contains("PORT must be between 1 and 65535"));
        assert!(server_err("65536 0 0").contains("PORT"));
        assert!(server_err("abc 0 0").contains("PORT must be a whole number, got 'abc'"));
        assert!(server_err("5000 -1 0").contains("FACTORY_ID"));
        assert!(server_err("5000 0 -2").contains("NUM_PEERS"));
        assert!(server_err("5000 0 1 1 h").contains("expected 3 peer arguments"));
        assert!(server_err("5000 0 1 0 h 1").contains("same as FACTORY_ID"));
        assert!(server_err("5000 0 2 1 h 1 1 h 2").contains("given twice"));
        assert!(server_err("5000 0 1 1 h 0").contains("PEER_PORT of peer 1"));
        assert!(server_err("5000 0 0 --bind nowhere").contains("--bind"));
        assert!(server_err("5000 0 0 --frob").contains("unknown option '--frob'"));
    }
}

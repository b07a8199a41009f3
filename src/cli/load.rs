//! The balancer's command line: `load PORT CACHE_SIZE NUM_SERVERS [ID HOST PORT]...`
//! (the shape of the seed's balancer) and its options.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{host, number, port, split_args, usage_error, Command, UsageError};
use crate::balancer::{BalancerConfig, UpstreamOptions};

/// Usage text of the balancer.
pub const LOAD_USAGE: &str = "\
usage: load [OPTIONS] PORT CACHE_SIZE NUM_SERVERS [ID HOST PORT]...

Runs a load balancer in front of a factory cluster: clients connect to it
exactly as to a server (the original client works through it unchanged).
Writes go to the cluster's primary, which it finds with the servers'
status request and follows when it changes; reads go round robin over the
primary and the backups that follow it (each answers linearizably: a
backup confirms the primary's commit point first). A request whose server
fails (refused, reset, timed out, or closed) is sent again until
--deadline, so a client through the balancer does not see a failover.
Sessions to the servers are pooled and reused.

Protocol v2 clients (string keys) connect to it too, pipelined and
answered in order; reads and puts are resent across failures, while a
create, update, delete or cas whose outcome a failure made unknown is
answered `unavailable` (its outcome unknown), never resent. String keys
are not cached.

With CACHE_SIZE > 0 it keeps an LRU of customers' last orders, filled by
reads and writes through it and kept coherent with every commit of the
cluster, whatever path the write took: it follows the primary's commit
stream, and answers a read from the cache only after the primary
confirmed a commit point asked for after the read began and the stream
reached it. A cached read is as linearizable as a read on a server.

arguments:
  PORT         TCP port to listen on (1-65535)
  CACHE_SIZE   records the read cache may hold (0: no cache, every read
               goes to a server); see docs/balancer.md
  NUM_SERVERS  number of servers that follow (1 or more)
  ID           a server's factory id
  HOST         a server's host name or IP address
  PORT         a server's port (1-65535)

options:
  --bind ADDR  listen on this address only (default 0.0.0.0, all IPv4 interfaces)
  --deadline SECS
               the longest one request may take, retries across a failover
               included; past it the client's connection is closed (default 30)
  --attempt-timeout SECS
               the longest one attempt waits on one server (default 5)
  --pool N     idle sessions kept open per server (default 64)
  --max-connections N
               most client connections served at once (default 4096)
  --metrics ADDR
               serve Prometheus metrics at http://ADDR/metrics: requests
               received, requests each server answered, retries, failovers,
               the primary, the cache's hits, misses, invalidations and
               size (ADDR as IP:PORT)
  --handshake-timeout SECS
               a client must send its 8-byte handshake, and finish each
               request it begins, within SECS seconds (default 5)
  --client-write-timeout SECS
               a client that does not take a reply within SECS seconds is
               disconnected (default 10)
  -h, --help   print this help and exit
  -V, --version
               print the version and exit

Logging goes to stderr; RUST_LOG=error|warn|info|debug|trace|off sets the
level (default info).

example (in front of a three-server cluster on one host):
  load 6000 0 3 0 127.0.0.1 5000 1 127.0.0.1 5001 2 127.0.0.1 5002
";

/// Parses the balancer's arguments (without the program name).
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_load(args: &[String]) -> Result<Command<BalancerConfig>, UsageError> {
    let valued = [
        "--bind",
        "--deadline",
        "--attempt-timeout",
        "--pool",
        "--max-connections",
        "--handshake-timeout",
        "--client-write-timeout",
        "--metrics",
    ];
    let (pos, options) = match split_args(args, &valued, &[])? {
        Command::Run(split) => split,
        Command::Help => return Ok(Command::Help),
        Command::Version => return Ok(Command::Version),
    };
    if pos.len() < 3 {
        return Err(usage_error(format!(
            "expected PORT CACHE_SIZE NUM_SERVERS, got {} argument(s)",
            pos.len()
        )));
    }
    let listen = port("PORT", &pos[0])?;
    let cache_size = number("CACHE_SIZE", &pos[1], 0u32, u32::MAX)? as usize;
    let n = number("NUM_SERVERS", &pos[2], 1u16, 1000)? as usize;
    let rest = &pos[3..];
    if rest.len() != 3 * n {
        return Err(usage_error(format!(
            "NUM_SERVERS is {n}, so expected {} server arguments (ID HOST PORT each), got {}",
            3 * n,
            rest.len()
        )));
    }
    let mut ids = Vec::new();
    let mut servers = Vec::new();
    for (i, chunk) in rest.chunks(3).enumerate() {
        let k = i + 1;
        let id = number(&format!("ID of server {k}"), &chunk[0], 0, i32::MAX)?;
        if ids.contains(&id) {
            return Err(usage_error(format!("server id {id} is given twice")));
        }
        ids.push(id);
        let h = host(&format!("HOST of server {k}"), &chunk[1])?;
        let p = port(&format!("PORT of server {k}"), &chunk[2])?;
        servers.push(if h.contains(':') {
            format!("[{h}]:{p}")
        } else {
            format!("{h}:{p}")
        });
    }
    let mut config = BalancerConfig {
        bind: SocketAddr::from(([0, 0, 0, 0], listen)),
        cache_size,
        server_ids: ids,
        ..BalancerConfig::loopback(listen, servers)
    };
    let mut upstream = UpstreamOptions::default();
    for (name, value) in options {
        match name.as_str() {
            "--bind" => {
                let ip: IpAddr = value.parse().map_err(|_| {
                    usage_error(format!("--bind must be an IP address, got '{value}'"))
                })?;
                config.bind = SocketAddr::new(ip, listen);
            }
            "--deadline" => upstream.deadline = seconds("--deadline", &value)?,
            "--attempt-timeout" => upstream.attempt_timeout = seconds("--attempt-timeout", &value)?,
            "--pool" => {
                upstream.pool_per_server = number("--pool", &value, 0u32, 100_000)? as usize
            }
            "--max-connections" => {
                config.max_connections =
                    number("--max-connections", &value, 1u32, 1_000_000)? as usize
            }
            "--metrics" => {
                config.metrics = Some(value.parse().map_err(|_| {
                    usage_error(format!(
                        "--metrics must be an address such as 127.0.0.1:9100, got '{value}'"
                    ))
                })?)
            }
            "--handshake-timeout" => {
                config.handshake_timeout = seconds("--handshake-timeout", &value)?
            }
            _ => config.client_write_timeout = seconds("--client-write-timeout", &value)?,
        }
    }
    config.upstream = upstream;
    Ok(Command::Run(config))
}

fn seconds(name: &str, value: &str) -> Result<Duration, UsageError> {
    number(name, value, 1u64, 86_400).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn err(s: &str) -> String {
        parse_load(&args(s)).unwrap_err().0
    }

    #[test]
    fn the_seeds_command_line() {
        let Command::Run(c) =
            parse_load(&args("6000 100 2 0 127.0.0.1 5000 1 localhost 5001")).unwrap()
        else {
            panic!("expected run");
        };
        assert_eq!(c.bind, SocketAddr::from(([0, 0, 0, 0], 6000)));
        assert_eq!(c.cache_size, 100);
        assert_eq!(c.servers, ["127.0.0.1:5000", "localhost:5001"]);
        assert_eq!(c.server_ids, [0, 1]);
        assert_eq!(c.metrics, None);
        assert_eq!(c.upstream, UpstreamOptions::default());
    }

    #[test]
    fn options() {
        let Command::Run(c) = parse_load(&args(
            "6000 0 1 7 ::1 5000 --metrics 127.0.0.1:9100 --bind 127.0.0.1 --deadline 7 --attempt-timeout=2 --pool 3 --max-connections 9",
        ))
        .unwrap() else {
            panic!("expected run");
        };
        assert_eq!(c.bind, SocketAddr::from(([127, 0, 0, 1], 6000)));
        assert_eq!(c.servers, ["[::1]:5000"]);
        assert_eq!(c.server_ids, [7]);
        assert_eq!(c.metrics, Some(SocketAddr::from(([127, 0, 0, 1], 9100))));
        assert_eq!(c.upstream.deadline, Duration::from_secs(7));
        assert_eq!(c.upstream.attempt_timeout, Duration::from_secs(2));
        assert_eq!(c.upstream.pool_per_server, 3);
        assert_eq!(c.max_connections, 9);
        assert_eq!(parse_load(&args("--help")), Ok(Command::Help));
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(err("6000 0").contains("expected PORT CACHE_SIZE NUM_SERVERS"));
        assert!(err("6000 -1 1 0 h 1").contains("CACHE_SIZE"));
        assert!(err("6000 0 0").contains("NUM_SERVERS"));
        assert!(err("6000 0 1 0 h").contains("expected 3 server arguments"));
        assert!(err("6000 0 2 0 h 1 0 h 2").contains("given twice"));
        assert!(err("6000 0 1 0 h 0").contains("PORT of server 1"));
        assert!(err("6000 0 1 0 h 1 --deadline 0").contains("--deadline"));
        assert!(err("6000 0 1 0 h 1 --metrics 9100").contains("--metrics"));
        assert!(err("6000 0 1 0 h 1 --frob").contains("unknown option '--frob'"));
    }

    #[test]
    fn help_says_what_the_cache_guarantees() {
        assert!(!LOAD_USAGE.contains("NOT USED"));
        assert!(LOAD_USAGE.contains("as linearizable as a read on a server"));
    }
}

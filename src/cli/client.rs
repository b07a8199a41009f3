//! The client's command line: the original's
//! `client IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE`, the same load
//! against a cluster (`--servers`), the one-shot `order` and `read`
//! commands, and `--status`.

use std::time::Duration;

use super::{host, number, port, split_args, usage_error, Command, UsageError};
use crate::client::connect::split_host_port;
use crate::client::load::{LoadConfig, Target};

/// Usage text of the client.
pub const CLIENT_USAGE: &str = "\
usage: client [OPTIONS] IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE
       client [OPTIONS] --servers H:P,H:P,... NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE
       client [OPTIONS] order H:P CUSTOMER ORDER
       client [OPTIONS] read H:P CUSTOMER
       client [OPTIONS] --servers H:P,... order CUSTOMER ORDER
       client [OPTIONS] --servers H:P,... read CUSTOMER
       client [OPTIONS] --status H:P[,H:P...]
       client kv get|put|create|update|delete|cas|scan H:P ... [OPTIONS]
                 (protocol v2 string keys and values: see 'client kv --help')

Load run: starts NUM_CUSTOMERS threads, one connection each, numbered
0..NUM_CUSTOMERS-1. With --servers, each thread uses the cluster client: it
finds the primary, and when a server fails, times out or closes the session
it resends the request to the next server (with backoff, within --timeout),
so the run rides through a failover.

REQUEST_TYPE:
  1  write: each customer places orders 0..NUM_ORDERS-1
  2  read: each customer reads its own record NUM_ORDERS times
  3  scan: each thread reads customers 0..NUM_ORDERS-1 and prints
     \"customer_id<TAB>last_order\" per customer (-1: no order); use
     NUM_CUSTOMERS = 1 for one listing
  4  custom: as 1, but each order is a custom order done by one of the
     server's experts (server --experts); one answered busy or \"no
     experts\" counts as failed

For modes 1, 2 and 4 the last line is: mean latency (us), min (us), max (us),
throughput (ops/s), tab-separated with three decimals; with --percentiles
two more fields follow: p50 (us) and p99 (us), to within 1/128.

One-shot commands: 'order' places ORDER as CUSTOMER's last order and waits
until it is committed; 'read' prints CUSTOMER's committed record. Both print
\"customer_id<TAB>last_order\" (-1: no order).

--status asks each server for its view of the cluster (role, epoch, primary,
in-sync set, indexes, each backup's lag, client sessions, uptime) and prints
one table; a server that runs the original C++ build shows as \"original\",
one that cannot be reached as \"unreachable\".

Exit status: 0 when every request succeeded (with --status: every server
answered or is an original), 1 when a server cannot be reached or any
request failed (the count is printed on stderr), 2 for a bad command line;
'client kv' commands exit 3 when the operation's condition did not hold
(key not found, key exists, version mismatch).

arguments:
  IP             server host name or IP address
  PORT           server port (1-65535)
  H:P            a server as HOST:PORT ([ADDR]:PORT for IPv6)
  NUM_CUSTOMERS  number of customer threads (0-10000)
  NUM_ORDERS     requests per customer, or customers to scan (0 or more)
  REQUEST_TYPE   1, 2, 3 or 4
  CUSTOMER       customer id (0-2147483647)
  ORDER          order number

options:
  --servers LIST  the cluster's servers, comma-separated H:P, in place of
                  IP PORT (load run) or H:P (order, read)
  --status LIST   print the status of the servers in LIST and exit
  --timeout SECS  give up on a server that does not answer within SECS
                  seconds (default 30; 0 waits forever); with --servers,
                  the deadline of each request, retries included; with
                  --status, each server's (default 5)
  --percentiles   end the stats line with p50 and p99 latency (us)
  --human         print the stats line with labels and units
  --json          print JSON: the stats line as one object, each record
                  (scan, order, read) as one object per line, the status
                  table as one object
  -h, --help      print this help and exit
  -V, --version   print the version and exit
";

pub use crate::client::load::Mode;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// As the original: tab-separated numbers.
    #[default]
    Plain,
    /// Labelled, with units (`--human`).
    Human,
    /// JSON (`--json`).
    Json,
}

/// What the client is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientCommand {
    /// A load run (the original's command, or `--servers`).
    Load(LoadConfig),
    /// Place one order.
    Order {
        target: Target,
        customer_id: i32,
        order_number: i32,
        timeout: Option<Duration>,
    },
    /// Read one record.
    Read {
        target: Target,
        customer_id: i32,
        timeout: Option<Duration>,
    },
    /// Print the status of these servers.
    Status {
        servers: Vec<String>,
        timeout: Duration,
    },
    /// A protocol v2 request (`client kv ...`).
    Kv(super::kv::KvArgs),
    /// A v2 load run (`kv load`, `cli::kv_load`).
    KvLoad(crate::client::kv_load::KvLoadConfig),
}

/// The client's parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientArgs {
    /// What to do.
    pub command: ClientCommand,
    /// How to print it.
    pub output: Output,
}

/// The most customer threads the client starts.
pub const MAX_CUSTOMERS: i32 = 10_000;

/// Timeout of each status request when none is given.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Options as parsed, before the positionals say which command they go with.
#[derive(Default)]
struct Options {
    timeout: Option<Option<Duration>>,
    percentiles: bool,
    output: Output,
    servers: Option<Vec<String>>,
    status: Option<Vec<String>>,
}

/// Parses the client's arguments (without the program name).
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_client(args: &[String]) -> Result<Command<ClientArgs>, UsageError> {
    if let [kv, load, rest @ ..] = args {
        if kv == "kv" && load == "load" {
            return Ok(match super::kv_load::parse_kv_load(rest)? {
                Command::Run((config, output)) => Command::Run(ClientArgs {
                    command: ClientCommand::KvLoad(config),
                    output,
                }),
                Command::Help => Command::Help,
                Command::Version => Command::Version,
            });
        }
    }
    if args.first().is_some_and(|a| a == "kv") {
        return super::kv::parse_kv(&args[1..]);
    }
    let valued = ["--timeout", "--servers", "--status"];
    let flags = ["--percentiles", "--json", "--human"];
    let (pos, options) = match split_args(args, &valued, &flags)? {
        Command::Run(split) => split,
        Command::Help => return Ok(Command::Help),
        Command::Version => return Ok(Command::Version),
    };
    let opts = parse_options(options)?;
    let output = opts.output;
    let command = if let Some(servers) = opts.status.clone() {
        status_command(&pos, &opts, servers)?
    } else {
        match pos.first().map(String::as_str) {
            Some("order") => one_shot(&pos, &opts, true)?,
            Some("read") => one_shot(&pos, &opts, false)?,
            _ => ClientCommand::Load(load_command(&pos, &opts)?),
        }
    };
    if opts.percentiles && !matches!(command, ClientCommand::Load(_)) {
        return Err(usage_error("--percentiles applies to a load run only"));
    }
    Ok(Command::Run(ClientArgs { command, output }))
}

fn parse_options(options: Vec<(String, String)>) -> Result<Options, UsageError> {
    let mut opts = Options::default();
    for (name, value) in options {
        match name.as_str() {
            "--percentiles" => opts.percentiles = true,
            "--json" | "--human" => {
                opts.output = super::output_option(opts.output, &name)?;
            }
            "--servers" => opts.servers = Some(super::server_list("--servers", &value)?),
            "--status" => opts.status = Some(super::server_list("--status", &value)?),
            _ => {
                let secs: u64 = number("--timeout", &value, 0, 86_400)?;
                opts.timeout = Some((secs > 0).then(|| Duration::from_secs(secs)));
            }
        }
    }
    Ok(opts)
}

fn default_timeout(opts: &Options) -> Option<Duration> {
    opts.timeout.unwrap_or(Some(Duration::from_secs(30)))
}

fn status_command(
    pos: &[String],
    opts: &Options,
    servers: Vec<String>,
) -> Result<ClientCommand, UsageError> {
    if !pos.is_empty() {
        return Err(usage_error(format!(
            "--status takes no other arguments, got '{}'",
            pos[0]
        )));
    }
    if opts.servers.is_some() {
        return Err(usage_error(
            "--status takes the server list itself; drop --servers",
        ));
    }
    let timeout = opts
        .timeout
        .map_or(STATUS_TIMEOUT, |t| t.unwrap_or(Duration::from_secs(86_400)));
    Ok(ClientCommand::Status { servers, timeout })
}

/// `order [H:P] CUSTOMER ORDER` or `read [H:P] CUSTOMER`.
fn one_shot(pos: &[String], opts: &Options, is_order: bool) -> Result<ClientCommand, UsageError> {
    let (verb, shape) = if is_order {
        ("order", "CUSTOMER ORDER")
    } else {
        ("read", "CUSTOMER")
    };
    let want = if is_order { 2 } else { 1 } + usize::from(opts.servers.is_none());
    let rest = &pos[1..];
    if rest.len() != want {
        let form = if opts.servers.is_some() {
            format!("--servers LIST {verb} {shape}")
        } else {
            format!("{verb} H:P {shape}")
        };
        return Err(usage_error(format!(
            "expected {form}: {want} arguments after '{verb}', got {}",
            rest.len()
        )));
    }
    let (target, args) = match &opts.servers {
        Some(list) => (Target::Cluster(list.clone()), rest),
        None => {
            let (host, port) =
                split_host_port(&rest[0]).map_err(|e| usage_error(format!("H:P: {e}")))?;
            (Target::Server { host, port }, &rest[1..])
        }
    };
    let customer_id = number("CUSTOMER", &args[0], 0, i32::MAX)?;
    let timeout = default_timeout(opts);
    Ok(if is_order {
        ClientCommand::Order {
            target,
            customer_id,
            order_number: number("ORDER", &args[1], i32::MIN, i32::MAX)?,
            timeout,
        }
    } else {
        ClientCommand::Read {
            target,
            customer_id,
            timeout,
        }
    })
}

fn load_command(pos: &[String], opts: &Options) -> Result<LoadConfig, UsageError> {
    let (target, counts) = match &opts.servers {
        Some(list) => {
            if pos.len() != 3 {
                return Err(usage_error(format!(
                    "expected 3 arguments after --servers (NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE), got {}",
                    pos.len()
                )));
            }
            (Target::Cluster(list.clone()), pos)
        }
        None => {
            if pos.len() != 5 {
                return Err(usage_error(format!(
                    "expected 5 arguments (IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE), got {}",
                    pos.len()
                )));
            }
            let target = Target::Server {
                host: host("IP", &pos[0])?,
                port: port("PORT", &pos[1])?,
            };
            (target, &pos[2..])
        }
    };
    let mode = match number::<i32>("REQUEST_TYPE", &counts[2], 1, 4)? {
        1 => Mode::Write,
        2 => Mode::Read,
        3 => Mode::Scan,
        _ => Mode::Custom,
    };
    Ok(LoadConfig {
        target,
        customers: number("NUM_CUSTOMERS", &counts[0], 0, MAX_CUSTOMERS)?,
        orders: number("NUM_ORDERS", &counts[1], 0, i32::MAX)?,
        mode,
        timeout: default_timeout(opts),
        percentiles: opts.percentiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> ClientArgs {
        match parse_client(&args(s)).unwrap() {
            Command::Run(a) => a,
            other => panic!("expected run, got {other:?}"),
        }
    }

    fn load(s: &str) -> LoadConfig {
        match run(s).command {
            ClientCommand::Load(c) => c,
            other => panic!("expected a load run, got {other:?}"),
        }
    }

    fn client_err(s: &str) -> String {
        parse_client(&args(s)).unwrap_err().0
    }

    #[test]
    fn client_command_line() {
        let a = load("127.0.0.1 5000 8 100 3");
        assert_eq!(a.mode, Mode::Scan);
        assert_eq!(
            a.target,
            Target::Server {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert_eq!((a.customers, a.orders), (8, 100));
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        let a = load("h 1 1 1 1 --timeout=0");
        assert_eq!(a.timeout, None);
        assert!(!a.percentiles);
        assert!(load("h 1 --percentiles 1 1 1").percentiles);
    }

    #[test]
    fn cluster_load_and_one_shots() {
        let a = load("--servers a:1,b:2 4 10 1");
        assert_eq!(a.target, Target::Cluster(vec!["a:1".into(), "b:2".into()]));
        assert_eq!((a.customers, a.orders, a.mode), (4, 10, Mode::Write));
        assert_eq!(
            run("order h:7 3 42 --json"),
            ClientArgs {
                command: ClientCommand::Order {
                    target: Target::Server {
                        host: "h".into(),
                        port: 7
                    },
                    customer_id: 3,
                    order_number: 42,
                    timeout: Some(Duration::from_secs(30)),
                },
                output: Output::Json,
            }
        );
        assert!(matches!(
            run("--servers a:1 read 3").command,
            ClientCommand::Read {
                target: Target::Cluster(_),
                customer_id: 3,
                ..
            }
        ));
        assert!(matches!(
            run("--status a:1,[::1]:2 --timeout 2").command,
            ClientCommand::Status { servers, timeout }
                if servers.len() == 2 && timeout == Duration::from_secs(2)
        ));
        assert_eq!(run("h 1 1 1 1 --human").output, Output::Human);
    }

    #[test]
    fn client_errors_name_the_argument() {
        assert!(client_err("h 1 1 1").contains("expected 5 arguments"));
        assert!(client_err("h 1 -1 1 1").contains("NUM_CUSTOMERS must be between 0"));
        assert!(client_err("h 1 1 -5 1").contains("NUM_ORDERS"));
        assert!(client_err("h 1 1 1 5").contains("REQUEST_TYPE must be between 1 and 4"));
        assert!(client_err("h 70000 1 1 1").contains("PORT"));
        assert!(client_err("h 1 1 1 1 --timeout x").contains("--timeout"));
        assert!(client_err("h 1 1 1 1 --timeout").contains("needs a value"));
        assert!(client_err("h 1 1 1 1 --percentiles=yes").contains("unknown option"));
        assert!(client_err("--servers a:1 h 1 1 1 1").contains("expected 3 arguments"));
        assert!(client_err("--servers a 1 1 1").contains("'a' is not HOST:PORT"));
        assert!(client_err("--servers , 1 1 1").contains("at least one"));
        assert!(client_err("order h:1 3").contains("expected order H:P CUSTOMER ORDER"));
        assert!(client_err("read h 3").contains("H:P"));
        assert!(client_err("read h:1 -1").contains("CUSTOMER must be between 0"));
        assert!(client_err("--status a:1 h").contains("--status takes no other"));
        assert!(client_err("--json --human --status a:1").contains("exclude"));
        assert!(client_err("--percentiles read h:1 1").contains("load run only"));
    }
}

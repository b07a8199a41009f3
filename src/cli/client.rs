//! The client's command line: `client IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE` and its options.

use std::time::Duration;

use super::{host, number, port, split_args, usage_error, Command, UsageError};

/// Usage text of the client.
pub const CLIENT_USAGE: &str = "\
usage: client [OPTIONS] IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE

Starts NUM_CUSTOMERS threads, one connection each, numbered 0..NUM_CUSTOMERS-1.

REQUEST_TYPE:
  1  write: each customer places orders 0..NUM_ORDERS-1
  2  read: each customer reads its own record NUM_ORDERS times
  3  scan: each thread reads customers 0..NUM_ORDERS-1 and prints
     \"customer_id<TAB>last_order\" per customer (-1: no order); use
     NUM_CUSTOMERS = 1 for one listing

For modes 1 and 2 the last line is: mean latency (us), min (us), max (us),
throughput (ops/s), tab-separated with three decimals; with --percentiles
two more fields follow: p50 (us) and p99 (us), to within 1/128.

Exit status: 0 when every request succeeded, 1 when the server cannot be
reached or any request failed (the count is printed on stderr), 2 for a bad
command line.

arguments:
  IP             server host name or IP address
  PORT           server port (1-65535)
  NUM_CUSTOMERS  number of customer threads (0-10000)
  NUM_ORDERS     requests per customer, or customers to scan (0 or more)
  REQUEST_TYPE   1, 2 or 3

options:
  --timeout SECS  give up on a server that does not answer within SECS
                  seconds (default 30; 0 waits forever)
  --percentiles   end the stats line with p50 and p99 latency (us)
  -h, --help      print this help and exit
  -V, --version   print the version and exit
";

pub use crate::client::load::Mode;

/// The client's parsed command line: a load run.
pub type ClientArgs = crate::client::load::LoadConfig;

/// The most customer threads the client starts.
pub const MAX_CUSTOMERS: i32 = 10_000;

/// Parses the client's arguments (without the program name).
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_client(args: &[String]) -> Result<Command<ClientArgs>, UsageError> {
    let (pos, options) = match split_args(args, &["--timeout"], &["--percentiles"])? {
        Command::Run(split) => split,
        Command::Help => return Ok(Command::Help),
        Command::Version => return Ok(Command::Version),
    };
    if pos.len() != 5 {
        return Err(usage_error(format!(
            "expected 5 arguments (IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE), got {}",
            pos.len()
        )));
    }
    let mode = match number::<i32>("REQUEST_TYPE", &pos[4], 1, 3)? {
        1 => Mode::Write,
        2 => Mode::Read,
        _ => Mode::Scan,
    };
    let mut timeout = Some(Duration::from_secs(30));
    let mut percentiles = false;
    for (name, value) in options {
        if name == "--percentiles" {
            percentiles = true;
            continue;
        }
        let secs: u64 = number("--timeout", &value, 0, 86_400)?;
        timeout = (secs > 0).then(|| Duration::from_secs(secs));
    }
    Ok(Command::Run(ClientArgs {
        host: host("IP", &pos[0])?,
        port: port("PORT", &pos[1])?,
        customers: number("NUM_CUSTOMERS", &pos[2], 0, MAX_CUSTOMERS)?,
        orders: number("NUM_ORDERS", &pos[3], 0, i32::MAX)?,
        mode,
        timeout,
        percentiles,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn client_err(s: &str) -> String {
        parse_client(&args(s)).unwrap_err().0
    }

    #[test]
    fn client_command_line() {
        let Command::Run(a) = parse_client(&args("127.0.0.1 5000 8 100 3")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.mode, Mode::Scan);
        assert_eq!((a.customers, a.orders), (8, 100));
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        let Command::Run(a) = parse_client(&args("h 1 1 1 1 --timeout=0")).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(a.timeout, None);
        assert!(!a.percentiles);
        let Command::Run(a) = parse_client(&args("h 1 --percentiles 1 1 1")).unwrap() else {
            panic!("expected run");
        };
        assert!(a.percentiles);
    }

    #[test]
    fn client_errors_name_the_argument() {
        assert!(client_err("h 1 1 1").contains("expected 5 arguments"));
        assert!(client_err("h 1 -1 1 1").contains("NUM_CUSTOMERS must be between 0"));
        assert!(client_err("h 1 1 -5 1").contains("NUM_ORDERS"));
        assert!(client_err("h 1 1 1 4").contains("REQUEST_TYPE must be between 1 and 3"));
        assert!(client_err("h 70000 1 1 1").contains("PORT"));
        assert!(client_err("h 1 1 1 1 --timeout x").contains("--timeout"));
        assert!(client_err("h 1 1 1 1 --timeout").contains("needs a value"));
        assert!(client_err("h 1 1 1 1 --percentiles=yes").contains("unknown option"));
    }
}

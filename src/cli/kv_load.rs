//! `client kv load`: its command line, help text and output (the load
//! itself is `client::kv_load`). `parse_client` hands it every command
//! line that starts with `kv load`; the `client` binary calls [`run`].

use std::process::ExitCode;
use std::time::Duration;

use super::{number, split_args, usage_error, Command, Output, UsageError};
use crate::client::connect::split_host_port;
use crate::client::kv_load::{self, KvLoadConfig, KvLoadLimit, KvLoadReport, KvProtocol};
use crate::client::output::{json_string, stats_human, RunCounts};

/// The section of `client --help` on `kv load`.
pub const KV_LOAD_USAGE: &str = "
usage: client kv load H:P [KV LOAD OPTIONS]
       client kv load --servers H:P,H:P,... [KV LOAD OPTIONS]

A load run of protocol v2 (string keys and values, pipelined): CONNECTIONS
threads, one connection each, each sending batches of DEPTH requests in one
write and reading every answer before the next batch. Request n of the run
goes to key n mod KEYS (keys \"key0000000000\" ...); the value of key i is i
in ten digits, then dots, to VALUE_SIZE bytes, so every read checks what it
got. A write answered \"not primary\" is sent again to the server the answer
names (or the next of --servers). The latency of a request runs from the
write of its batch to its answer.

Prints mean, min, max latency (us) and throughput (ops/s), tab-separated
(then p50 and p99 with --percentiles); --json adds the counts: requests
answered, failed, reads, writes, reads that found nothing (misses), redirects.
Exit status 1 when any request failed (refused, unanswered, or a value
that was never written), with the count on stderr.

kv load options:
  --servers LIST      the cluster's servers, in place of H:P
  --value-size BYTES  bytes of each value written (default 16)
  --keys N            keys used (default 10000)
  --reads PERCENT     share of requests that are gets, 0-100 (default 0:
                      every request is a put)
  --depth N           requests in flight per connection (default 1)
  --connections N     connections, one thread each (default 8)
  --requests N        requests in all, split over the connections
                      (default 100000)
  --duration SECS     run for SECS seconds instead (decimals allowed)
  --preload           first put every key once (pipelined, not timed), so
                      that reads find their keys
  --percentiles       end the stats line with p50 and p99 latency (us)
  --timeout SECS      connect and answer timeout (default 30; 0: none)
  --resp              speak RESP (SET/GET) to a Redis-protocol server, for
                      benchmarks beside such a store
  --wait N            with --resp: send WAIT N 0 after the puts of each
                      batch; they count as done when it answers N or more
  --etcd              speak etcd v3's JSON gateway (HTTP/1.1 POST /v3/kv/put
                      and /v3/kv/range) to an etcd member, for benchmarks
  --json, --human     as for the other load runs
";

/// Parses what follows `kv load`.
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_kv_load(args: &[String]) -> Result<Command<(KvLoadConfig, Output)>, UsageError> {
    let valued = [
        "--servers",
        "--value-size",
        "--keys",
        "--reads",
        "--depth",
        "--connections",
        "--requests",
        "--duration",
        "--timeout",
        "--wait",
    ];
    let flags = [
        "--preload",
        "--percentiles",
        "--resp",
        "--etcd",
        "--json",
        "--human",
    ];
    let (pos, options) = match split_args(args, &valued, &flags)? {
        Command::Run(split) => split,
        Command::Help => return Ok(Command::Help),
        Command::Version => return Ok(Command::Version),
    };
    let mut config = KvLoadConfig {
        servers: Vec::new(),
        value_size: 16,
        keys: 10_000,
        read_percent: 0,
        depth: 1,
        connections: 8,
        limit: KvLoadLimit::Requests(100_000),
        preload: false,
        percentiles: false,
        timeout: Some(Duration::from_secs(30)),
        protocol: KvProtocol::V2,
    };
    let mut output = Output::Plain;
    let mut resp = false;
    let mut etcd = false;
    let mut wait = None;
    for (name, value) in options {
        match name.as_str() {
            "--servers" => config.servers = super::server_list("--servers", &value)?,
            "--value-size" => config.value_size = number(&name, &value, 0u32, 1 << 20)? as usize,
            "--keys" => config.keys = number(&name, &value, 1u64, 10_000_000_000)?,
            "--reads" => config.read_percent = number(&name, &value, 0u8, 100)?,
            "--depth" => config.depth = number(&name, &value, 1u32, 4096)? as usize,
            "--connections" => config.connections = number(&name, &value, 1u32, 10_000)? as usize,
            "--requests" => {
                config.limit = KvLoadLimit::Requests(number(&name, &value, 0u64, u64::MAX >> 1)?)
            }
            "--duration" => config.limit = KvLoadLimit::Duration(duration(&value)?),
            "--timeout" => {
                let secs: u64 = number(&name, &value, 0, 86_400)?;
                config.timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "--wait" => wait = Some(number(&name, &value, 1u32, 1000)?),
            "--preload" => config.preload = true,
            "--percentiles" => config.percentiles = true,
            "--resp" => resp = true,
            "--etcd" => etcd = true,
            _ => {
                output = super::output_option(output, &name)?;
            }
        }
    }
    match (pos.as_slice(), config.servers.is_empty()) {
        ([one], true) => {
            split_host_port(one).map_err(|e| usage_error(format!("H:P: {e}")))?;
            config.servers = vec![one.clone()];
        }
        ([], false) => {}
        _ => {
            return Err(usage_error(format!(
                "expected kv load H:P or kv load --servers LIST, then options; got {} argument(s) after 'kv load'",
                pos.len()
            )))
        }
    }
    config.protocol = match (resp, wait) {
        _ if resp && etcd => return Err(usage_error("--resp and --etcd exclude each other")),
        (false, None) if etcd => KvProtocol::Etcd,
        (false, None) => KvProtocol::V2,
        (false, Some(_)) => return Err(usage_error("--wait goes with --resp")),
        (true, w) => KvProtocol::Resp {
            wait: w.unwrap_or(0),
        },
    };
    Ok(Command::Run((config, output)))
}

fn duration(value: &str) -> Result<Duration, UsageError> {
    match value.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(usage_error(format!(
            "--duration must be seconds between 0 and 86400, got {value}"
        ))),
    }
}

/// Runs the load and prints its line; the exit status says whether every
/// request succeeded.
pub fn run(config: &KvLoadConfig, output: Output) -> ExitCode {
    let report = kv_load::run(config);
    if report.unreachable == config.connections {
        let why = report.first_error.as_deref().unwrap_or("no connection");
        super::print_err(&format!("client: {why}"));
        return ExitCode::from(1);
    }
    let line = report.stats.line(report.wall);
    let text = match output {
        Output::Plain => line.to_string(),
        Output::Human => stats_human(
            &line,
            RunCounts {
                ok: report.ok,
                failed: report.failed,
                failovers: report.redirects,
            },
        ),
        Output::Json => report_json(&report),
    };
    super::print_out(&format!("{text}\n"));
    if report.failed > 0 {
        let why = report
            .first_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (first error: {e})"));
        super::print_err(&format!("client: {} requests failed{why}", report.failed));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The report as one JSON object.
pub fn report_json(report: &KvLoadReport) -> String {
    let line = report.stats.line(report.wall);
    let mut out = format!(
        "{{\"requests\":{},\"failed\":{},\"reads\":{},\"writes\":{},\"misses\":{},\"redirects\":{},\"preloaded\":{},\"wall_s\":{:.6},\"mean_us\":{:.3},\"min_us\":{:.3},\"max_us\":{:.3},\"throughput_ops\":{:.3}",
        report.ok,
        report.failed,
        report.reads,
        report.writes,
        report.misses,
        report.redirects,
        report.preloaded,
        report.wall.as_secs_f64(),
        line.mean,
        line.min,
        line.max,
        line.throughput
    );
    if let Some(p) = line.percentiles {
        out.push_str(&format!(",\"p50_us\":{:.3},\"p99_us\":{:.3}", p.p50, p.p99));
    }
    if let Some(e) = &report.first_error {
        out.push_str(&format!(",\"first_error\":{}", json_string(e)));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse(s: &str) -> (KvLoadConfig, Output) {
        match parse_kv_load(&args(s)).unwrap() {
            Command::Run(c) => c,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        parse_kv_load(&args(s)).unwrap_err().0
    }

    #[test]
    fn defaults_and_options() {
        let (c, out) = parse("127.0.0.1:5000");
        assert_eq!(c.servers, ["127.0.0.1:5000"]);
        assert_eq!((c.value_size, c.keys, c.read_percent), (16, 10_000, 0));
        assert_eq!((c.depth, c.connections), (1, 8));
        assert_eq!(c.limit, KvLoadLimit::Requests(100_000));
        assert_eq!(c.protocol, KvProtocol::V2);
        assert_eq!(out, Output::Plain);
        let (c, out) = parse(
            "--servers a:1,b:2 --value-size 1024 --keys 5 --reads 50 --depth 32 --connections 128 --duration 2.5 --preload --percentiles --json --timeout 0",
        );
        assert_eq!(c.servers, ["a:1", "b:2"]);
        assert_eq!((c.value_size, c.keys, c.read_percent), (1024, 5, 50));
        assert_eq!((c.depth, c.connections), (32, 128));
        assert_eq!(c.limit, KvLoadLimit::Duration(Duration::from_millis(2500)));
        assert!(c.preload && c.percentiles);
        assert_eq!(c.timeout, None);
        assert_eq!(out, Output::Json);
        let (c, _) = parse("h:1 --resp --wait 2 --requests 7");
        assert_eq!(c.protocol, KvProtocol::Resp { wait: 2 });
        assert_eq!(c.limit, KvLoadLimit::Requests(7));
        assert_eq!(parse("h:1 --etcd").0.protocol, KvProtocol::Etcd);
        assert_eq!(parse_kv_load(&args("--help")), Ok(Command::Help));
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(err("").contains("expected kv load H:P"));
        assert!(err("a:1 b:2").contains("expected kv load H:P"));
        assert!(err("--servers a:1 b:2").contains("expected kv load H:P"));
        assert!(err("a").contains("H:P"));
        assert!(err("a:1 --reads 101").contains("--reads must be between 0 and 100"));
        assert!(err("a:1 --depth 0").contains("--depth"));
        assert!(err("a:1 --keys 0").contains("--keys"));
        assert!(err("a:1 --duration 0").contains("--duration"));
        assert!(err("a:1 --value-size 2000000").contains("--value-size"));
        assert!(err("a:1 --wait 2").contains("--wait goes with --resp"));
        assert!(err("a:1 --json --human").contains("exclude"));
        assert!(err("a:1 --resp --etcd").contains("exclude"));
        assert!(err("a:1 --frob").contains("unknown option"));
    }
}

//! `client IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE`, and the cluster,
//! one-shot and status forms beside it (see `client --help`).
//!
//! Every line goes out through [`say`] or [`complain`], which ignore a
//! closed stdout or stderr: `client --help | head -1` ends quietly, as Unix
//! tools do, instead of panicking.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use factory::cli::{self, ClientArgs, ClientCommand, Command, Mode, Output};
use factory::client::load::{self, LoadConfig, LoadReport, Session, Target};
use factory::client::output::{self, RunCounts};
use factory::client::status;
use factory::wire::CustomerRecord;

/// Writes `text` and a newline to stdout; a closed stdout is ignored.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Writes `client: text` to stderr; a closed stderr is ignored.
fn complain(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "client: {text}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::parse_client(&args) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            let mut out = std::io::stdout().lock();
            let _ = out
                .write_all(cli::CLIENT_USAGE.as_bytes())
                .and_then(|()| out.write_all(cli::kv_load::KV_LOAD_USAGE.as_bytes()))
                .and_then(|()| out.flush());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            say(&format!("client (factory) {}", factory::VERSION));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            complain(&format!("{e}; try 'client --help'"));
            return ExitCode::from(2);
        }
    };
    run(&args)
}

fn run(args: &ClientArgs) -> ExitCode {
    match &args.command {
        ClientCommand::Load(config) => load_run(config, args.output),
        ClientCommand::Status { servers, timeout } => status_run(servers, *timeout, args.output),
        ClientCommand::Kv(kv) => factory::client::kv_command::run(kv),
        ClientCommand::KvLoad(config) => cli::kv_load::run(config, args.output),
        ClientCommand::Order {
            target,
            customer_id,
            order_number,
            timeout,
        } => one_shot(target, *timeout, args.output, |s| {
            s.order(*customer_id, *order_number)?;
            Ok(CustomerRecord {
                customer_id: *customer_id,
                last_order: *order_number,
            })
        }),
        ClientCommand::Read {
            target,
            customer_id,
            timeout,
        } => one_shot(target, *timeout, args.output, |s| s.read(*customer_id)),
    }
}

fn print_record(r: &CustomerRecord, output: Output) {
    if output == Output::Json {
        say(&output::record_json(r));
    } else {
        say(&output::record_plain(r));
    }
}

fn one_shot(
    target: &Target,
    timeout: Option<Duration>,
    out: Output,
    request: impl FnOnce(&mut Session) -> Result<CustomerRecord, factory::client::ClientError>,
) -> ExitCode {
    let config = LoadConfig {
        target: target.clone(),
        customers: 1,
        orders: 1,
        mode: Mode::Read,
        timeout,
        percentiles: false,
    };
    let result = Session::open(&config).and_then(|mut session| {
        let record = request(&mut session);
        session.close();
        record
    });
    match result {
        Ok(record) => {
            print_record(&record, out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            complain(&e.to_string());
            ExitCode::from(1)
        }
    }
}

fn status_run(servers: &[String], timeout: Duration, out: Output) -> ExitCode {
    let statuses = status::fetch_all(servers, timeout);
    if out == Output::Json {
        say(&output::status_json(servers, &statuses));
    } else {
        let table = output::status_table(servers, &statuses);
        say(table.trim_end());
    }
    let all_answered = statuses.iter().all(|s| {
        matches!(
            s,
            status::ServerStatus::Report(_) | status::ServerStatus::NoStatus
        )
    });
    if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn load_run(config: &LoadConfig, out: Output) -> ExitCode {
    let stdout = Mutex::new(());
    let print = |r: &CustomerRecord| {
        let _one_at_a_time = stdout.lock().unwrap_or_else(|e| e.into_inner());
        print_record(r, out);
    };
    let report = load::run(config, &print);
    finish(config, &report, out)
}

fn finish(config: &LoadConfig, report: &LoadReport, out: Output) -> ExitCode {
    if config.customers > 0 && report.unreachable == config.customers as u32 {
        if let Some(e) = &report.first_error {
            complain(&e.to_string());
        }
        return ExitCode::from(1);
    }
    if config.mode != Mode::Scan {
        let line = report.stats.line(report.wall);
        let counts = RunCounts {
            ok: report.stats.count,
            failed: report.failed,
            failovers: report.failovers,
        };
        say(&match out {
            Output::Plain => line.to_string(),
            Output::Human => output::stats_human(&line, counts),
            Output::Json => output::stats_json(&line, counts, report.wall),
        });
    }
    if report.failed > 0 {
        let why = report
            .first_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (first error: {e})"));
        complain(&format!(
            "{} of {} requests failed{why}",
            report.failed, report.planned
        ));
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

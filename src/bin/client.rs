//! `client IP PORT NUM_CUSTOMERS NUM_ORDERS REQUEST_TYPE`

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

use factory::cli::{self, ClientArgs, Command, Mode};
use factory::client::load::{self, LoadReport};
use factory::wire::CustomerRecord;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse_client(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::CLIENT_USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("client (factory) {}", factory::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("client: {e}\n\n{}", cli::CLIENT_USAGE);
            return ExitCode::from(2);
        }
    };
    let stdout = Mutex::new(std::io::stdout());
    let print_record = |r: &CustomerRecord| {
        let mut out = stdout.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{}\t{}", r.customer_id, r.last_order);
    };
    let report = load::run(&config, &print_record);
    finish(&config, &report)
}

fn finish(config: &ClientArgs, report: &LoadReport) -> ExitCode {
    if config.customers > 0 && report.unreachable == config.customers as u32 {
        if let Some(e) = &report.first_error {
            eprintln!("client: {e}");
        }
        return ExitCode::from(1);
    }
    if config.mode != Mode::Scan {
        let _ = writeln!(std::io::stdout(), "{}", report.stats.line(report.wall));
    }
    if report.failed > 0 {
        let why = report
            .first_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (first error: {e})"));
        eprintln!(
            "client: {} of {} requests failed{why}",
            report.failed, report.planned
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

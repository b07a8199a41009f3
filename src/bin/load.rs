//! `load PORT CACHE_SIZE NUM_SERVERS [ID HOST PORT]...`: the load balancer.
//! Parses the command line, starts a [`Balancer`] and stops it on SIGTERM
//! or SIGINT (exit 0), as the server does.

use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use factory::balancer::Balancer;
use factory::cli::load::{parse_load, LOAD_USAGE};
use factory::cli::{self, Command};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_load(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            cli::print_out(LOAD_USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            cli::print_out(&format!("load (factory) {}\n", factory::VERSION));
            return ExitCode::SUCCESS;
        }
        Err(e) => return cli::usage_failure("load", &e),
    };
    factory::logging::init_from_env("load");
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            cli::print_err(&format!("load: cannot handle SIGTERM and SIGINT: {e}"));
            return ExitCode::from(1);
        }
    };
    match Balancer::start(config) {
        Ok(balancer) => {
            // The balancer runs on its own threads; this one waits for a
            // stop signal (signal-hook's self-pipe: no async runtime).
            let signal = signals.forever().next();
            log::info!("stopping on signal {}", signal.unwrap_or(SIGTERM));
            balancer.stop();
            ExitCode::SUCCESS
        }
        Err(e) => {
            cli::print_err(&format!("load: {e}"));
            ExitCode::from(1)
        }
    }
}

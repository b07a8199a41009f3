//! `load PORT CACHE_SIZE NUM_SERVERS [ID HOST PORT]...`: the load balancer.

use std::process::ExitCode;

use factory::balancer::Balancer;
use factory::cli::load::{parse_load, LOAD_USAGE};
use factory::cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_load(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{LOAD_USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("load (factory) {}", factory::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("load: {e}\n\n{LOAD_USAGE}");
            return ExitCode::from(2);
        }
    };
    factory::logging::init_from_env();
    match Balancer::start(config) {
        Ok(_balancer) => loop {
            // The balancer runs on its own threads until the process is killed.
            std::thread::park();
        },
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(1)
        }
    }
}

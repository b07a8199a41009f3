//! `server PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...`: parses
//! the command line, starts a [`Server`] and stops it gracefully on SIGTERM
//! or SIGINT (exit 0).

use std::net::SocketAddr;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use factory::cli::{self, Command, ServerArgs};
use factory::server::{Server, ServerConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::parse_server(&args) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::SERVER_USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("server (factory) {}", factory::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("server: {e}\n\n{}", cli::SERVER_USAGE);
            return ExitCode::from(2);
        }
    };
    factory::logging::init_from_env("server");
    // Registered before the server starts, so that a signal during
    // recovery also stops it gracefully once it is up.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("server: cannot handle SIGTERM and SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    match Server::start(config(args)) {
        Ok(server) => {
            // The server runs on its own threads; this one waits for a
            // stop signal (signal-hook's self-pipe: no async runtime).
            let name = match signals.forever().next() {
                Some(SIGINT) => "SIGINT",
                _ => "SIGTERM",
            };
            server.stop_because(&format!("on {name}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::from(1)
        }
    }
}

fn config(args: ServerArgs) -> ServerConfig {
    ServerConfig {
        bind: SocketAddr::new(args.bind, args.port),
        peers: args.peers,
        data_dir: args.data_dir,
        fsync: args.fsync,
        force_primary: args.force_primary,
        log_retain: args.log_retain,
        limits: args.limits,
        ..ServerConfig::new(args.port, args.factory_id)
    }
}

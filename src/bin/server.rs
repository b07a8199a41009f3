//! `server PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...`

use std::net::SocketAddr;
use std::process::ExitCode;

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
    factory::logging::init_from_env();
    match Server::start(config(args)) {
        Ok(_server) => loop {
            // The server runs on its own threads until the process is killed.
            std::thread::park();
        },
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
        kv: args.kv,
        ..ServerConfig::new(args.port, args.factory_id)
    }
}

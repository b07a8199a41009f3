//! `server PORT FACTORY_ID NUM_PEERS [PEER_ID PEER_IP PEER_PORT]...`: parses
//! the command line, starts a [`Server`] and stops it gracefully on SIGTERM
//! or SIGINT (exit 0).

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use factory::cli::{self, Command, ServerArgs};
use factory::server::{ElectionConfig, PeerConfig, Server, ServerConfig, Witness};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::parse_server(&args) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            cli::print_out(cli::SERVER_USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            cli::print_out(&format!("server (factory) {}\n", factory::VERSION));
            return ExitCode::SUCCESS;
        }
        Err(e) => return cli::usage_failure("server", &e),
    };
    factory::logging::init_from_env("server");
    // Registered before the server starts, so that a signal during
    // recovery also stops it gracefully once it is up.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            cli::print_err(&format!("server: cannot handle SIGTERM and SIGINT: {e}"));
            return ExitCode::from(1);
        }
    };
    warn_unresolved_peers(&args.peers);
    if args.witness {
        return run_witness(&config(args), signals);
    }
    match Server::start(config(args)) {
        Ok(server) => {
            // The server runs on its own threads; this one waits for a
            // stop signal (signal-hook's self-pipe: no async runtime).
            let name = signal_name(signals.forever().next());
            // A second signal while the stop waits for something stuck
            // ends the process at once, as an operator pressing ^C twice
            // expects.
            std::thread::spawn(move || {
                if let Some(again) = signals.forever().next() {
                    let again = signal_name(Some(again));
                    log::warn!("{again} during the graceful stop: exiting at once");
                    std::process::exit(1);
                }
            });
            server.stop_because(&format!("on {name}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            cli::print_err(&format!("server: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Runs a witness (`--witness`) until SIGTERM or SIGINT.
fn run_witness(config: &ServerConfig, mut signals: Signals) -> ExitCode {
    match Witness::start(config) {
        Ok(witness) => {
            let name = signal_name(signals.forever().next());
            log::info!("factory {} (witness): {name}; stopping", config.factory_id);
            witness.stop();
            ExitCode::SUCCESS
        }
        Err(e) => {
            cli::print_err(&format!("server: {e}"));
            ExitCode::from(1)
        }
    }
}

fn signal_name(signal: Option<i32>) -> &'static str {
    match signal {
        Some(SIGINT) => "SIGINT",
        _ => "SIGTERM",
    }
}

/// A peer whose host name does not resolve now may resolve later (DNS
/// not ready yet, a host still being set up): say so, and let the
/// replicator's reconnect loop, which resolves on every attempt, retry it.
fn warn_unresolved_peers(peers: &[PeerConfig]) {
    for peer in peers {
        if let Err(e) = (peer.host.as_str(), peer.port).to_socket_addrs() {
            log::warn!(
                "peer id {}: host '{}' does not resolve ({e}); it will be retried",
                peer.id,
                peer.host
            );
        }
    }
}

fn config(args: ServerArgs) -> ServerConfig {
    let election = (args.election_on() || args.witness).then(|| ElectionConfig {
        timing: args.timing,
        witnesses: args.witnesses.clone(),
    });
    ServerConfig {
        election,
        bind: SocketAddr::new(args.bind, args.port),
        peers: args.peers,
        data_dir: args.data_dir,
        fsync: args.fsync,
        force_primary: args.force_primary,
        log_retain: args.log_retain,
        limits: args.limits,
        metrics: args.metrics,
        experts: args.experts,
        kv: args.kv,
        ..ServerConfig::new(args.port, args.factory_id)
    }
}

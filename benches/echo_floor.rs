//! The echo floor: the least a thread-per-connection server can do with our
//! frames, to measure the load benchmark against.
//!
//! ```text
//! echo_floor server PORT
//! echo_floor client IP PORT CONNECTIONS REQUESTS_PER_CONNECTION [--reads] [--percentiles]
//! ```
//!
//! The server listens on 127.0.0.1:PORT and gives each connection a thread,
//! as `server` does; each connection starts with the 8-byte handshake, then
//! every 12-byte request gets its reply at once from that thread: 20 bytes
//! for a write (request type 1), 8 for a read (type 2), nothing for
//! customer -1 (end of session). No log, no replication, no handoff to
//! another thread. It speaks enough of the protocol that the real `client`
//! can drive it too.
//!
//! The client is the `client` binary's load loop without the stub: one
//! thread and connection per customer, each sending its requests one at a
//! time (writes, or reads with `--reads`) and timing each round trip. It
//! prints the same stats line (mean, min, max µs, throughput ops/s; p50 and
//! p99 µs after them with `--percentiles`). Exit status 0, 1 when any
//! request failed, 2 for a bad command line.
//!
//! `scripts/loadbench.py` runs it beside the real servers: the ratio of a
//! cluster's throughput to this floor is what the server itself costs.

#[path = "join.rs"]
mod join;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use factory::client::Stats;
use factory::wire::{Frame, RobotOrder, CLIENT_TAG, HANDSHAKE_LEN};

const USAGE: &str = "\
usage: echo_floor server PORT
       echo_floor client IP PORT CONNECTIONS REQUESTS_PER_CONNECTION [--reads] [--percentiles]";

/// Stack of a connection thread: a few buffers.
const STACK: usize = 64 * 1024;

/// Bounds every wait of the client, so that a dead server fails the run.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Reply sizes: `RobotInfo` to a write, `CustomerRecord` to a read.
const WRITE_REPLY: usize = 20;
const READ_REPLY: usize = 8;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["server", port] => number(port).map(serve),
        ["client", host, port, connections, requests, options @ ..] => {
            parse_client(host, port, connections, requests, options).map(run_client)
        }
        _ => Err("expected 'server PORT' or 'client IP PORT CONNECTIONS ...'".into()),
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("echo_floor: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("echo_floor: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a valid number here"))
}

// --- server -----------------------------------------------------------------

/// Accepts forever, one thread per connection.
fn serve(port: u16) -> io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    eprintln!("echo_floor listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        thread::Builder::new()
            .name("echo".into())
            .stack_size(STACK)
            .spawn(move || {
                let _ = echo(stream);
            })?;
    }
    Ok(())
}

/// Answers one connection's requests until it ends or fails.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut handshake = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut handshake)?;
    let mut request = [0u8; RobotOrder::SIZE];
    let mut reply = [0u8; WRITE_REPLY];
    loop {
        stream.read_exact(&mut request)?;
        let order = RobotOrder::decode(&request);
        if order.ends_session() {
            return Ok(());
        }
        // A write's reply echoes the request; a read's starts with the id.
        reply[..RobotOrder::SIZE].copy_from_slice(&request);
        let len = if order.request_type == 2 {
            READ_REPLY
        } else {
            WRITE_REPLY
        };
        stream.write_all(&reply[..len])?;
    }
}

// --- client -----------------------------------------------------------------

/// The client's command line.
struct Load {
    host: String,
    port: u16,
    connections: i32,
    requests: i32,
    reads: bool,
    percentiles: bool,
}

fn parse_client(
    host: &str,
    port: &str,
    connections: &str,
    requests: &str,
    options: &[&str],
) -> Result<Load, String> {
    let mut load = Load {
        host: host.to_string(),
        port: number(port)?,
        connections: number(connections)?,
        requests: number(requests)?,
        reads: false,
        percentiles: false,
    };
    for option in options {
        match *option {
            "--reads" => load.reads = true,
            "--percentiles" => load.percentiles = true,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if load.connections < 0 || load.requests < 0 {
        return Err("CONNECTIONS and REQUESTS_PER_CONNECTION must be 0 or more".into());
    }
    Ok(load)
}

/// Runs every connection on its own thread and prints the stats line.
fn run_client(load: Load) -> io::Result<()> {
    let start = Instant::now();
    let results: Vec<io::Result<Stats>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..load.connections)
            .map(|customer| {
                scope.spawn({
                    let load = &load;
                    move || connection(load, customer)
                })
            })
            .collect();
        join::join_all(handles)
    });
    let wall = start.elapsed();
    let mut stats = new_stats(&load);
    for result in results {
        stats.merge(&result?);
    }
    println!("{}", stats.line(wall));
    Ok(())
}

fn new_stats(load: &Load) -> Stats {
    if load.percentiles {
        Stats::with_percentiles()
    } else {
        Stats::default()
    }
}

/// One customer: handshake, then `requests` timed round trips.
fn connection(load: &Load, customer: i32) -> io::Result<Stats> {
    let mut stream = TcpStream::connect((load.host.as_str(), load.port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(&CLIENT_TAG)?;
    let mut stats = new_stats(load);
    let mut request = [0u8; RobotOrder::SIZE];
    let mut reply = [0u8; WRITE_REPLY];
    let reply = if load.reads {
        &mut reply[..READ_REPLY]
    } else {
        &mut reply[..]
    };
    for i in 0..load.requests {
        let order = if load.reads {
            RobotOrder::read(customer)
        } else {
            RobotOrder::write(customer, i)
        };
        // Timed from before encoding, as the client's load loop is.
        let started = Instant::now();
        order.encode(&mut request);
        stream.write_all(&request)?;
        stream.read_exact(reply)?;
        stats.record(started.elapsed());
    }
    RobotOrder::end_of_session().encode(&mut request);
    stream.write_all(&request)?;
    Ok(stats)
}

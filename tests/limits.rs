//! Overload against real `server` processes (issue 5, points 2 and 5): the
//! connection limit, a client that stops reading its replies, a backup that
//! stops acknowledging, many idle connections, a client that pipelines
//! writes and vanishes (also with the server embedded in a C program that
//! leaves SIGPIPE at its default). After each, well-formed clients must be
//! served correctly.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::net::signal;
use common::{lone_server, wait_until, ProcessCluster, DEADLINE};
use factory::client::Client;
use factory::wire::{Frame, RobotOrder, CLIENT_TAG, PFA_TAG};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// An idle client session: connected and past its handshake.
fn idle_session(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(&CLIENT_TAG).unwrap();
    s
}

fn write_and_read(port: u16, customer: i32, order: i32) -> Result<(), String> {
    let mut c =
        Client::connect("127.0.0.1", port, common::IO_TIMEOUT).map_err(|e| e.to_string())?;
    let info = c.order(customer, order).map_err(|e| e.to_string())?;
    assert_eq!((info.customer_id, info.order_number), (customer, order));
    let last = c.read(customer).map_err(|e| e.to_string())?.last_order;
    assert_eq!(last, order);
    c.close();
    Ok(())
}

fn requests(n: usize, kind: i32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            RobotOrder {
                customer_id: 100,
                order_number: i as i32,
                request_type: kind,
            }
            .to_vec()
        })
        .collect()
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    // A handshake timeout far beyond the test's wait, so that a close seen
    // within it is the refusal, not the timeout (no clock in the check).
    let server = lone_server(&["--max-connections", "4", "--handshake-timeout", "600"]);
    // Every accepted connection counts: three client sessions and a
    // replication stream.
    let mut held: Vec<TcpStream> = (0..3).map(|_| idle_session(server.port)).collect();
    let mut stream = connect(server.port);
    stream.write_all(&PFA_TAG).unwrap();
    held.push(stream);
    // The server has seen all four once each answers (sessions) or is
    // logged (the stream).
    assert!(server.wait_for_line("replication stream (v1) opened"));
    let mut extra = connect(server.port);
    let me = extra.local_addr().unwrap().to_string();
    assert!(common::closed_by_server(&mut extra), "refused at once");
    assert!(wait_until(|| server
        .log_text()
        .lines()
        .any(|l| l.contains("WARN")
            && l.contains(&me)
            && l.contains("4 connections already open"))));
    // One leaves; a well-formed client gets its place.
    drop(held.pop());
    assert!(wait_until(|| write_and_read(server.port, 1, 1).is_ok()));
    // The ones held open are still served.
    let mut s = held.remove(0);
    s.write_all(&RobotOrder::read(1).to_vec()).unwrap();
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0, 0, 0, 1, 0, 0, 0, 1]);
}

#[test]
fn five_hundred_idle_connections_while_a_client_is_served() {
    let server = lone_server(&[]);
    let held: Vec<TcpStream> = (0..500).map(|_| idle_session(server.port)).collect();
    for order in 0..20 {
        write_and_read(server.port, 2, order).expect("served beside 500 idle sessions");
    }
    // Every one of them is a live session.
    for (i, s) in held.iter().enumerate().step_by(50) {
        let mut s = s;
        s.write_all(&RobotOrder::read(2).to_vec()).unwrap();
        let mut reply = [0u8; 8];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[4..], &19i32.to_be_bytes(), "session {i}");
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let server = lone_server(&["--client-write-timeout", "1"]);
    let mut s = idle_session(server.port);
    let me = s.local_addr().unwrap().to_string();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Others are served the whole time.
    let other = {
        let (port, stop) = (server.port, Arc::clone(&stop));
        thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) && served < 10_000 {
                write_and_read(port, 3, served).expect("served beside a stuck client");
                served += 1;
            }
            served
        })
    };
    // Reads pile up replies the client never takes; once the server cannot
    // send, it stops reading too, and drops the client after 1 s.
    let batch = requests(4096, 2);
    let end = Instant::now() + DEADLINE;
    let dropped = loop {
        if Instant::now() > end {
            break false;
        }
        match s.write_all(&batch) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true, // reset by the server
        }
    };
    assert!(
        dropped,
        "the server never dropped a client that does not read"
    );
    assert!(wait_until(|| server
        .log_text()
        .lines()
        .any(|l| l.contains("WARN")
            && l.contains(&me)
            && l.contains("did not take its reply within 1s"))));
    stop.store(true, Ordering::Relaxed);
    assert!(other.join().unwrap() > 0);
    write_and_read(server.port, 3, 1_000_000).unwrap();
}

#[test]
fn a_client_that_pipelines_writes_and_vanishes_is_survived() {
    let mut server = lone_server(&[]);
    for round in 0..3 {
        let mut s = idle_session(server.port);
        s.write_all(&requests(200, 1)).unwrap();
        // Gone before reading a single reply; a reset, not a polite close.
        s.set_linger_zero();
        drop(s);
        write_and_read(server.port, 4, round).expect("served after a vanished client");
    }
    assert!(server.is_running());
}

/// `SO_LINGER` 0 makes `close` send a reset, as a crashed client would.
trait LingerZero {
    fn set_linger_zero(&self);
}

impl LingerZero for TcpStream {
    fn set_linger_zero(&self) {
        socket2::SockRef::from(self)
            .set_linger(Some(Duration::ZERO))
            .expect("set SO_LINGER");
    }
}

/// A backup frozen by SIGSTOP is dropped from the in-sync set, so the
/// primary acknowledges writes without it (it cannot acknowledge anything
/// while stopped); once it runs again it is re-admitted to the in-sync set
/// (G4) and holds exactly what was written.
#[test]
fn a_backup_that_stops_acknowledging_is_dropped_and_caught_up_later() {
    let mut cluster = ProcessCluster::start_with(2, |_| vec!["--peer-timeout".into(), "1".into()]);
    let ports = cluster.ports();
    write_and_read(ports[0], 5, 0).unwrap();
    assert_eq!(cluster.primary(), Some(0), "the first write made 0 primary");
    assert!(
        wait_until(|| common::read(ports[1], 5) == 0),
        "backup in sync"
    );
    assert_eq!(cluster.in_sync(), Some(vec![0, 1]));
    let backup = cluster.servers[1].pid();
    signal(backup, "-STOP");
    let result = (1..=20).try_for_each(|order| write_and_read(ports[0], 5, order));
    // Read before the backup runs again: every write above was acknowledged
    // by an in-sync set without it.
    let dropped = wait_until(|| cluster.in_sync() == Some(vec![0]));
    // The process must not stay stopped, whatever happened.
    signal(backup, "-CONT");
    result.expect("the primary keeps serving");
    assert!(dropped, "peer 1 dropped: {:?}", cluster.in_sync());
    assert!(cluster.servers[0].wait_for_line("peer 1 dropped from the in-sync set"));
    // Re-admitted once it runs again, then it holds exactly order 20.
    if !cluster.wait_in_sync(1) {
        cluster.dump();
        panic!("peer 1 was not re-admitted: {:?}", cluster.in_sync());
    }
    let mut value = common::read(ports[1], 5);
    let reached = wait_until(|| {
        value = common::read(ports[1], 5);
        value >= 20
    });
    assert!(
        reached && value == 20,
        "the backup reads {value}, not the last write (20)"
    );
}

// --- embedded in a C program ------------------------------------------------

/// The libfactory.so of this build. `cargo test` leaves the library it
/// builds for the tests in target/PROFILE/deps (only `cargo build` copies
/// it up beside the `server` binary), so that one is taken first: it is the
/// one compiled from the sources under test.
fn library_dir() -> PathBuf {
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_server"))
        .parent()
        .expect("target dir");
    [profile_dir.join("deps"), profile_dir.to_path_buf()]
        .into_iter()
        .find(|dir| dir.join("libfactory.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "no libfactory.so in {0}/deps or {0}: the cdylib is built with the tests",
                profile_dir.display()
            )
        })
}

/// A missing outside tool fails the test (this panics) unless FACTORY_SKIP
/// (comma-separated names, as in the Makefile) names it; the caller then
/// returns.
fn skip_missing_tool(name: &str, what: &str) {
    let skip = std::env::var("FACTORY_SKIP").unwrap_or_default();
    assert!(
        skip.split(',').any(|s| s.trim() == name),
        "{what} not found: install it, or set FACTORY_SKIP={name} to skip this test"
    );
    eprintln!("{what} not found: skipped (FACTORY_SKIP)");
}

#[test]
fn an_embedded_server_survives_vanishing_clients_with_default_sigpipe() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        skip_missing_tool("cc", &format!("C compiler ({cc})"));
        return;
    }
    let lib = library_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let program = out.path().join("pipelined_disconnect");
    // The program loads the library by its SONAME (build.rs), which cargo
    // does not create: a link beside the program, found through its rpath.
    let soname = concat!("libfactory.so.", env!("CARGO_PKG_VERSION_MAJOR"));
    std::os::unix::fs::symlink(lib.join("libfactory.so"), out.path().join(soname))
        .expect("link the SONAME");
    let built = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/hostile_c/pipelined_disconnect.c"))
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", lib.display()))
        .arg("-lfactory")
        .arg(format!("-Wl,-rpath,{}", out.path().display()))
        .output()
        .expect("run the C compiler");
    assert!(
        built.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&program)
        .env("RUST_LOG", "off")
        .output()
        .expect("run the C program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the embedding program ended with {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("ok"), "{stdout}");
}

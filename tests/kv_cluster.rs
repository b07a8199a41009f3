//! Protocol v2 on three server processes with data directories: string
//! writes replicated through SIGKILLs of a primary and of a backup and
//! their restarts (every acknowledged write on every server in the end,
//! fresh keys written after each fault), and a backup
//! that missed values near the 1 MiB limit caught up by snapshot.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{wait_until, ProcessCluster};
use factory::kv::{KvClient, KvClientError};
use factory::wire::kv::KvStatus;

fn data_dir_args(dir: &std::path::Path, i: usize) -> Vec<String> {
    vec![
        "--data-dir".into(),
        dir.join(format!("s{i}")).display().to_string(),
        "--fsync".into(),
        "always".into(),
    ]
}

fn connect(port: u16) -> Option<KvClient> {
    KvClient::connect(format!("127.0.0.1:{port}"), Some(Duration::from_secs(5))).ok()
}

/// `key → (version, value)` of every acknowledged put.
type Acked = Arc<Mutex<HashMap<Vec<u8>, (u64, Vec<u8>)>>>;

/// A writer putting fresh keys `w{n}-{i}`; on any failure it moves to the
/// next server (or to the primary a refusal names) and sends the same key
/// again.
fn writer(n: usize, ports: Vec<u16>, acked: Acked, stop: Arc<AtomicBool>) {
    let mut at = n % ports.len();
    let mut client: Option<KvClient> = None;
    let mut i = 0u32;
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if client.is_none() {
            client = connect(ports[at]);
        }
        let Some(c) = client.as_mut() else {
            at = (at + 1) % ports.len();
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        let key = format!("w{n}-{i}").into_bytes();
        let value = format!("value {n} {i}").into_bytes();
        match c.put(&key, &value) {
            Ok(version) => {
                acked.lock().unwrap().insert(key, (version, value));
                i += 1;
            }
            Err(KvClientError::Status {
                status: KvStatus::NotPrimary,
                text,
                ..
            }) => {
                if let Some(p) = ports.iter().position(|p| text.ends_with(&format!(":{p}"))) {
                    at = p;
                } else {
                    at = (at + 1) % ports.len();
                }
                client = None;
            }
            Err(_) => {
                client = None;
                at = (at + 1) % ports.len();
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn acked_count(acked: &Acked) -> usize {
    acked.lock().unwrap().len()
}

/// True when server `port` answers every acknowledged key with its
/// acknowledged version and value.
fn holds_all(port: u16, acked: &HashMap<Vec<u8>, (u64, Vec<u8>)>) -> Result<(), String> {
    let mut c = connect(port).ok_or("cannot connect")?;
    for (key, expected) in acked {
        match c.get(key) {
            Ok(Some(got)) if &got == expected => {}
            other => {
                return Err(format!(
                    "{}: {other:?}, acknowledged {expected:?}",
                    String::from_utf8_lossy(key)
                ))
            }
        }
    }
    Ok(())
}

#[test]
fn acknowledged_string_writes_survive_kills_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(3, |i| data_dir_args(dir.path(), i));
    let ports = cluster.ports();
    // The first write goes to the elected primary (G7: no write needed).
    let first = cluster.primary().expect("an elected primary");
    connect(ports[first]).unwrap().put(b"first", b"x").unwrap();
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|n| {
            let (ports, acked, stop) = (ports.clone(), Arc::clone(&acked), Arc::clone(&stop));
            thread::spawn(move || writer(n, ports, acked, stop))
        })
        .collect();
    assert!(
        wait_until(|| acked_count(&acked) >= 200),
        "writes before the fault"
    );
    let primary = cluster.primary().expect("a primary");
    cluster.kill(primary);
    let at_fault = acked_count(&acked);
    assert!(
        wait_until(|| acked_count(&acked) >= at_fault + 200),
        "fresh keys written after the fault"
    );
    // The old primary comes back from its data directory as a backup;
    // then a backup is killed and restarted, with writes going on.
    cluster.restart(primary);
    let backup = (0..3)
        .find(|&i| i != primary && Some(i) != cluster.primary())
        .expect("a backup");
    let before = acked_count(&acked);
    assert!(wait_until(|| acked_count(&acked) >= before + 100));
    cluster.kill(backup);
    let before = acked_count(&acked);
    assert!(wait_until(|| acked_count(&acked) >= before + 100));
    cluster.restart(backup);
    let before = acked_count(&acked);
    assert!(wait_until(|| acked_count(&acked) >= before + 100));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for (i, &port) in ports.iter().enumerate() {
        let mut last = Ok(());
        assert!(
            wait_until(|| {
                last = holds_all(port, &acked);
                last.is_ok()
            }),
            "server {i} lacks an acknowledged write: {last:?}"
        );
    }
}

#[test]
fn a_backup_catches_up_by_snapshot_on_values_near_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(3, |i| {
        let mut args = data_dir_args(dir.path(), i);
        args.extend(["--log-retain".into(), "4".into()]);
        args
    });
    let ports = cluster.ports();
    let p = cluster.primary().expect("an elected primary");
    let b = (p + 2) % 3;
    let mut c = connect(ports[p]).unwrap();
    c.put(b"first", b"x").unwrap();
    cluster.kill(b);
    let near = (1 << 20) - 64;
    let mut written = HashMap::new();
    for i in 0..12u8 {
        let key = format!("big-{i}").into_bytes();
        let value = vec![i; near - usize::from(i)];
        let version = c.put(&key, &value).unwrap();
        written.insert(key, (version, value));
    }
    cluster.restart(b);
    assert!(
        cluster.servers[p].wait_for_line(&format!("peer {b}: caught up by snapshot")),
        "{}",
        cluster.servers[p].log_text()
    );
    assert!(cluster.servers[b].wait_for_line("installed a snapshot"));
    let mut last = Ok(());
    assert!(
        wait_until(|| {
            last = holds_all(ports[b], &written);
            last.is_ok()
        }),
        "the caught-up backup: {last:?}"
    );
    // Restarted from its own data directory (the snapshot with the large
    // values), it still holds them.
    cluster.kill(b);
    cluster.restart(b);
    assert!(
        wait_until(|| {
            last = holds_all(ports[b], &written);
            last.is_ok()
        }),
        "the backup restarted from its snapshot: {last:?}"
    );
}

/// With values near the limit, the log is compacted by its bytes long
/// before `--log-retain` entries: the data directory stays near 64 MiB of
/// log plus the snapshot, and everything reopens.
#[test]
fn a_log_of_large_values_is_compacted_by_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s0");
    let mut server = common::lone_server(&["--data-dir", data.to_str().unwrap()]);
    let mut c = connect(server.port).unwrap();
    let value = vec![0xab; 1 << 20];
    let mut versions = Vec::new();
    // 100 MiB of puts over 8 keys: the store stays at 8 MiB.
    for i in 0..100u32 {
        let key = format!("k{}", i % 8).into_bytes();
        versions.push((key.clone(), c.put(&key, &value).unwrap()));
    }
    assert!(
        server.wait_for_line("durable log compacted"),
        "{}",
        server.log_text()
    );
    let log_len = std::fs::metadata(data.join("log")).unwrap().len();
    assert!(log_len < 80 << 20, "log of {log_len} bytes");
    server.kill();
    let server = common::ServerProcess::spawn_with(
        0,
        server.port,
        &[],
        &["--data-dir".into(), data.display().to_string()],
    )
    .expect("restart");
    let mut c = connect(server.port).unwrap();
    // The last commit note may not have been synced before the kill: the
    // entries after it are in the log, and are applied once this server
    // commits in its new term, which its first write starts.
    c.put(b"wake", b"up").unwrap();
    for (key, version) in &versions[92..] {
        let got = c.get(key).unwrap();
        assert!(
            got.as_ref() == Some(&(*version, value.clone())),
            "{}: version {:?}, value of {:?} bytes; acknowledged version {version}",
            String::from_utf8_lossy(key),
            got.as_ref().map(|g| g.0),
            got.as_ref().map(|g| g.1.len()),
        );
    }
}

/// A v2 frame whose length is past the largest request closes that
/// connection with a log line naming the client; the server goes on.
#[test]
fn a_frame_that_lies_about_its_size_is_logged_and_closed() {
    use std::io::Write;
    let server = common::lone_server(&["--max-value", "1000"]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&factory::wire::kv::KV_TAG).unwrap();
    s.write_all(&[0, 0, 0x10, 0]).unwrap();
    assert!(server.wait_for_line("v2 frame of 4096 bytes is over the bound; closing"));
    assert!(common::closed_without_reply(&mut s));
    let mut c = connect(server.port).unwrap();
    assert!(c.put(b"k", &[1; 1000]).is_ok());
    let too_large = c.put(b"k", &[1; 1001]);
    assert!(
        matches!(
            too_large,
            Err(KvClientError::Status {
                status: KvStatus::TooLarge,
                ..
            })
        ),
        "{too_large:?}"
    );
}

//! Disk use of data directories under a long write run (issue 15.4): every
//! server, backups included, compacts its log, so no data directory grows
//! with the number of writes.

mod common;

use std::path::Path;

use common::history::Workload;
use common::ProcessCluster;

const RETAIN: usize = 200;
const STEPS: usize = 10;
const WRITES_PER_STEP: i64 = 2_000;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Three servers, `--log-retain 200`, 20,000 writes by eight writers: each
/// data directory is sampled after every 2,000 writes and must stay under
/// a bound that depends on `--log-retain` only. Without compaction a
/// backup's log holds every write (about 50 bytes each: 1 MB here).
#[test]
fn every_data_directory_stays_bounded_under_a_long_write_run() {
    let root = tempfile::tempdir().unwrap();
    let dir = |i: usize| root.path().join(format!("s{i}"));
    let mut cluster = ProcessCluster::start_with(3, |i| {
        vec![
            "--data-dir".into(),
            dir(i).display().to_string(),
            "--fsync".into(),
            "never".into(),
            "--log-retain".into(),
            RETAIN.to_string(),
        ]
    });
    let ports = cluster.ports();
    let writers = Workload::start(&ports, 8, 0);
    // The log holds at most 2 x RETAIN entries after a compaction, plus what
    // arrives before the next check, and log.prev as much again; a record
    // of an entry is 30 bytes and each append adds a commit note (17).
    let bound = (2 * (4 * RETAIN as u64) * 47) + 4096;
    let mut largest = vec![0; 3];
    for step in 0..STEPS {
        assert!(
            writers.wait_for_more(WRITES_PER_STEP as usize),
            "step {step}: writes flow"
        );
        for (i, top) in largest.iter_mut().enumerate() {
            *top = (*top).max(dir_bytes(&dir(i)));
        }
    }
    let total = writers.history.ack_count();
    drop(writers.finish());
    let primary = cluster.primary();
    eprintln!(
        "{total} writes; largest data directory per server (bytes): {largest:?}; \
         bound {bound}; primary {primary:?}"
    );
    for (i, &top) in largest.iter().enumerate() {
        assert!(
            top <= bound,
            "server {i}'s data directory reached {top} bytes (bound {bound}) after {total} writes"
        );
    }
}

/// A server whose snapshot is found torn (a 0-byte file renamed into place
/// before its data reached the disk, as main left after power cuts under
/// `--fsync never`) starts from the generation before it, with a warning,
/// and takes writes.
#[test]
fn a_server_with_a_torn_snapshot_starts_from_the_previous_generation() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("s0");
    let args: Vec<String> = ["--data-dir", dir.to_str().unwrap(), "--log-retain", "10"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let port = common::free_port();
    let mut server = common::ServerProcess::spawn_with(0, port, &[], &args).expect("start");
    // Two installs, the second keeping the first as snapshot.prev. The
    // primary compacts from its term loop, so a burst of writes may make
    // only one: wait for each before writing the next batch.
    let mut c = common::client(port);
    for batch in 0..2 {
        for order in batch * 50..(batch + 1) * 50 {
            c.order(1, order).unwrap();
        }
        assert!(
            server.wait_for_line("durable log compacted"),
            "install {batch}"
        );
    }
    c.close();
    server.kill();
    assert!(dir.join("snapshot.prev").exists());
    std::fs::write(dir.join("snapshot"), b"").unwrap();

    let server = common::ServerProcess::spawn_with(0, port, &[], &args)
        .expect("a torn snapshot does not stop the server");
    assert!(server.log_text().contains("falling back to snapshot"));
    let found = common::read(port, 1);
    assert!((0..100).contains(&found), "customer 1 at {found}");
    let mut c = common::client(port);
    c.order(1, 100).expect("a write after the fallback");
    c.close();
}

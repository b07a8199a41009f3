//! A v2 client that disconnects with requests in flight: every write it
//! saw acknowledged is there, on every server, and the session's threads
//! are gone. Alone in its test binary, so that the process's thread count
//! is this test's own.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{in_process_cluster, wait_until};
use factory::kv::KvClient;
use factory::wire::kv::{KvBody, KvLimits, KvOp, KvRequest, KvResponse, KvStatus, KV_TAG};

/// Threads of this process, by name.
fn threads() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

fn read_answer(s: &mut TcpStream) -> KvResponse {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let mut buf = vec![0; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut buf).unwrap();
    KvResponse::decode(&buf, &KvLimits::default()).unwrap()
}

#[test]
fn a_client_gone_with_requests_in_flight_loses_nothing_acknowledged() {
    let servers = in_process_cluster(3);
    let timeout = Some(Duration::from_secs(20));
    // A first session, closed, so that every thread the cluster keeps
    // (replicators, streams) exists before the baseline is taken.
    let mut warm = KvClient::connect(servers[0].local_addr(), timeout).unwrap();
    warm.put(b"warm", b"up").unwrap();
    drop(warm);
    assert!(
        wait_until(|| !threads().iter().any(|t| t.starts_with("kv-writer"))),
        "the warm-up session ended"
    );
    let baseline = threads().len();

    let mut s = TcpStream::connect(servers[0].local_addr()).unwrap();
    s.set_read_timeout(timeout).unwrap();
    s.write_all(&KV_TAG).unwrap();
    let mut out = Vec::new();
    for id in 0..500u64 {
        KvRequest {
            id,
            op: KvOp::Put {
                key: format!("gone-{id}").into_bytes(),
                value: id.to_be_bytes().to_vec(),
            },
        }
        .encode(&mut out);
    }
    s.write_all(&out).unwrap();
    let mut acked = HashMap::new();
    for _ in 0..100 {
        let a = read_answer(&mut s);
        match a.body {
            KvBody::Version(v) if a.status == KvStatus::Ok => acked.insert(a.id, v),
            _ => panic!("{a:?}"),
        };
    }
    assert!(
        threads().iter().any(|t| t.starts_with("kv-writer")),
        "the session's writer runs while requests are in flight"
    );
    drop(s);

    assert!(
        wait_until(|| threads().len() <= baseline),
        "threads left behind: {} now, {baseline} before: {:?}",
        threads().len(),
        threads()
    );
    assert!(!threads().iter().any(|t| t.starts_with("kv-writer")));
    for server in &servers {
        let mut c = KvClient::connect(server.local_addr(), timeout).unwrap();
        for (id, version) in &acked {
            let key = format!("gone-{id}").into_bytes();
            assert!(
                wait_until(|| c.get(&key).unwrap() == Some((*version, id.to_be_bytes().to_vec()))),
                "server {}: acknowledged {key:?} at {version} is {:?}",
                server.factory_id(),
                c.get(&key).unwrap()
            );
        }
        // The ones never acknowledged may or may not be there, but only
        // with the value sent.
        for id in 100..500u64 {
            if let Some((_, value)) = c.get(format!("gone-{id}").as_bytes()).unwrap() {
                assert_eq!(value, id.to_be_bytes());
            }
        }
    }
    for server in servers {
        server.stop();
    }
}

//! Round trips through in-process loopback clusters (`factory::server`):
//!
//! - `cluster/write/N`: one client, one write at a time, to the primary of
//!   an N-server cluster; the difference between N = 1 and N > 1 is the
//!   cost of replicating to the backups before replying.
//! - `cluster/read/N`: one read of a committed record; reads do not
//!   replicate, so N should not matter.
//! - `cluster/write_8_clients/N`: 8 threads, one session each, writing at
//!   once (throughput in writes per second); shows whether the primary
//!   batches concurrent writes into fewer replication rounds.
//!
//! Every cluster is started on port 0, the first write (made during setup)
//! makes server 0 primary and connects its backups, and the cluster is
//! stopped at the end of its benchmark.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use factory::client::Client;
use factory::server::{PeerConfig, Server, ServerConfig};

/// Cluster sizes benchmarked.
const SIZES: [usize; 3] = [1, 2, 3];

/// Concurrent writers in `write_8_clients`.
const WRITERS: usize = 8;

/// Client I/O timeout: a stuck cluster fails the bench instead of hanging it.
const IO_TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// Benches the `cluster/*` round trips for every size in [`SIZES`].
pub fn bench_cluster(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster");
    for size in SIZES {
        let cluster = Cluster::start(size);
        let mut client = cluster.client();
        let mut order: i32 = 0;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("write/{size}"), |b| {
            b.iter(|| {
                order = order.wrapping_add(1) & i32::MAX;
                client.order(0, order).expect("write")
            });
        });
        group.bench_function(format!("read/{size}"), |b| {
            b.iter(|| client.read(black_box(0)).expect("read"));
        });
        let mut writers: Vec<Client> = (0..WRITERS).map(|_| cluster.client()).collect();
        group.throughput(Throughput::Elements(WRITERS as u64));
        group.bench_function(format!("write_{WRITERS}_clients/{size}"), |b| {
            b.iter_custom(|iters| concurrent_writes(&mut writers, iters));
        });
        client.close();
        writers.into_iter().for_each(Client::close);
        cluster.stop();
    }
    group.finish();
}

/// Each writer, on its own thread, writes `iters` orders for its own
/// customer; returns the wall time until the last one is committed.
fn concurrent_writes(writers: &mut [Client], iters: u64) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for (customer, client) in (1..).zip(writers.iter_mut()) {
            scope.spawn(move || {
                for order in 0..iters {
                    let order = (order & i32::MAX as u64) as i32;
                    client.order(customer, order).expect("concurrent write");
                }
            });
        }
    });
    start.elapsed()
}

/// An in-process cluster on 127.0.0.1 whose server 0 is the primary.
struct Cluster {
    servers: Vec<Server>,
}

impl Cluster {
    /// Starts `size` servers on free ports, tells each about the others,
    /// and makes server 0 primary with one write.
    fn start(size: usize) -> Cluster {
        let servers: Vec<Server> = (0..size as i32)
            .map(|id| Server::start(ServerConfig::loopback(0, id)).expect("start server"))
            .collect();
        for server in &servers {
            for peer in servers
                .iter()
                .filter(|p| p.factory_id() != server.factory_id())
            {
                server.add_peer(PeerConfig {
                    id: peer.factory_id(),
                    host: "127.0.0.1".into(),
                    port: peer.local_addr().port(),
                });
            }
        }
        let cluster = Cluster { servers };
        let mut client = cluster.client();
        client
            .order(0, 0)
            .expect("first write makes server 0 primary");
        client.close();
        cluster
    }

    /// A new session with the primary.
    fn client(&self) -> Client {
        let port = self.servers[0].local_addr().port();
        Client::connect("127.0.0.1", port, IO_TIMEOUT).expect("connect to the primary")
    }

    /// Stops every server, backups last.
    fn stop(self) {
        self.servers.into_iter().for_each(Server::stop);
    }
}

//! The election service over real TCP, with the fault-injecting proxy on
//! every directed link between servers (peer lists name the proxies): one
//! primary at a time (G2), failover after a kill and after a blackhole cut
//! (G7), a witness pair, and a vote persisted in the data directory.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::wait_until;
use factory::replication::election::{Cluster, LogPos, Role};
use factory::replication::lease::Timing;
use factory::server::election::{ElectionOptions, ElectionService};
use factory::storage::election_state;
use factory::wire::MemberSet;

struct Cluster3 {
    services: Vec<Option<ElectionService>>,
    /// `links[a][b]`: the proxy a uses to reach b.
    links: Vec<Vec<Option<Proxy>>>,
}

impl Cluster3 {
    fn start(n: usize, witnesses: &[i32], dirs: &[Option<std::path::PathBuf>]) -> Cluster3 {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let links: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| (a != b).then(|| Proxy::start(addrs[b]).unwrap()))
                    .collect()
            })
            .collect();
        let mut services = Vec::new();
        for (me, listener) in listeners.into_iter().enumerate() {
            let peers = (0..n)
                .filter(|&b| b != me)
                .map(|b| (b as i32, links[me][b].as_ref().unwrap().addr()))
                .collect();
            let options = ElectionOptions {
                cluster: Cluster {
                    me: me as i32,
                    voters: (0..n as i32).collect(),
                    witnesses: witnesses.to_vec(),
                },
                timing: Timing::default(),
                peers,
                data_dir: dirs.get(me).cloned().flatten(),
            };
            let mut service = ElectionService::start(options, || LogPos::EMPTY).unwrap();
            service.listen(listener).unwrap();
            services.push(Some(service));
        }
        Cluster3 { services, links }
    }

    fn serving(&self) -> Vec<usize> {
        self.services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.status().may_commit))
            .map(|(i, _)| i)
            .collect()
    }

    /// Waits for exactly one server that may commit, other than `not`.
    fn await_primary(&self, not: Option<usize>) -> usize {
        let mut found = None;
        assert!(
            wait_until(|| {
                let serving = self.serving();
                assert!(serving.len() <= 1, "two servers may commit: {serving:?}");
                found = serving.first().copied().filter(|&p| Some(p) != not);
                found.is_some()
            }),
            "no primary"
        );
        found.unwrap()
    }

    /// Cuts `id` off from every other server, both ways.
    fn isolate(&self, id: usize, mode: Mode) {
        for (a, row) in self.links.iter().enumerate() {
            for (b, proxy) in row.iter().enumerate() {
                if let Some(proxy) = proxy {
                    if a == id || b == id {
                        proxy.set_both(mode);
                    }
                }
            }
        }
    }

    fn heal(&self) {
        self.links.iter().flatten().flatten().for_each(Proxy::heal);
    }
}

#[test]
fn g2_three_servers_elect_one_primary_and_keep_it() {
    let cluster = Cluster3::start(3, &[], &[]);
    let p = cluster.await_primary(None);
    let epoch = cluster.services[p].as_ref().unwrap().status().epoch;
    // An idle cluster: heartbeats keep the same primary (observed 1 s).
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(cluster.serving(), vec![p]);
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in cluster.services.iter().flatten() {
        let st = s.status();
        assert_eq!(st.epoch, epoch);
        assert_eq!(st.primary, Some(p as i32));
    }
}

#[test]
fn g7_a_killed_primary_is_replaced() {
    let mut cluster = Cluster3::start(3, &[], &[]);
    let p = cluster.await_primary(None);
    let killed = Instant::now();
    cluster.services[p].take().unwrap().stop();
    let q = cluster.await_primary(Some(p));
    eprintln!("failover after a kill: {} ms", killed.elapsed().as_millis());
    assert_ne!(q, p);
}

#[test]
fn g2_g7_a_blackholed_primary_gives_way_and_steps_down_at_the_heal() {
    for mode in [Mode::Blackhole, Mode::Reset] {
        let cluster = Cluster3::start(3, &[], &[]);
        let p = cluster.await_primary(None);
        let cut = Instant::now();
        cluster.isolate(p, mode);
        let q = cluster.await_primary(Some(p));
        eprintln!(
            "failover after a {mode:?} cut: {} ms",
            cut.elapsed().as_millis()
        );
        let old = cluster.services[p].as_ref().unwrap();
        assert!(
            !old.status().lease_live,
            "the cut-off primary's lease ended first"
        );
        assert_eq!(old.status().role, Role::Primary, "it cannot know yet");
        cluster.heal();
        let followed = wait_until(|| old.status().primary == Some(q as i32));
        if !followed {
            for s in cluster.services.iter().flatten() {
                eprintln!("{:?}", s.status());
            }
            for (a, row) in cluster.links.iter().enumerate() {
                for (b, proxy) in row.iter().enumerate() {
                    if let Some(proxy) = proxy {
                        eprintln!("link {a}->{b}: {} connections", proxy.connections());
                    }
                }
            }
        }
        assert!(
            followed,
            "the old primary follows the new one after the heal"
        );
        assert_eq!(old.status().role, Role::Backup);
        assert_eq!(cluster.serving(), vec![q]);
    }
}

#[test]
fn g7_two_servers_and_a_witness_fail_over() {
    let mut cluster = Cluster3::start(3, &[2], &[]);
    let p = cluster.await_primary(None);
    assert_ne!(p, 2, "a witness never leads");
    assert_eq!(
        cluster.services[2].as_ref().unwrap().status().role,
        Role::Witness
    );
    // The backup's vote may have come after the majority (the primary and
    // the witness): it joins the in-sync set as the term would add it once
    // it caught up. Until then it could not be elected, by design.
    let both = MemberSet::from_ids([0, 1]).unwrap();
    let primary = cluster.services[p].as_ref().unwrap();
    assert!(wait_until(|| {
        if primary.status().config.members != both {
            primary.propose_in_sync(both);
        }
        cluster.services[2]
            .as_ref()
            .unwrap()
            .status()
            .config
            .members
            == both
    }));
    cluster.services[p].take().unwrap().stop();
    let q = cluster.await_primary(Some(p));
    assert_eq!(q, 1 - p);
}

#[test]
fn a_vote_is_in_the_data_directory() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<Option<std::path::PathBuf>> =
        dirs.iter().map(|d| Some(d.path().to_path_buf())).collect();
    let cluster = Cluster3::start(3, &[], &paths);
    let p = cluster.await_primary(None);
    let epoch = cluster.services[p].as_ref().unwrap().status().epoch;
    let saved = election_state::load(dirs[p].path())
        .unwrap()
        .expect("saved");
    assert_eq!(saved.epoch, epoch);
    assert_eq!(saved.voted_for, Some(p as i32));
    let holding = || {
        (0..3)
            .filter(|&i| {
                election_state::load(dirs[i].path())
                    .unwrap()
                    .is_some_and(|h| h.epoch >= epoch)
            })
            .count()
    };
    // A win needs a majority's saved votes; the third server saves the
    // epoch when the primary's heartbeat reaches it, which may come later.
    assert!(holding() >= 2, "a majority saved the winning epoch");
    assert!(
        wait_until(|| holding() == 3),
        "every server holds the winning epoch"
    );
}

#[test]
fn hostile_election_input_is_closed_and_the_cluster_carries_on() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ElectionOptions {
        cluster: Cluster {
            me: 0,
            voters: vec![0],
            witnesses: vec![],
        },
        timing: Timing::default(),
        peers: vec![],
        data_dir: None,
    };
    let mut service = ElectionService::start(options, || LogPos::EMPTY).unwrap();
    service.listen(listener).unwrap();
    let closed = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        common::closed_by_server(&mut s)
    };
    assert!(closed(b"CLIENT\0\0"), "a wrong tag");
    let mut huge = b"FELE\0\0\0\x01".to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(closed(&huge), "a length over the bound, refused unread");
    let mut junk = b"FELE\0\0\0\x01".to_vec();
    junk.extend_from_slice(&[0, 0, 0, 12, 1, 99, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert!(closed(&junk), "an unknown kind");
    // A one-server cluster elects itself regardless.
    assert!(wait_until(|| service.status().may_commit));
}

//! The majority election running inside real servers (in this process),
//! over the servers' own ports (`FELE` connections): it elects one primary
//! and replaces it after a kill (G7), and writes sent to any server go to
//! the elected primary (the election drives the term; process-level
//! scenarios are tests/failover.rs).

mod common;

use factory::server::{ElectionConfig, PeerConfig, Server, ServerConfig};

fn cluster(n: usize) -> Vec<Option<Server>> {
    let ports: Vec<u16> = (0..n).map(|_| common::free_port()).collect();
    (0..n)
        .map(|i| {
            let mut config = ServerConfig::loopback(ports[i], i as i32);
            config.peers = (0..n)
                .filter(|&j| j != i)
                .map(|j| PeerConfig {
                    id: j as i32,
                    host: "127.0.0.1".into(),
                    port: ports[j],
                })
                .collect();
            config.election = Some(ElectionConfig::default());
            Some(Server::start(config).expect("start a server"))
        })
        .collect()
}

fn elected(servers: &[Option<Server>]) -> Vec<i32> {
    servers
        .iter()
        .flatten()
        .filter(|s| s.election_status().is_some_and(|st| st.may_commit))
        .map(Server::factory_id)
        .collect()
}

#[test]
fn g7_servers_elect_a_primary_over_their_own_ports_and_replace_it() {
    let mut servers = cluster(3);
    let mut first = None;
    assert!(common::wait_until(|| {
        let e = elected(&servers);
        assert!(e.len() <= 1, "two elected at once: {e:?}");
        first = e.first().copied();
        first.is_some()
    }));
    let p = first.unwrap();
    for s in servers.iter().flatten() {
        let st = s.election_status().unwrap();
        assert!(
            common::wait_until(|| s.election_status().unwrap().primary == Some(p)),
            "{st:?}"
        );
    }
    // A write through server 0 reaches the elected primary.
    let port = servers[0].as_ref().unwrap().local_addr().port();
    let mut c = common::client(port);
    let info = c.order(7, 42).expect("a write");
    assert_eq!((info.customer_id, info.order_number), (7, 42));
    c.close();
    servers[p as usize].take().unwrap().stop();
    let mut next = None;
    assert!(common::wait_until(|| {
        next = elected(&servers).first().copied();
        next.is_some_and(|q| q != p)
    }));
}

#[test]
fn without_the_option_an_election_connection_is_closed() {
    use std::io::Write;
    let server = Server::start(ServerConfig::loopback(0, 0)).unwrap();
    assert!(server.election_status().is_none());
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(&factory::wire::election::ELECTION_TAG).unwrap();
    assert!(common::closed_by_server(&mut s));
}

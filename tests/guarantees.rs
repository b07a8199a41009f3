//! G2 (at most one server accepts writes; a write sent to a backup is
//! forwarded and applied on the primary first) on in-process clusters,
//! where every server's own view (its status) can be read at any moment.

mod common;

use common::{client, in_process_cluster, wait_until};
use factory::server::Server;

/// The index of the one server whose status says it is primary, once every
/// server's status names that same primary in the same epoch. Panics as
/// soon as two servers claim the role, or when they do not agree in time.
fn single_primary(servers: &[Server]) -> usize {
    let mut found = None;
    let agreed = wait_until(|| {
        let views: Vec<_> = servers.iter().map(Server::status).collect();
        let claims: Vec<usize> = (0..views.len())
            .filter(|&i| views[i].primary_id == views[i].factory_id)
            .collect();
        assert!(
            claims.len() <= 1,
            "two servers claim the primary role: {views:?}"
        );
        let Some(&p) = claims.first() else {
            return false;
        };
        let (id, epoch) = (views[p].factory_id, views[p].epoch);
        found = Some(p);
        views.iter().all(|v| v.primary_id == id && v.epoch == epoch)
    });
    let views: Vec<_> = servers.iter().map(Server::status).collect();
    assert!(
        agreed,
        "no primary that every server names in its epoch: {views:?}"
    );
    found.unwrap()
}

/// G2: writes sent to each live backup reach the client only once the
/// primary holds them at the next log index and has applied them (so they
/// were forwarded, not applied on the backup); the backup holds the same
/// entries afterwards, and its own log gained nothing else. Exactly one
/// server claims the primary role in every server's view, before and after.
#[test]
fn a_write_to_a_backup_is_forwarded_and_applied_on_the_primary_first() {
    let servers = in_process_cluster(3);
    let port = |i: usize| servers[i].local_addr().port();
    // The first write makes its server primary.
    let mut c = client(port(0));
    c.order(1, 0).expect("first write");
    c.close();
    let p = single_primary(&servers);
    let primary = &servers[p];
    for b in (0..servers.len()).filter(|&b| b != p) {
        let backup = &servers[b];
        let customer = 100 + b as i32;
        let mut c = client(port(b));
        for order in 0..5 {
            let before = primary.status().last_index;
            let info = c.order(customer, order).expect("write through a backup");
            assert_eq!((info.customer_id, info.order_number), (customer, order));
            // The reply is here: the primary logged it as its next entry,
            // committed and applied it.
            let after = primary.status();
            assert_eq!(
                after.last_index,
                before + 1,
                "backup {b}: one entry on the primary per forwarded write"
            );
            assert!(
                after.committed_index >= after.last_index,
                "backup {b}: committed on the primary before the reply: {after:?}"
            );
            assert_eq!(
                primary.last_order(customer),
                order,
                "backup {b}: applied on the primary before the reply"
            );
            // The backup never holds more than the primary did.
            assert!(backup.status().last_index <= after.last_index);
        }
        c.close();
        let target = primary.status().last_index;
        assert!(
            wait_until(|| {
                let s = backup.status();
                s.last_index == target && s.committed_index == target
            }),
            "backup {b} holds and commits the primary's entries: {:?} vs {:?}",
            backup.status(),
            primary.status()
        );
        assert_eq!(backup.last_order(customer), 4, "backup {b} applied them");
        assert_eq!(single_primary(&servers), p, "still the same primary");
    }
    for s in servers {
        s.stop();
    }
}

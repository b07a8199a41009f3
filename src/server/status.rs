//! The answer to a cluster status request (`wire::status`): this server's
//! own view, gathered from the replica and the primary's progress, sent as
//! one report before the connection closes. Called by the accept loop's
//! handshake dispatch; the client sessions count themselves here.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;

use super::Shared;
use crate::state::NO_PRIMARY;
use crate::wire::status::{Lease, PeerLag, Role, StatusReport};

/// Sends this server's report to `stream` (which just sent the status tag).
pub(super) fn run(shared: &Shared, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_write_timeout(Some(shared.limits.client_write_timeout));
    let mut out = Vec::with_capacity(256);
    report(shared).encode(&mut out);
    match stream.write_all(&out) {
        Ok(()) => log::debug!("{peer}: sent the cluster status"),
        Err(e) => log::debug!("{peer}: gone before taking the cluster status ({e})"),
    }
}

/// This server's view of the cluster.
pub(super) fn report(shared: &Shared) -> StatusReport {
    let (role, primary_id, epoch, trusted, in_sync, last_index, commit_index) = {
        let replica = shared.replica();
        (
            role_of(replica.is_primary(), replica.primary_id()),
            replica.primary_id(),
            replica.epoch(),
            replica.trusted(),
            replica
                .in_sync()
                .map(|s| s.ids().to_vec())
                .unwrap_or_default(),
            replica.last_index(),
            replica.committed_index(),
        )
    };
    // Taken after the replica lock is released (the lock order).
    let peers = {
        let progress = shared.repl.lock();
        if role == Role::Primary && progress.epoch != 0 {
            progress
                .peers
                .iter()
                .map(|p| PeerLag {
                    id: p.id,
                    matched: p.matched,
                    live: p.live,
                    v1: p.v1,
                })
                .collect()
        } else {
            Vec::new()
        }
    };
    let elected = election_view(shared);
    let (role, epoch, primary_id, lease, lease_ms, in_sync) = match elected {
        Some(v) => v,
        None => (role, epoch, primary_id, Lease::None, 0, in_sync),
    };
    StatusReport {
        factory_id: shared.factory_id,
        role,
        epoch,
        primary_id,
        lease,
        lease_ms,
        trusted,
        in_sync,
        last_index,
        commit_index,
        peers,
        clients: shared.client_sessions.load(Ordering::Relaxed),
        uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        balancer: None,
    }
}

type ElectedView = (Role, crate::wire::Epoch, i32, Lease, u32, Vec<i32>);

/// With the election on: the role, epoch, primary, lease and in-sync set
/// as the election holds them (a candidate shows as such; the set is the
/// latest this server accepted, a pending change included).
fn election_view(shared: &Shared) -> Option<ElectedView> {
    use crate::replication::election::Role as Elected;
    if !shared.elected.on() {
        return None;
    }
    let st = shared
        .election
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(super::election::ElectionService::status)?;
    let primary = st.primary.unwrap_or(NO_PRIMARY);
    let role = match st.role {
        Elected::Primary => Role::Primary,
        Elected::PreCandidate | Elected::Candidate => Role::Candidate,
        Elected::Witness => Role::Witness,
        Elected::Backup if primary != NO_PRIMARY => Role::Backup,
        Elected::Backup => Role::Unknown,
    };
    let lease = match role {
        Role::Primary if st.lease_live => Lease::Held,
        Role::Backup => Lease::Honoured,
        _ => Lease::None,
    };
    let lease_ms = u32::try_from(st.lease_left_ms).unwrap_or(u32::MAX);
    Some((
        role,
        st.epoch,
        primary,
        lease,
        lease_ms,
        st.config.members.ids().to_vec(),
    ))
}

/// The role a server of this version has: primary, following one, or
/// neither.
fn role_of(is_primary: bool, primary_id: i32) -> Role {
    if is_primary {
        Role::Primary
    } else if primary_id != NO_PRIMARY {
        Role::Backup
    } else {
        Role::Unknown
    }
}

/// One open client session, counted in the status report while it lives.
pub(super) struct CountedSession<'a>(&'a Shared);

impl<'a> CountedSession<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        shared.client_sessions.fetch_add(1, Ordering::Relaxed);
        CountedSession(shared)
    }
}

impl Drop for CountedSession<'_> {
    fn drop(&mut self) {
        self.0.client_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert_eq!(role_of(true, 3), Role::Primary);
        assert_eq!(role_of(false, 3), Role::Backup);
        assert_eq!(role_of(false, NO_PRIMARY), Role::Unknown);
    }
}

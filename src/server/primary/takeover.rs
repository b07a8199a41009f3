//! Probing the peers before taking over: each configured peer is asked, in
//! parallel on short-lived native connections, where its log ends and
//! whether it knows a live primary. [`crate::replication::decide_takeover`]
//! turns the answers into a decision.

use std::thread;

use crate::replication::{PeerView, ProbeOutcome};
use crate::server::peer::{connect, handshake, PeerError};
use crate::server::{PeerConfig, Shared};
use crate::wire::native::{Body, NativeFrame, RejectCode, NATIVE_TAG};
use crate::wire::Epoch;

/// Longest wait for a probe's answer.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Probes every configured peer for a takeover in `epoch`.
pub(crate) fn probe_all(shared: &Shared, epoch: Epoch) -> Vec<(i32, ProbeOutcome)> {
    let peers = shared.peer_list();
    thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|peer| scope.spawn(move || (peer.id, probe(shared, peer, epoch))))
            .collect();
        handles
            .into_iter()
            .zip(&peers)
            .map(|(h, peer)| h.join().unwrap_or((peer.id, ProbeOutcome::Unreachable)))
            .collect()
    })
}

fn probe(shared: &Shared, peer: &PeerConfig, epoch: Epoch) -> ProbeOutcome {
    match ask(shared, peer, epoch) {
        Ok(outcome) => outcome,
        Err(PeerError::SpeaksV1) => ProbeOutcome::V1,
        Err(e) => {
            log::debug!("could not ask peer {} where its log ends: {e}", peer.id);
            ProbeOutcome::Unreachable
        }
    }
}

fn ask(shared: &Shared, peer: &PeerConfig, epoch: Epoch) -> Result<ProbeOutcome, PeerError> {
    let mut link = connect(shared, peer, &NATIVE_TAG)?;
    // An answer needs neither the disk nor replication: a peer silent for
    // longer is treated as down rather than holding up the takeover.
    let wait = shared.limits.peer_timeout.min(PROBE_TIMEOUT);
    link.stream.set_read_timeout(Some(wait))?;
    let probe = NativeFrame::new(
        epoch,
        Body::Probe {
            candidate_id: shared.factory_id,
        },
    );
    let reply = handshake(&mut link, &probe)?;
    Ok(match reply.body {
        Body::ProbeReply {
            replica_id,
            last_index,
            last_epoch,
            trusted,
            in_sync,
            ..
        } => ProbeOutcome::Answered(PeerView {
            id: replica_id,
            last_index,
            last_epoch,
            trusted,
            in_sync: Some(in_sync).filter(|s| !s.is_empty()),
        }),
        Body::Reject {
            code: RejectCode::HasPrimary,
            reason,
        } => ProbeOutcome::HasPrimary(reason.trim().parse().unwrap_or(peer.id)),
        Body::Reject {
            code: RejectCode::StaleEpoch,
            ..
        } => ProbeOutcome::HigherEpoch(reply.epoch),
        other => {
            return Err(PeerError::Frame(format!(
                "expected a probe reply, got {}",
                other.name()
            )))
        }
    })
}

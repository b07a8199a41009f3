//! What the balancer does with each outcome of a protocol v2 request on a
//! server: relay the answer, send the request again (to the primary found
//! anew, or the next reader), or answer `unavailable` because resending
//! could lie. Pure: `kv_upstream` does the I/O and asks these functions.
//! docs/balancer.md ("Protocol v2 through the balancer") states the rule.
//!
//! A request sent again must not change what the client is told:
//! - a read changes nothing, so any failure may be retried;
//! - a `put` sets the key whatever it held, so a second copy leaves the
//!   same value (a newer version of it): it is resent after an unknown
//!   outcome as v1 writes are;
//! - `create`, `update`, `delete` and `cas` depend on what the key holds:
//!   resent after a first copy that applied, they would answer `exists`,
//!   `not found` or `version mismatch` for a write that in fact happened.
//!   They are resent only when the first copy certainly did not apply
//!   (never sent, or answered `not primary`), else answered `unavailable`.

use crate::wire::kv::{KvOp, KvResponse, KvStatus};

/// How a request may be resent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `get`, `scan`: routed over the readers, always retried.
    Read,
    /// `put`: to the primary, retried after an unknown outcome too.
    Put,
    /// `create`, `update`, `delete`, `cas`: retried only when not applied.
    Conditional,
}

impl Class {
    /// The class of `op`.
    pub fn of(op: &KvOp) -> Class {
        match op {
            KvOp::Get { .. } | KvOp::Scan { .. } => Class::Read,
            KvOp::Put { .. } => Class::Put,
            _ => Class::Conditional,
        }
    }

    /// True for the classes that go to the primary.
    pub fn is_write(self) -> bool {
        self != Class::Read
    }
}

/// What one attempt on one server came to, for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered.
    Answered(KvResponse),
    /// It never left the balancer (no session could be opened): nothing
    /// happened.
    NotSent,
    /// It was sent, and the session failed or timed out before its answer:
    /// a write may or may not have applied.
    Unknown,
}

/// What to do with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Give the client this answer.
    Relay(KvResponse),
    /// Send it again (the server it went to is forgotten first).
    Resend,
    /// Answer `unavailable`: the write's outcome is unknown.
    GiveUp,
}

/// The decision for a request of `class` after `outcome`.
pub fn decide(class: Class, outcome: Outcome) -> Decision {
    match outcome {
        Outcome::NotSent => Decision::Resend,
        Outcome::Unknown if class == Class::Conditional => Decision::GiveUp,
        Outcome::Unknown => Decision::Resend,
        Outcome::Answered(r) => match r.status {
            // That server wrote nothing (a write goes to a primary only)
            // and read nothing it could vouch for: ask the one that can.
            KvStatus::NotPrimary => Decision::Resend,
            // A conditional write refused so may be committed later by a
            // new primary: relaying says what resending cannot.
            KvStatus::Unavailable if class == Class::Conditional => Decision::Relay(r),
            KvStatus::Unavailable => Decision::Resend,
            _ => Decision::Relay(r),
        },
    }
}

/// The key a request touches (`None` for a scan).
fn key_of(op: &KvOp) -> Option<&[u8]> {
    match op {
        KvOp::Get { key }
        | KvOp::Put { key, .. }
        | KvOp::Create { key, .. }
        | KvOp::Update { key, .. }
        | KvOp::Delete { key }
        | KvOp::Cas { key, .. } => Some(key),
        KvOp::Scan { .. } => None,
    }
}

/// True when the write at `at` of a pipelined batch may be resent: no
/// later write of the batch on the same key is settled (`settled[j]`: its
/// answer is final, so it may have applied). Resending the earlier write
/// then would apply it after the later one, against the order the client
/// sent them in; it is answered `unavailable` instead (it did not apply).
pub fn may_resend(ops: &[&KvOp], settled: &[bool], at: usize) -> bool {
    let Some(key) = key_of(ops[at]) else {
        return true;
    };
    if !ops[at].is_write() {
        return true;
    }
    !ops.iter()
        .zip(settled)
        .skip(at + 1)
        .any(|(op, &done)| done && op.is_write() && key_of(op) == Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::kv::KvBody;

    fn answer(status: KvStatus) -> KvResponse {
        KvResponse {
            id: 7,
            op: 2,
            status,
            body: KvBody::Empty,
        }
    }

    fn put(key: &[u8]) -> KvOp {
        KvOp::Put {
            key: key.to_vec(),
            value: b"v".to_vec(),
        }
    }

    #[test]
    fn classes() {
        assert_eq!(Class::of(&KvOp::Get { key: vec![] }), Class::Read);
        let scan = KvOp::Scan {
            start: vec![],
            limit: 1,
        };
        assert_eq!(Class::of(&scan), Class::Read);
        assert_eq!(Class::of(&put(b"k")), Class::Put);
        for op in [
            KvOp::Create {
                key: vec![],
                value: vec![],
            },
            KvOp::Update {
                key: vec![],
                value: vec![],
            },
            KvOp::Delete { key: vec![] },
            KvOp::Cas {
                key: vec![],
                expected: 1,
                value: vec![],
            },
        ] {
            assert_eq!(Class::of(&op), Class::Conditional, "{op:?}");
            assert!(Class::of(&op).is_write());
        }
        assert!(!Class::Read.is_write());
    }

    #[test]
    fn what_never_left_is_resent_whatever_it_is() {
        for class in [Class::Read, Class::Put, Class::Conditional] {
            assert_eq!(decide(class, Outcome::NotSent), Decision::Resend);
            let refused = Outcome::Answered(answer(KvStatus::NotPrimary));
            assert_eq!(decide(class, refused), Decision::Resend);
        }
    }

    #[test]
    fn an_unknown_outcome_is_resent_only_where_a_copy_is_harmless() {
        assert_eq!(decide(Class::Read, Outcome::Unknown), Decision::Resend);
        assert_eq!(decide(Class::Put, Outcome::Unknown), Decision::Resend);
        assert_eq!(
            decide(Class::Conditional, Outcome::Unknown),
            Decision::GiveUp
        );
        let unavailable = || Outcome::Answered(answer(KvStatus::Unavailable));
        assert_eq!(decide(Class::Read, unavailable()), Decision::Resend);
        assert_eq!(decide(Class::Put, unavailable()), Decision::Resend);
        assert_eq!(
            decide(Class::Conditional, unavailable()),
            Decision::Relay(answer(KvStatus::Unavailable))
        );
    }

    #[test]
    fn outcomes_and_refusals_are_relayed_as_they_are() {
        for status in [
            KvStatus::Ok,
            KvStatus::NotFound,
            KvStatus::Exists,
            KvStatus::VersionMismatch,
            KvStatus::TooLarge,
            KvStatus::Busy,
            KvStatus::NoMemory,
            KvStatus::BadRequest,
        ] {
            for class in [Class::Read, Class::Put, Class::Conditional] {
                assert_eq!(
                    decide(class, Outcome::Answered(answer(status))),
                    Decision::Relay(answer(status)),
                    "{class:?} {status:?}"
                );
            }
        }
    }

    #[test]
    fn a_write_is_not_resent_behind_a_later_settled_write_of_its_key() {
        let (a, b, a2) = (put(b"a"), put(b"b"), put(b"a"));
        let get_a = KvOp::Get { key: b"a".to_vec() };
        let ops = [&a, &b, &a2, &get_a];
        // The later write of `a` is settled: the first may not follow it.
        assert!(!may_resend(&ops, &[false, false, true, false], 0));
        // Still to be resent too: both go again, in order.
        assert!(may_resend(&ops, &[false, false, false, false], 0));
        // Other keys, reads and earlier writes do not hold it back.
        assert!(may_resend(&ops, &[false, true, false, true], 0));
        assert!(may_resend(&ops, &[true, false, false, false], 2));
        assert!(may_resend(&ops, &[true, true, true, false], 3));
    }
}

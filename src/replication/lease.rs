//! The timing of failure detection and the primary's lease, as arithmetic
//! on monotonic milliseconds that the caller passes in: the options
//! ([`Timing`]) and their validation, and the primary's view of how long a
//! majority has promised to stand by it ([`Lease`]). Used by
//! [`super::election`]; nothing here reads a clock.
//!
//! The rule that keeps two primaries from serving at once: a backup that
//! takes a heartbeat sent at the primary's time `s` promises to refuse
//! votes for `grace_ms` from when it took it (on its own clock), and the
//! primary counts that promise as lasting only `lease_ms` from `s` (on its
//! clock). The heartbeat arrives after it was sent and `grace_ms` exceeds
//! `lease_ms` by more than the two clocks can drift apart over that span, so
//! every promise the primary counts ends, in real time, before the backup
//! stops keeping it.

use std::fmt;

/// Monotonic time in milliseconds, on the clock of the server that holds it.
pub type Millis = u64;

/// How often heartbeats go out and how long leases and elections last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A primary sends a heartbeat to every peer this often.
    pub heartbeat_ms: Millis,
    /// A heartbeat acknowledged by a peer extends the primary's lease to
    /// this long after the heartbeat was sent (if a majority acked it).
    pub lease_ms: Millis,
    /// A server that took a heartbeat refuses to vote for anyone else for
    /// this long after taking it; also how long a server that just started
    /// refuses to vote (it may have made such a promise before it stopped).
    pub grace_ms: Millis,
    /// A backup waits a random extra delay below this before it stands for
    /// election, so that two backups seldom stand at once.
    pub jitter_ms: Millis,
    /// A candidate that has no majority after this long counts the round as
    /// lost and backs off.
    pub round_ms: Millis,
}

impl Default for Timing {
    /// Detection after a primary dies: 360 ms of grace less up to one
    /// heartbeat interval, plus the jitter (the first of two backups stands
    /// after a third of it on average), plus two round trips (pre-vote,
    /// vote) and the first heartbeat's ack: about 350 ms on a quiet
    /// loopback. A primary loses its lease only after 300 ms (six
    /// heartbeats) without a majority's ack, which a loaded machine's
    /// scheduling delays should not reach.
    fn default() -> Self {
        Timing {
            heartbeat_ms: 50,
            lease_ms: 300,
            grace_ms: 360,
            jitter_ms: 100,
            round_ms: 100,
        }
    }
}

/// Longest value any timing option may take (one minute).
pub const MAX_TIMING_MS: Millis = 60_000;

/// Why a [`Timing`] cannot keep its promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimingError {
    /// An option is zero or above [`MAX_TIMING_MS`].
    OutOfRange(&'static str, Millis),
    /// The lease does not cover two heartbeat intervals, so one lost
    /// heartbeat would end it.
    LeaseTooShort {
        lease_ms: Millis,
        heartbeat_ms: Millis,
    },
    /// The grace period is not at least a tenth longer than the lease, the
    /// margin that covers clock drift between the primary and its backups.
    GraceTooShort { grace_ms: Millis, lease_ms: Millis },
}

impl fmt::Display for TimingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimingError::OutOfRange(name, v) => {
                write!(f, "{name} is {v} ms, expected 1..={MAX_TIMING_MS}")
            }
            TimingError::LeaseTooShort {
                lease_ms,
                heartbeat_ms,
            } => write!(
                f,
                "lease of {lease_ms} ms is shorter than two heartbeats of {heartbeat_ms} ms"
            ),
            TimingError::GraceTooShort { grace_ms, lease_ms } => write!(
                f,
                "grace of {grace_ms} ms must exceed the lease of {lease_ms} ms by at least a tenth ({} ms)",
                min_grace(*lease_ms)
            ),
        }
    }
}

impl std::error::Error for TimingError {}

/// The shortest grace period that a lease of `lease_ms` allows.
pub fn min_grace(lease_ms: Millis) -> Millis {
    lease_ms + lease_ms.div_ceil(10).max(1)
}

impl Timing {
    /// Checks that these values keep the lease rule.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), TimingError> {
        for (name, v) in [
            ("heartbeat", self.heartbeat_ms),
            ("lease", self.lease_ms),
            ("grace", self.grace_ms),
            ("election jitter", self.jitter_ms),
            ("election round", self.round_ms),
        ] {
            if v == 0 || v > MAX_TIMING_MS {
                return Err(TimingError::OutOfRange(name, v));
            }
        }
        if self.lease_ms < 2 * self.heartbeat_ms {
            return Err(TimingError::LeaseTooShort {
                lease_ms: self.lease_ms,
                heartbeat_ms: self.heartbeat_ms,
            });
        }
        if self.grace_ms < min_grace(self.lease_ms) {
            return Err(TimingError::GraceTooShort {
                grace_ms: self.grace_ms,
                lease_ms: self.lease_ms,
            });
        }
        Ok(())
    }
}

/// The primary's lease: for each voter, until when (on the primary's
/// clock) its promise counts. The primary's own promise never ends while
/// it is primary, since it refuses every vote while its lease is live.
#[derive(Clone, Debug)]
pub struct Lease {
    me: i32,
    lease_ms: Millis,
    majority: usize,
    /// Each other voter's promise, by id.
    promises: Vec<(i32, Millis)>,
}

impl Lease {
    /// A lease of server `me` among `voters` (every configured server that
    /// votes, `me` included), with nothing granted yet.
    pub fn new(me: i32, voters: &[i32], lease_ms: Millis) -> Self {
        Lease {
            me,
            lease_ms,
            majority: voters.len() / 2 + 1,
            promises: voters
                .iter()
                .filter(|&&id| id != me)
                .map(|&id| (id, 0))
                .collect(),
        }
    }

    /// Until when voter `id`'s promise counts (0: it never acked one).
    pub fn promise_of(&self, id: i32) -> Millis {
        self.promises
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |&(_, until)| until)
    }

    /// Voter `from` acknowledged the heartbeat sent at `sent_at`. An ack
    /// claiming a send time later than `now` is ignored: the primary
    /// trusts only times it handed out.
    pub fn acked(&mut self, from: i32, sent_at: Millis, now: Millis) {
        if sent_at > now {
            return;
        }
        if let Some((_, until)) = self.promises.iter_mut().find(|(id, _)| *id == from) {
            *until = (*until).max(sent_at.saturating_add(self.lease_ms));
        }
    }

    /// The time until which a majority (this server included) promised
    /// to stand by it; `0` when no majority ever did.
    pub fn until(&self) -> Millis {
        let mut ends: Vec<Millis> = self.promises.iter().map(|&(_, u)| u).collect();
        ends.push(Millis::MAX);
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(self.majority - 1).copied().unwrap_or(0)
    }

    /// True while a majority's promises last.
    pub fn live(&self, now: Millis) -> bool {
        now < self.until()
    }

    /// This lease's owner.
    pub fn owner(&self) -> i32 {
        self.me
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_meet_the_margin() {
        let t = Timing::default();
        assert_eq!(t.validate(), Ok(()));
        assert!(t.grace_ms > t.lease_ms);
        assert!(t.lease_ms >= 2 * t.heartbeat_ms);
    }

    #[test]
    fn validation_names_the_broken_rule() {
        let t = Timing {
            heartbeat_ms: 0,
            ..Timing::default()
        };
        assert_eq!(t.validate(), Err(TimingError::OutOfRange("heartbeat", 0)));
        let t = Timing {
            lease_ms: 99,
            ..Timing::default()
        };
        assert!(matches!(
            t.validate(),
            Err(TimingError::LeaseTooShort { .. })
        ));
        let t = Timing {
            grace_ms: 329,
            ..Timing::default()
        };
        assert_eq!(
            t.validate(),
            Err(TimingError::GraceTooShort {
                grace_ms: 329,
                lease_ms: 300
            })
        );
        let ok = Timing {
            grace_ms: 330,
            ..Timing::default()
        };
        assert_eq!(ok.validate(), Ok(()), "exactly a tenth more is enough");
        let t = Timing {
            round_ms: MAX_TIMING_MS + 1,
            ..Timing::default()
        };
        assert!(t.refusal_text().contains("election round"));
    }

    impl Timing {
        fn refusal_text(&self) -> String {
            self.validate().unwrap_err().to_string()
        }
    }

    #[test]
    fn min_grace_rounds_up() {
        assert_eq!(min_grace(300), 330);
        assert_eq!(min_grace(301), 332);
        assert_eq!(min_grace(1), 2);
    }

    #[test]
    fn a_lease_needs_a_majority_of_promises() {
        // Three voters: the primary and one ack are a majority.
        let mut lease = Lease::new(0, &[0, 1, 2], 300);
        assert!(!lease.live(0), "nothing granted yet");
        lease.acked(1, 100, 110);
        assert_eq!(lease.until(), 400);
        assert!(lease.live(399));
        assert!(!lease.live(400), "the lease ends at sent + lease");
        // The later of the two promises counts when both acked.
        lease.acked(2, 200, 210);
        assert_eq!(lease.until(), 500);
        // An older ack arriving late does not shorten anything.
        lease.acked(2, 150, 220);
        assert_eq!(lease.until(), 500);
    }

    #[test]
    fn five_voters_need_two_acks() {
        let mut lease = Lease::new(3, &[0, 1, 2, 3, 4], 300);
        lease.acked(0, 100, 105);
        assert!(!lease.live(105), "the primary and one ack are two of five");
        lease.acked(4, 50, 106);
        assert_eq!(
            lease.until(),
            350,
            "the older of the two promises bounds it"
        );
    }

    #[test]
    fn acks_from_strangers_or_the_future_count_for_nothing() {
        let mut lease = Lease::new(0, &[0, 1, 2], 300);
        lease.acked(7, 100, 110);
        lease.acked(1, 500, 110);
        lease.acked(0, 100, 110);
        assert!(!lease.live(110));
    }

    #[test]
    fn a_single_server_holds_its_own_lease() {
        let lease = Lease::new(0, &[0], 300);
        assert!(lease.live(u64::MAX - 1));
    }

    #[test]
    fn the_backup_promise_outlasts_the_lease_in_real_time() {
        // Sent at real time 1000, taken 1 ms later; the primary's clock runs
        // 4% slow (its lease lasts longer in real time) and the backup's 4%
        // fast (its promise ends sooner): far beyond real clocks' drift.
        let t = Timing::default();
        let sent_real = 1000.0_f64;
        let primary_rate = 0.96;
        let backup_rate = 1.04;
        let lease_end_real = sent_real + t.lease_ms as f64 / primary_rate;
        let promise_end_real = sent_real + 1.0 + t.grace_ms as f64 / backup_rate;
        assert!(promise_end_real > lease_end_real);
    }
}

//! What a server says of its own candidacy: when it stands (asks for
//! pre-votes), when its pre-vote passes (asks for votes), and who refused
//! it and why. The driver (`mod.rs`) shows it every step's role change and
//! every reply. The first round after the primary was lost, and every
//! `LOUD_EVERY`th after it, is told at info, the others at debug: a server
//! cut off from the rest stands every few hundred milliseconds and must not
//! flood the log, but a run in which nobody is elected must still say
//! whether nobody stood or nobody agreed.

use crate::logging::epoch as name;
use crate::replication::election::{Election, Message, Role};

use super::refusal_text;

/// Rounds between two info lines while no round succeeds.
const LOUD_EVERY: u32 = 20;

/// Rounds stood since this server last followed or was a primary.
#[derive(Default)]
pub(super) struct Candidacy {
    rounds: u32,
}

impl Candidacy {
    fn loud(&self) -> bool {
        self.rounds <= 1 || self.rounds.is_multiple_of(LOUD_EVERY)
    }

    /// The election stepped from role `before`; tells what changed.
    pub(super) fn stepped(&mut self, me: i32, before: Role, election: &Election) {
        let after = election.role();
        match (before, after) {
            (Role::Backup, Role::PreCandidate | Role::Candidate) => {
                self.rounds = self.rounds.saturating_add(1);
                let line = format!(
                    "factory {me}: stands for election (round {}): asks for pre-votes to go above epoch {}",
                    self.rounds,
                    name(election.epoch())
                );
                self.say(&line);
            }
            (Role::PreCandidate, Role::Candidate) => log::info!(
                "factory {me}: a majority agreed to its pre-vote: asks for votes in epoch {}",
                name(election.epoch())
            ),
            // A primary names itself: followed or elected, the rounds end.
            _ if election.primary().is_some() => self.rounds = 0,
            _ => {}
        }
    }

    /// A reply to this server's candidacy arrived: a refusal is told.
    pub(super) fn replied(&self, me: i32, msg: &Message) {
        let (from, what, refused) = match *msg {
            Message::PreVoteReply { from, refused, .. } => (from, "pre-vote", refused),
            Message::VoteReply { from, refused, .. } => (from, "vote", refused),
            _ => return,
        };
        if let Some(why) = refused {
            let line = format!(
                "factory {me}: server {from} refused its {what}: {}",
                refusal_text(why)
            );
            self.say(&line);
        }
    }

    fn say(&self, line: &str) {
        if self.loud() {
            log::info!("{line}");
        } else {
            log::debug!("{line}");
        }
    }
}

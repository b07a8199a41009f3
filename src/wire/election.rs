//! The election protocol between Rust servers and witnesses: the messages
//! of [`crate::replication::election`] and their frames, on a connection of
//! its own behind the handshake tag `FELE` (an original server rejects it,
//! as it rejects `FREP`), so that heartbeats never wait behind appends.
//!
//! Frames have the native header (docs/protocol.md §7): length u32 BE (the
//! bytes after it, at most [`MAX_ELECTION_FRAME`]), version u8 (1), kind
//! u8, the sender's epoch u64 BE, then the body:
//!
//! ```text
//! kind  message        body (all integers big-endian)
//! 1     Heartbeat      from i32, sent_at u64, config
//! 2     HeartbeatAck   from i32, sent_at u64, config id, ok u8
//! 3     PreVote        from i32, proposed u64, log end
//! 4     PreVoteReply   from i32, proposed u64, refusal
//! 5     Vote           from i32, log end
//! 6     VoteReply      from i32, refusal
//!
//! log end    epoch u64, index i32
//! config id  epoch u64, version u32
//! config     config id, count u8 (<= 16), ids i32..., floor (a log end)
//! refusal    code u8 (0 granted, 1 stale epoch, 2 lease live, 3 starting,
//!            4 already voted, 5 log behind, 6 not in sync), id i32
//!            (the primary for 2, the candidate voted for for 4, else 0)
//! ```

use byteorder::{BigEndian, ByteOrder};

use super::cursor::{Reader, Writer};
use super::entry::{Epoch, MemberSet, MAX_MEMBERS};
use super::native::FrameError;
use super::HANDSHAKE_LEN;

/// The handshake tag of an election connection.
pub const ELECTION_TAG: [u8; HANDSHAKE_LEN] = *b"FELE\0\0\0\x01";

/// The election frame format version this build speaks.
pub const ELECTION_VERSION: u8 = 1;

/// Largest `length` an election frame may declare (the largest body, a
/// heartbeat with 16 members, is 107 bytes).
pub const MAX_ELECTION_FRAME: usize = 256;

const HEADER_LEN: usize = 10;

/// Where a log ends: the epoch of its last entry, then its index. Logs
/// compare by epoch first, as in the takeover rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos {
    /// The epoch of the last entry (0: none, or an original primary's).
    pub epoch: Epoch,
    /// The last index (-1: empty).
    pub index: i32,
}

impl LogPos {
    /// An empty log.
    pub const EMPTY: LogPos = LogPos {
        epoch: 0,
        index: -1,
    };
}

/// The order of in-sync sets: by the epoch that proposed them, then by a
/// counter within that epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigId {
    /// The epoch of the primary that proposed it (0: the initial set).
    pub epoch: Epoch,
    /// Its number among that primary's proposals.
    pub version: u32,
}

/// An in-sync set with its place in the order of sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which set this is.
    pub id: ConfigId,
    /// The servers that hold every committed entry.
    pub members: MemberSet,
    /// Where the log of the primary that proposed the first set of its
    /// epoch ended when it was elected: a member may be elected only once
    /// its log reaches this point (before, it may lack committed entries).
    pub floor: LogPos,
}

/// Why a server refused a (pre-)vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request's epoch is not above the voter's.
    StaleEpoch,
    /// The voter stands by a live primary (its id).
    LeaseLive(i32),
    /// The voter started less than a grace period ago.
    Starting,
    /// The voter already voted for another candidate in this epoch.
    AlreadyVoted(i32),
    /// The candidate's log is behind the voter's.
    LogBehind,
    /// The candidate is not in the latest in-sync set the voter knows.
    NotInSync,
}

/// A message between servers. `epoch` is always the sender's current
/// epoch, as in every native frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// Would you vote for me in `proposed`? (Changes nobody's state.)
    PreVote {
        from: i32,
        epoch: Epoch,
        proposed: Epoch,
        last: LogPos,
    },
    /// The answer to a pre-vote for `proposed`.
    PreVoteReply {
        from: i32,
        epoch: Epoch,
        proposed: Epoch,
        refused: Option<Refusal>,
    },
    /// Vote for me in `epoch` (which carries my id).
    Vote {
        from: i32,
        epoch: Epoch,
        last: LogPos,
    },
    /// The answer to a vote request (`epoch`: the voter's epoch after it).
    VoteReply {
        from: i32,
        epoch: Epoch,
        refused: Option<Refusal>,
    },
    /// The primary is alive; `sent_at` is its own clock, echoed back.
    Heartbeat {
        from: i32,
        epoch: Epoch,
        sent_at: u64,
        config: Config,
    },
    /// The answer to a heartbeat: `ok` if the sender took it (and now
    /// promises to stand by the primary), with the latest set it holds.
    HeartbeatAck {
        from: i32,
        epoch: Epoch,
        sent_at: u64,
        accepted: ConfigId,
        ok: bool,
    },
}

const KIND_HEARTBEAT: u8 = 1;
const KIND_HEARTBEAT_ACK: u8 = 2;
const KIND_PRE_VOTE: u8 = 3;
const KIND_PRE_VOTE_REPLY: u8 = 4;
const KIND_VOTE: u8 = 5;
const KIND_VOTE_REPLY: u8 = 6;

impl Message {
    /// The sender's id.
    pub fn from(&self) -> i32 {
        match *self {
            Message::PreVote { from, .. }
            | Message::PreVoteReply { from, .. }
            | Message::Vote { from, .. }
            | Message::VoteReply { from, .. }
            | Message::Heartbeat { from, .. }
            | Message::HeartbeatAck { from, .. } => from,
        }
    }

    /// The sender's epoch.
    pub fn epoch(&self) -> Epoch {
        match *self {
            Message::PreVote { epoch, .. }
            | Message::PreVoteReply { epoch, .. }
            | Message::Vote { epoch, .. }
            | Message::VoteReply { epoch, .. }
            | Message::Heartbeat { epoch, .. }
            | Message::HeartbeatAck { epoch, .. } => epoch,
        }
    }

    /// The message's name, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "pre-vote",
            Message::PreVoteReply { .. } => "pre-vote reply",
            Message::Vote { .. } => "vote request",
            Message::VoteReply { .. } => "vote reply",
            Message::Heartbeat { .. } => "heartbeat",
            Message::HeartbeatAck { .. } => "heartbeat ack",
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Message::Heartbeat { .. } => KIND_HEARTBEAT,
            Message::HeartbeatAck { .. } => KIND_HEARTBEAT_ACK,
            Message::PreVote { .. } => KIND_PRE_VOTE,
            Message::PreVoteReply { .. } => KIND_PRE_VOTE_REPLY,
            Message::Vote { .. } => KIND_VOTE,
            Message::VoteReply { .. } => KIND_VOTE_REPLY,
        }
    }

    /// Appends the whole frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(ELECTION_VERSION);
        out.push(self.kind());
        out.extend_from_slice(&self.epoch().to_be_bytes());
        let mut w = Writer(out);
        match *self {
            Message::Heartbeat {
                from,
                sent_at,
                config,
                ..
            } => {
                w.i32(from);
                w.u64(sent_at);
                w.config(&config);
            }
            Message::HeartbeatAck {
                from,
                sent_at,
                accepted,
                ok,
                ..
            } => {
                w.i32(from);
                w.u64(sent_at);
                w.config_id(accepted);
                w.0.push(u8::from(ok));
            }
            Message::PreVote {
                from,
                proposed,
                last,
                ..
            } => {
                w.i32(from);
                w.u64(proposed);
                w.pos(last);
            }
            Message::PreVoteReply {
                from,
                proposed,
                refused,
                ..
            } => {
                w.i32(from);
                w.u64(proposed);
                w.refusal(refused);
            }
            Message::Vote { from, last, .. } => {
                w.i32(from);
                w.pos(last);
            }
            Message::VoteReply { from, refused, .. } => {
                w.i32(from);
                w.refusal(refused);
            }
        }
        let len = (out.len() - start - 4) as u32;
        BigEndian::write_u32(&mut out[start..start + 4], len);
    }

    /// Decodes a frame from the bytes after its length prefix.
    ///
    /// # Errors
    /// [`FrameError`] for any byte sequence that is not exactly one frame.
    pub fn decode(buf: &[u8]) -> Result<Message, FrameError> {
        if buf.len() < HEADER_LEN || buf.len() > MAX_ELECTION_FRAME {
            return Err(FrameError::BadLength(buf.len() as u32));
        }
        if buf[0] != ELECTION_VERSION {
            return Err(FrameError::Version(buf[0]));
        }
        let epoch = BigEndian::read_u64(&buf[2..10]);
        let mut r = Reader {
            buf: &buf[HEADER_LEN..],
            name: "election",
        };
        let msg = match buf[1] {
            KIND_HEARTBEAT => Message::Heartbeat {
                from: r.i32()?,
                epoch,
                sent_at: r.u64()?,
                config: r.config()?,
            },
            KIND_HEARTBEAT_ACK => Message::HeartbeatAck {
                from: r.i32()?,
                epoch,
                sent_at: r.u64()?,
                accepted: r.config_id()?,
                ok: r.flag()?,
            },
            KIND_PRE_VOTE => Message::PreVote {
                from: r.i32()?,
                epoch,
                proposed: r.u64()?,
                last: r.pos()?,
            },
            KIND_PRE_VOTE_REPLY => Message::PreVoteReply {
                from: r.i32()?,
                epoch,
                proposed: r.u64()?,
                refused: r.refusal()?,
            },
            KIND_VOTE => Message::Vote {
                from: r.i32()?,
                epoch,
                last: r.pos()?,
            },
            KIND_VOTE_REPLY => Message::VoteReply {
                from: r.i32()?,
                epoch,
                refused: r.refusal()?,
            },
            other => return Err(FrameError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Checks an election frame's 4-byte length prefix before anything is read.
///
/// # Errors
/// [`FrameError::BadLength`] below the header or above [`MAX_ELECTION_FRAME`].
pub fn check_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if (len as usize) < HEADER_LEN || len as usize > MAX_ELECTION_FRAME {
        return Err(FrameError::BadLength(len));
    }
    Ok(len as usize)
}

impl Writer<'_> {
    fn pos(&mut self, p: LogPos) {
        self.u64(p.epoch);
        self.i32(p.index);
    }
    fn config_id(&mut self, id: ConfigId) {
        self.u64(id.epoch);
        self.u32(id.version);
    }
    fn config(&mut self, c: &Config) {
        self.config_id(c.id);
        self.0.push(c.members.len() as u8);
        for &id in c.members.ids() {
            self.i32(id);
        }
        self.pos(c.floor);
    }
    fn refusal(&mut self, r: Option<Refusal>) {
        let (code, id) = match r {
            None => (0, 0),
            Some(Refusal::StaleEpoch) => (1, 0),
            Some(Refusal::LeaseLive(p)) => (2, p),
            Some(Refusal::Starting) => (3, 0),
            Some(Refusal::AlreadyVoted(c)) => (4, c),
            Some(Refusal::LogBehind) => (5, 0),
            Some(Refusal::NotInSync) => (6, 0),
        };
        self.0.push(code);
        self.i32(id);
    }
}

impl Reader<'_> {
    fn pos(&mut self) -> Result<LogPos, FrameError> {
        Ok(LogPos {
            epoch: self.u64()?,
            index: self.i32()?,
        })
    }
    fn config_id(&mut self) -> Result<ConfigId, FrameError> {
        Ok(ConfigId {
            epoch: self.u64()?,
            version: self.u32()?,
        })
    }
    fn config(&mut self) -> Result<Config, FrameError> {
        let id = self.config_id()?;
        let count = self.u8()?;
        if count as usize > MAX_MEMBERS {
            return Err(FrameError::TooMany("in-sync members", count.into()));
        }
        let mut members = MemberSet::new();
        for _ in 0..count {
            members.insert(self.i32()?);
        }
        if members.len() != count as usize {
            return Err(FrameError::BadBody("in-sync set with a repeated id"));
        }
        Ok(Config {
            id,
            members,
            floor: self.pos()?,
        })
    }
    fn refusal(&mut self) -> Result<Option<Refusal>, FrameError> {
        let code = self.u8()?;
        let id = self.i32()?;
        Ok(match code {
            0 => None,
            1 => Some(Refusal::StaleEpoch),
            2 => Some(Refusal::LeaseLive(id)),
            3 => Some(Refusal::Starting),
            4 => Some(Refusal::AlreadyVoted(id)),
            5 => Some(Refusal::LogBehind),
            6 => Some(Refusal::NotInSync),
            _ => return Err(FrameError::BadBody("refusal code")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;

    fn config() -> Config {
        Config {
            id: ConfigId {
                epoch: 0x2_0001,
                version: 3,
            },
            members: MemberSet::from_ids([0, 1, 2]).unwrap(),
            floor: LogPos {
                epoch: 0x1_0000,
                index: 41,
            },
        }
    }

    fn samples() -> Vec<Message> {
        let last = LogPos {
            epoch: u64::MAX,
            index: i32::MIN,
        };
        let mut all = vec![
            Message::Heartbeat {
                from: 1,
                epoch: 0x2_0001,
                sent_at: 123_456,
                config: config(),
            },
            Message::HeartbeatAck {
                from: 2,
                epoch: 0x2_0001,
                sent_at: u64::MAX,
                accepted: config().id,
                ok: true,
            },
            Message::PreVote {
                from: 65_535,
                epoch: 0,
                proposed: 0x1_ffff,
                last,
            },
            Message::Vote {
                from: 0,
                epoch: 0x7_0000,
                last: LogPos::EMPTY,
            },
        ];
        for refused in [
            None,
            Some(Refusal::StaleEpoch),
            Some(Refusal::LeaseLive(-7)),
            Some(Refusal::Starting),
            Some(Refusal::AlreadyVoted(i32::MAX)),
            Some(Refusal::LogBehind),
            Some(Refusal::NotInSync),
        ] {
            all.push(Message::VoteReply {
                from: 3,
                epoch: 9,
                refused,
            });
            all.push(Message::PreVoteReply {
                from: 3,
                epoch: 9,
                proposed: 10,
                refused,
            });
        }
        all
    }

    fn frame(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        out
    }

    #[test]
    fn golden_heartbeat() {
        let bytes = frame(&samples()[0]);
        let want = hex("00 00 00 3b  01 01  00 00 00 00 00 02 00 01
             00 00 00 01  00 00 00 00 00 01 e2 40
             00 00 00 00 00 02 00 01  00 00 00 03
             03  00 00 00 00  00 00 00 01  00 00 00 02
             00 00 00 00 00 01 00 00  00 00 00 29");
        assert_eq!(bytes, want);
    }

    #[test]
    fn every_message_round_trips() {
        for msg in samples() {
            let bytes = frame(&msg);
            let len = check_length(bytes[..4].try_into().unwrap()).unwrap();
            assert_eq!(len, bytes.len() - 4);
            assert_eq!(Message::decode(&bytes[4..]), Ok(msg), "{}", msg.name());
        }
    }

    #[test]
    fn the_largest_frame_fits_the_bound() {
        let mut c = config();
        c.members = MemberSet::from_ids(0..16).unwrap();
        let bytes = frame(&Message::Heartbeat {
            from: 1,
            epoch: 1,
            sent_at: 1,
            config: c,
        });
        assert!(bytes.len() - 4 <= MAX_ELECTION_FRAME);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for msg in samples() {
            let bytes = frame(&msg);
            let body = &bytes[4..];
            for cut in 0..body.len() {
                assert!(
                    Message::decode(&body[..cut]).is_err(),
                    "{} cut at {cut}",
                    msg.name()
                );
            }
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
        }
    }

    #[test]
    fn malformed_fields_are_refused() {
        let bytes = frame(&samples()[0]);
        let mut bad = bytes[4..].to_vec();
        bad[0] = 2;
        assert_eq!(Message::decode(&bad), Err(FrameError::Version(2)));
        let mut bad = bytes[4..].to_vec();
        bad[1] = 9;
        assert_eq!(Message::decode(&bad), Err(FrameError::UnknownKind(9)));
        // A member count over the bound, and a repeated member.
        let mut bad = bytes[4..].to_vec();
        bad[34] = 17;
        assert!(matches!(
            Message::decode(&bad),
            Err(FrameError::TooMany(..))
        ));
        let mut bad = bytes[4..].to_vec();
        bad[39..43].copy_from_slice(&0i32.to_be_bytes());
        assert!(Message::decode(&bad).is_err(), "ids 0, 0, 2");
        // A refusal code nobody sends, and an ack flag that is not 0 or 1.
        let mut reply = frame(&samples()[4])[4..].to_vec();
        reply[14] = 7;
        assert!(Message::decode(&reply).is_err());
        let mut ack = frame(&samples()[1])[4..].to_vec();
        let last = ack.len() - 1;
        ack[last] = 2;
        assert!(Message::decode(&ack).is_err());
        assert!(check_length([0, 0, 1, 1]).is_err());
        assert!(check_length([0, 0, 0, 9]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 56) as usize % 80;
            let mut buf: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 7) & 0xff) as u8)
                .collect();
            if buf.len() >= 2 {
                buf[0] = 1;
                buf[1] = (state >> 8) as u8 % 8;
            }
            let _ = Message::decode(&buf);
        }
    }
}

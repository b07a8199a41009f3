//! Property tests of the logic a server runs on a client session's bytes
//! and on a v1 replication stream's frames (issue 5), without sockets:
//! random byte strings and random sequences of frames, cut at random
//! places, must give exactly the actions PROTOCOL.md §2 and
//! `docs/hostile.md` document, and never a panic.

use factory::protocol::session::{Action, ClientSession, Violation, REQUEST_LEN};
use factory::state::{Replica, StateError};
use factory::wire::native::{Body, NativeFrame, NATIVE_TAG};
use factory::wire::{Frame, MapOp, ReplicationRequest, RobotOrder, Tag, CLIENT_TAG, PFA_TAG};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// A failing case is saved here (the CI prints the directory on failure)
/// and replayed first by the next run.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/proptest_session.txt"
);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

/// The documented meaning of one 12-byte request, written out again from
/// the spec rather than calling the code under test.
fn expected(request: &[u8]) -> Action {
    let word = |i: usize| i32::from_be_bytes(request[i..i + 4].try_into().unwrap());
    let head = &request[..8];
    if head == CLIENT_TAG {
        return Action::Close(Violation::HandshakeTag(Tag::Client));
    }
    if head == PFA_TAG {
        return Action::Close(Violation::HandshakeTag(Tag::Pfa));
    }
    if head == NATIVE_TAG {
        return Action::Close(Violation::HandshakeTag(Tag::Native));
    }
    let length = word(0) as u32;
    if (10..=1 << 20).contains(&length)
        && request[4] == 1
        && (1..=9).contains(&request[5])
        && request[6..8] == [0, 0]
    {
        return Action::Close(Violation::NativeFrame {
            kind: request[5],
            length,
        });
    }
    let (customer_id, order_number, kind) = (word(0), word(4), word(8));
    match (customer_id, kind) {
        (-1, _) => Action::End,
        (_, 1) => Action::Write {
            customer_id,
            order_number,
        },
        (_, 2) => Action::Read { customer_id },
        (_, factory::wire::CUSTOM_REQUEST_TYPE) => Action::Custom {
            customer_id,
            order_number,
        },
        _ => Action::Close(Violation::UnknownRequestType(kind)),
    }
}

/// Every action for `bytes` in order, up to the final one.
fn expected_all(bytes: &[u8]) -> Vec<Action> {
    let mut out = Vec::new();
    for request in bytes.chunks_exact(REQUEST_LEN) {
        let action = expected(request);
        out.push(action);
        if matches!(action, Action::End | Action::Close(_)) {
            break;
        }
    }
    out
}

/// Feeds `bytes` to a session in pieces of the given sizes (cycled) and
/// returns every action but `NeedInput`, checking the bookkeeping.
fn run(bytes: &[u8], cuts: &[usize]) -> Vec<Action> {
    let mut session = ClientSession::new();
    let mut actions = Vec::new();
    let mut at = 0;
    let mut sizes = cuts.iter().cycle();
    while at < bytes.len() {
        let end = (at + sizes.next().unwrap()).min(bytes.len());
        let mut chunk = &bytes[at..end];
        at = end;
        // Bounded: each call takes at least one byte or asks for more.
        for _ in 0..=chunk.len() {
            let (used, action) = session.receive(chunk);
            assert!(used <= chunk.len());
            chunk = &chunk[used..];
            if action.is_final() {
                actions.push(action);
                assert_eq!(session.receive(&[0; 3]), (0, action), "final stays final");
                return actions;
            }
            if action == Action::NeedInput {
                assert!(chunk.is_empty(), "asks for more only when all is taken");
                break;
            }
            actions.push(action);
        }
        assert!(session.partial() < REQUEST_LEN);
    }
    assert_eq!(session.partial(), bytes.len() % REQUEST_LEN);
    actions
}

/// One thing a peer may send on a client session.
#[derive(Clone, Debug)]
enum Sent {
    Write(i32, i32),
    Read(i32),
    Unknown(i32, i32, i32),
    End,
    Tag([u8; 8]),
    Native(u64, i32),
    Garbage(Vec<u8>),
}

impl Sent {
    fn bytes(&self) -> Vec<u8> {
        let order = |customer_id, order_number, request_type| {
            RobotOrder {
                customer_id,
                order_number,
                request_type,
            }
            .to_vec()
        };
        match self {
            Sent::Write(c, o) => order(*c, *o, 1),
            Sent::Read(c) => order(*c, 0, 2),
            Sent::Unknown(c, o, t) => order(*c, *o, *t),
            Sent::End => order(-1, 0, 0),
            Sent::Tag(tag) => tag.to_vec(),
            Sent::Native(epoch, commit_index) => {
                let mut out = Vec::new();
                NativeFrame::new(
                    *epoch,
                    Body::Heartbeat {
                        commit_index: *commit_index,
                    },
                )
                .encode(&mut out);
                out
            }
            Sent::Garbage(bytes) => bytes.clone(),
        }
    }
}

/// True unless customer `c` with order `o` is the end marker (-1) or
/// could begin a native frame header (a length of 10 to 2^20, then version
/// 1 in the order number's top byte): a request that the session must
/// serve as it is.
fn plain_customer(c: i32, o: i32) -> bool {
    c != -1 && !((10..=1 << 20).contains(&c) && (o as u32) >> 24 == 1)
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        6 => (any::<i32>(), any::<i32>()).prop_map(|(c, o)| Sent::Write(c, o)),
        6 => any::<i32>().prop_map(Sent::Read),
        1 => (any::<i32>(), any::<i32>(), any::<i32>()).prop_map(|(c, o, t)| Sent::Unknown(c, o, t)),
        1 => Just(Sent::End),
        1 => prop_oneof![Just(CLIENT_TAG), Just(PFA_TAG), Just(NATIVE_TAG)].prop_map(Sent::Tag),
        1 => (0u64..1 << 40, any::<i32>()).prop_map(|(e, c)| Sent::Native(e, c)),
        1 => vec(any::<u8>(), 1..30).prop_map(Sent::Garbage),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_give_the_documented_actions(
        bytes in vec(any::<u8>(), 0..200),
        cuts in vec(1usize..40, 1..8),
    ) {
        prop_assert_eq!(run(&bytes, &cuts), expected_all(&bytes));
    }

    #[test]
    fn random_frame_sequences_give_the_documented_actions(
        frames in vec(sent(), 0..30),
        cuts in vec(1usize..64, 1..8),
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(Sent::bytes).collect();
        let actions = run(&bytes, &cuts);
        prop_assert_eq!(&actions, &expected_all(&bytes));
        // Independently of `expected`: each plain request before the first
        // other frame is served with the very fields it was generated
        // from, in order.
        let served: Vec<Action> = frames
            .iter()
            .map_while(|f| match *f {
                Sent::Write(c, o) if plain_customer(c, o) => Some(Action::Write {
                    customer_id: c,
                    order_number: o,
                }),
                Sent::Read(c) if plain_customer(c, 0) => Some(Action::Read { customer_id: c }),
                _ => None,
            })
            .collect();
        prop_assert!(actions.len() >= served.len());
        prop_assert_eq!(&actions[..served.len()], &served[..]);
    }

    #[test]
    fn every_cut_of_a_request_pair_gives_the_same_actions(
        a in sent(), b in sent(), cut in 0usize..48,
    ) {
        let bytes = [a.bytes(), b.bytes()].concat();
        let cut = cut.min(bytes.len());
        let whole = run(&bytes, &[bytes.len().max(1)]);
        let mut session = ClientSession::new();
        let mut actions = Vec::new();
        'feed: for piece in [&bytes[..cut], &bytes[cut..]] {
            let mut rest = piece;
            for _ in 0..=piece.len() {
                let (used, action) = session.receive(rest);
                rest = &rest[used..];
                match action {
                    Action::NeedInput => break,
                    a if a.is_final() => {
                        actions.push(a);
                        break 'feed;
                    }
                    a => actions.push(a),
                }
            }
        }
        prop_assert_eq!(actions, whole);
    }
}

fn replication(primary: i32, committed: i32, index: i32) -> ReplicationRequest {
    ReplicationRequest {
        primary_id: primary,
        committed_index: committed,
        last_index: index,
        op: MapOp::set(index, committed),
    }
}

/// Indexes near a log's end, and the extremes.
fn index_near(last: i32) -> impl Strategy<Value = i32> {
    prop_oneof![
        8 => (-2i32..=3).prop_map(move |d| last.saturating_add(d)),
        1 => any::<i32>(),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// PROTOCOL.md §4 with the issue-5 rule: a v1 frame is stored only at an
    /// index from 0 to `last_index + 1` with a commit index not past it;
    /// anything else is refused and changes nothing, so the log grows by at
    /// most one entry per frame, whatever the frames say.
    #[test]
    fn v1_frames_never_grow_the_log_by_more_than_one(
        steps in vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..60),
    ) {
        let mut replica = Replica::new(7);
        let mut accepted = 0usize;
        for (i, c, p) in steps {
            let last = replica.last_index();
            // Derive the frame from the current state, so that most frames
            // land near the edge the rule is about.
            let index = match i % 8 {
                0 => i32::MAX,
                1 => -1 - i32::from(i),
                2 => last + 2 + i32::from(i),
                _ => last + 1 - i32::from(i % 3),
            };
            let committed = match c % 4 {
                0 => i32::MAX,
                1 => index,
                _ => index - 1 - i32::from(c % 5),
            };
            let before = (replica.last_index(), replica.committed_index(), replica.primary_id());
            let frame = replication(i32::from(p % 3), committed, index);
            let valid = index >= 0 && i64::from(index) <= i64::from(last) + 1 && committed <= index;
            match replica.on_replicate(&frame).map(|(ack, _)| ack) {
                Ok(ack) => {
                    prop_assert!(valid, "accepted {:?}", frame);
                    accepted += 1;
                    prop_assert_eq!(ack.last_index, index);
                    prop_assert_eq!(replica.last_index(), index);
                    prop_assert!(replica.committed_index() <= index);
                }
                Err(e) => {
                    prop_assert!(!valid, "refused {:?}: {}", frame, e);
                    let known = matches!(
                        e,
                        StateError::NegativeIndex { .. }
                            | StateError::IndexGap { .. }
                            | StateError::CommitBeyondEntry { .. }
                    );
                    prop_assert!(known, "unexpected refusal {}", e);
                    let after = (replica.last_index(), replica.committed_index(), replica.primary_id());
                    prop_assert_eq!(before, after, "a refused frame changes nothing");
                }
            }
            prop_assert!(replica.log().range(0, i32::MAX).len() <= accepted);
        }
    }

    #[test]
    fn v1_frames_with_any_index_are_safe(
        indexes in vec(index_near(0), 1..40),
        committed in vec(any::<i32>(), 1..40),
    ) {
        let mut replica = Replica::new(1);
        for (index, committed) in indexes.into_iter().zip(committed.into_iter().cycle()) {
            let last = replica.last_index();
            let refused = replica.on_replicate(&replication(0, committed, index)).is_err();
            prop_assert!(replica.last_index() <= last + 1);
            if refused {
                prop_assert_eq!(replica.last_index(), last);
            }
        }
    }
}

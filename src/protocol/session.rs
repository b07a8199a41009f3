//! A client session (PROTOCOL.md §2) as a state machine without I/O.
//!
//! [`ClientSession::receive`] takes whatever bytes the socket returned and
//! answers with one [`Action`] at a time: wait for more bytes, place a
//! write, answer a read, end quietly, or close because the input is
//! hostile. The caller (`server::session::v1`) does the I/O and the waiting;
//! replies are built by [`write_reply`] and [`read_reply`], and
//! [`ServerView`] says whether a write is served here or forwarded (reads
//! follow [`crate::replication::next_step`]).
//!
//! Departures from the original, which trusts its clients:
//!
//! - an unknown request type closes the session (the original sends
//!   nothing, and its client waits forever);
//! - a handshake tag or a native replication frame where a request is due
//!   (a peer that dialled the wrong port, or a confused client) closes the
//!   session instead of being served as a request. They are recognised by
//!   bytes no real request carries: a whole 8-byte tag as customer id and
//!   order number, or a native frame header, whose order number would be
//!   exactly `0x010k_0000` (version 1, kind k, a small epoch) with a
//!   customer id between 10 and 2^20.

use std::fmt;

use crate::state::NO_PRIMARY;
use crate::wire::native::{MAX_FRAME_LEN, NATIVE_TAG, NATIVE_VERSION};
use crate::wire::{
    CustomerRecord, Frame, RequestType, RobotInfo, RobotOrder, Tag, CLIENT_TAG,
    CUSTOM_REQUEST_TYPE, HANDSHAKE_LEN, PFA_TAG,
};

/// Size of a client request.
pub const REQUEST_LEN: usize = RobotOrder::SIZE;

/// Size of the reply to a write.
pub const WRITE_REPLY_LEN: usize = RobotInfo::SIZE;

/// Size of the reply to a read.
pub const READ_REPLY_LEN: usize = CustomerRecord::SIZE;

/// Native frame kinds (`wire::native`) that a peer dialling the wrong port
/// sends first: Hello = 1 through Reject = 9. The read-index frames (10,
/// 11) follow a native tag, never a client one, and are left out so that
/// no more v1 requests look like a frame than before.
const NATIVE_KINDS: std::ops::RangeInclusive<u8> = 1..=9;

/// Smallest length a native frame declares (version, kind, epoch).
const NATIVE_MIN_LEN: u32 = 10;

/// Why a session is closed: the request makes no sense on a client session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `request_type` is neither 1 (write), 2 (read) nor a custom order.
    UnknownRequestType(i32),
    /// A handshake tag arrived where a request was due.
    HandshakeTag(Tag),
    /// A native replication frame arrived where a request was due.
    NativeFrame {
        /// The frame's kind byte.
        kind: u8,
        /// Its declared length.
        length: u32,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownRequestType(t) => write!(
                f,
                "unknown request type {t}, expected 1 (write), 2 (read) or {CUSTOM_REQUEST_TYPE:#x} (custom)"
            ),
            Violation::HandshakeTag(tag) => write!(
                f,
                "a {tag:?} handshake tag inside a client session, expected a 12-byte request"
            ),
            Violation::NativeFrame { kind, length } => write!(
                f,
                "a native replication frame (kind {kind}, length {length}) on a client session, expected a 12-byte request"
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// What the session does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Every byte given was taken; read more. [`ClientSession::partial`]
    /// says how many bytes of an unfinished request are held.
    NeedInput,
    /// Place this write (through the admin, or forwarded: see
    /// [`ServerView::write_route`]), then send [`write_reply`].
    Write {
        /// The customer.
        customer_id: i32,
        /// Its new last order.
        order_number: i32,
    },
    /// Send [`read_reply`] with the customer's committed last order, as of
    /// a moment after the read began (the server's rule for that is
    /// [`crate::replication::next_step`]).
    Read {
        /// The customer.
        customer_id: i32,
    },
    /// Hand this custom order to an expert, which does its work and then
    /// places it as a write; send [`custom_reply`] with the outcome.
    Custom {
        /// The customer.
        customer_id: i32,
        /// Its new last order, once the expert is done.
        order_number: i32,
    },
    /// The client ended its session (customer id -1): close, no reply.
    End,
    /// Close the connection and log why, at warn level.
    Close(Violation),
}

impl Action {
    /// True for the actions after which the session takes no more input.
    pub const fn is_final(&self) -> bool {
        matches!(self, Action::End | Action::Close(_))
    }
}

/// The decoding state of one client session.
#[derive(Clone, Debug, Default)]
pub struct ClientSession {
    /// The start of a request cut across reads.
    pending: [u8; REQUEST_LEN],
    /// Bytes of `pending` in use.
    filled: usize,
    /// The final action, once taken: repeated for any later input.
    finished: Option<Action>,
}

impl ClientSession {
    /// A session that just received its `CLIENT` tag.
    pub const fn new() -> Self {
        ClientSession {
            pending: [0; REQUEST_LEN],
            filled: 0,
            finished: None,
        }
    }

    /// Bytes of an unfinished request held (0 between requests).
    pub const fn partial(&self) -> usize {
        self.filled
    }

    /// Takes bytes from `input` up to the end of the next request and
    /// returns how many it took with what to do. Call it again with the
    /// rest of `input` after acting; it returns [`Action::NeedInput`] once
    /// everything was taken. After a final action ([`Action::is_final`]) it
    /// takes nothing and returns that action again.
    pub fn receive(&mut self, input: &[u8]) -> (usize, Action) {
        if let Some(done) = self.finished {
            return (0, done);
        }
        let (used, request) = if self.filled == 0 && input.len() >= REQUEST_LEN {
            // The common case: a whole request in one read, no copy.
            (REQUEST_LEN, &input[..REQUEST_LEN])
        } else {
            let used = input.len().min(REQUEST_LEN - self.filled);
            self.pending[self.filled..self.filled + used].copy_from_slice(&input[..used]);
            self.filled += used;
            if self.filled < REQUEST_LEN {
                return (used, Action::NeedInput);
            }
            self.filled = 0;
            (used, &self.pending[..])
        };
        let action = decide(request);
        if action.is_final() {
            self.finished = Some(action);
        }
        (used, action)
    }
}

/// The action for one whole request (`request.len() == REQUEST_LEN`).
///
/// # Panics
/// If `request` is shorter than [`REQUEST_LEN`].
pub fn decide(request: &[u8]) -> Action {
    if let Some(v) = foreign_frame(request) {
        return Action::Close(v);
    }
    let order = RobotOrder::decode(request);
    if order.ends_session() {
        return Action::End;
    }
    match order.kind() {
        Some(RequestType::Write) => Action::Write {
            customer_id: order.customer_id,
            order_number: order.order_number,
        },
        Some(RequestType::Read) => Action::Read {
            customer_id: order.customer_id,
        },
        Some(RequestType::Custom) => Action::Custom {
            customer_id: order.customer_id,
            order_number: order.order_number,
        },
        None => Action::Close(Violation::UnknownRequestType(order.request_type)),
    }
}

/// A handshake tag or a native frame header where a request is due.
fn foreign_frame(request: &[u8]) -> Option<Violation> {
    let head = &request[..HANDSHAKE_LEN];
    for (bytes, tag) in [
        (CLIENT_TAG, Tag::Client),
        (PFA_TAG, Tag::Pfa),
        (NATIVE_TAG, Tag::Native),
    ] {
        if head == bytes {
            return Some(Violation::HandshakeTag(tag));
        }
    }
    let length = u32::from_be_bytes([request[0], request[1], request[2], request[3]]);
    let header = (NATIVE_MIN_LEN..=MAX_FRAME_LEN as u32).contains(&length)
        && request[4] == NATIVE_VERSION
        && NATIVE_KINDS.contains(&request[5])
        && request[6] == 0
        && request[7] == 0;
    header.then_some(Violation::NativeFrame {
        kind: request[5],
        length,
    })
}

/// The reply to a committed write: the request echoed, then `engineer_id`
/// and admin id 0 (PROTOCOL.md §2).
pub fn write_reply(customer_id: i32, order_number: i32, engineer_id: i32) -> [u8; WRITE_REPLY_LEN] {
    let order = RobotOrder::write(customer_id, order_number);
    let mut out = [0; WRITE_REPLY_LEN];
    RobotInfo::for_order(&order, engineer_id).encode(&mut out);
    out
}

/// How a custom order ended, in its reply's `admin_id` field
/// (docs/protocol.md, "Custom orders").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomStatus {
    /// `0`: an expert did the work and the write is committed.
    Done,
    /// `-1`: every expert is busy and the queue is full; nothing was
    /// written, try again later.
    Busy,
    /// `-2`: this server runs no experts (no `--experts`); nothing was
    /// written.
    NoExperts,
}

impl CustomStatus {
    /// The value in the reply's `admin_id` field.
    pub const fn code(self) -> i32 {
        match self {
            CustomStatus::Done => 0,
            CustomStatus::Busy => -1,
            CustomStatus::NoExperts => -2,
        }
    }

    /// The status a reply's `admin_id` carries, `None` for other values.
    pub const fn from_code(code: i32) -> Option<CustomStatus> {
        match code {
            0 => Some(CustomStatus::Done),
            -1 => Some(CustomStatus::Busy),
            -2 => Some(CustomStatus::NoExperts),
            _ => None,
        }
    }
}

/// The reply to a custom order: the request echoed (its request type the
/// custom one), `engineer_id`, and the outcome in `admin_id`.
pub fn custom_reply(
    customer_id: i32,
    order_number: i32,
    engineer_id: i32,
    status: CustomStatus,
) -> [u8; WRITE_REPLY_LEN] {
    let order = RobotOrder::custom(customer_id, order_number);
    let mut out = [0; WRITE_REPLY_LEN];
    RobotInfo {
        admin_id: status.code(),
        ..RobotInfo::for_order(&order, engineer_id)
    }
    .encode(&mut out);
    out
}

/// The reply to a read: the customer and its last order (-1: none).
pub fn read_reply(customer_id: i32, last_order: i32) -> [u8; READ_REPLY_LEN] {
    let mut out = [0; READ_REPLY_LEN];
    CustomerRecord {
        customer_id,
        last_order,
    }
    .encode(&mut out);
    out
}

/// Where a write is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here: through our admin (which may make us primary).
    Local,
    /// On the primary with this id, over a client session to it.
    Forward(i32),
}

/// What a session needs to know of the server to route a write, copied
/// out under the replica's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerView {
    /// This server's id.
    pub factory_id: i32,
    /// The primary it follows, itself, or -1.
    pub primary_id: i32,
    /// True while it is known to hold every committed entry.
    pub trusted: bool,
}

impl ServerView {
    fn live_other_primary(&self) -> Option<i32> {
        (self.primary_id != NO_PRIMARY && self.primary_id != self.factory_id)
            .then_some(self.primary_id)
    }

    /// A write goes to a live primary other than us (G2: a backup never
    /// applies a write first); otherwise to our admin.
    pub fn write_route(&self) -> Route {
        self.live_other_primary()
            .map_or(Route::Local, Route::Forward)
    }
}

#[cfg(test)]
mod tests {
    //! Each test names the rule of PROTOCOL.md §2 (or the departure above)
    //! it checks.
    use super::*;

    fn request(customer: i32, order: i32, kind: i32) -> Vec<u8> {
        RobotOrder {
            customer_id: customer,
            order_number: order,
            request_type: kind,
        }
        .to_vec()
    }

    #[test]
    fn s2_write_read_and_end() {
        let mut s = ClientSession::new();
        assert_eq!(
            s.receive(&request(7, 42, 1)),
            (
                12,
                Action::Write {
                    customer_id: 7,
                    order_number: 42
                }
            )
        );
        assert_eq!(
            s.receive(&request(7, 0, 2)),
            (12, Action::Read { customer_id: 7 })
        );
        assert_eq!(s.receive(&request(-1, 0, 0)), (12, Action::End));
        assert_eq!(s.receive(&request(7, 0, 2)), (0, Action::End), "final");
    }

    #[test]
    fn s2_requests_cut_anywhere_are_reassembled() {
        let mut bytes = request(7, 42, 1);
        bytes.extend(request(8, 0, 2));
        for cut in 0..=bytes.len() {
            let mut s = ClientSession::new();
            let mut actions = Vec::new();
            for chunk in [&bytes[..cut], &bytes[cut..]] {
                let mut rest = chunk;
                loop {
                    let (used, action) = s.receive(rest);
                    rest = &rest[used..];
                    if action == Action::NeedInput {
                        break;
                    }
                    actions.push(action);
                }
                assert!(rest.is_empty());
            }
            assert_eq!(
                actions,
                [
                    Action::Write {
                        customer_id: 7,
                        order_number: 42
                    },
                    Action::Read { customer_id: 8 }
                ],
                "cut at {cut}"
            );
            assert_eq!(s.partial(), 0);
        }
    }

    #[test]
    fn unknown_request_types_close() {
        for kind in [0, 3, -1, i32::MAX, i32::MIN] {
            let (_, action) = ClientSession::new().receive(&request(7, 42, kind));
            assert_eq!(action, Action::Close(Violation::UnknownRequestType(kind)));
        }
    }

    #[test]
    fn custom_orders_are_handed_on_and_answered_with_a_status() {
        assert_eq!(
            decide(&request(7, 42, CUSTOM_REQUEST_TYPE)),
            Action::Custom {
                customer_id: 7,
                order_number: 42
            }
        );
        let hex = crate::wire::testing::hex;
        assert_eq!(
            custom_reply(7, 42, 3, CustomStatus::Busy).to_vec(),
            hex("00 00 00 07 00 00 00 2a 43 55 53 54 00 00 00 03 ff ff ff ff")
        );
        for status in [
            CustomStatus::Done,
            CustomStatus::Busy,
            CustomStatus::NoExperts,
        ] {
            assert_eq!(CustomStatus::from_code(status.code()), Some(status));
        }
        assert_eq!(CustomStatus::from_code(1), None);
    }

    #[test]
    fn foreign_frames_close() {
        let mut tagged = CLIENT_TAG.to_vec();
        tagged.extend(request(7, 1, 1));
        let (_, action) = ClientSession::new().receive(&tagged);
        assert_eq!(action, Action::Close(Violation::HandshakeTag(Tag::Client)));
        let mut tagged = PFA_TAG.to_vec();
        tagged.extend([0; 4]);
        assert_eq!(
            decide(&tagged),
            Action::Close(Violation::HandshakeTag(Tag::Pfa))
        );
        // A native hello from epoch 1 << 16: its request type field would
        // read as 1, a write.
        let mut hello = Vec::new();
        crate::wire::native::NativeFrame::new(
            1 << 16,
            crate::wire::native::Body::Hello {
                primary_id: 0,
                commit_index: -1,
            },
        )
        .encode(&mut hello);
        assert_eq!(RobotOrder::decode(&hello).request_type, 1);
        assert!(matches!(
            decide(&hello),
            Action::Close(Violation::NativeFrame { kind: 1, .. })
        ));
    }

    #[test]
    fn ordinary_requests_near_the_foreign_patterns_are_served() {
        // Order numbers that look like a native header but are not one.
        for (customer, order) in [(5, 0x0101_0000), (20, 0x0101_0001), (20, 0x010a_0000)] {
            assert!(matches!(
                decide(&request(customer, order, 1)),
                Action::Write { .. }
            ));
        }
    }

    #[test]
    fn replies_are_the_golden_bytes() {
        let hex = crate::wire::testing::hex;
        assert_eq!(
            write_reply(7, 42, 3).to_vec(),
            hex("00 00 00 07 00 00 00 2a 00 00 00 01 00 00 00 03 00 00 00 00")
        );
        assert_eq!(read_reply(7, -1).to_vec(), hex("00 00 00 07 ff ff ff ff"));
    }

    #[test]
    fn routes() {
        let view = |primary_id, trusted| ServerView {
            factory_id: 1,
            primary_id,
            trusted,
        };
        assert_eq!(view(NO_PRIMARY, false).write_route(), Route::Local);
        assert_eq!(view(1, false).write_route(), Route::Local);
        assert_eq!(view(0, true).write_route(), Route::Forward(0));
    }
}

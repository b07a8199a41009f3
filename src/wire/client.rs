//! Client session frames: the 12-byte request and its two replies.
//!
//! All fields are i32 big-endian.

use byteorder::{BigEndian, ByteOrder};

use super::Frame;

/// The request type of a custom order: ASCII `CUST`, a value no stray
/// frame on a client port (a replication frame's entry index, a tag) is
/// likely to carry, so that misdirected bytes still close the session.
pub const CUSTOM_REQUEST_TYPE: i32 = 0x4355_5354;

/// What a client request asks for, from its `request_type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// `1`: record `customer_id → order_number` through the replicated log.
    Write,
    /// `2`: return the customer's committed last order.
    Read,
    /// `0x4355_5354` (ASCII `CUST`): a custom order, done by one of the
    /// server's experts before it is written like a write (docs/protocol.md,
    /// "Custom orders"). Original clients never send it.
    Custom,
}

impl RequestType {
    /// The value on the wire.
    pub const fn code(self) -> i32 {
        match self {
            RequestType::Write => 1,
            RequestType::Read => 2,
            RequestType::Custom => CUSTOM_REQUEST_TYPE,
        }
    }

    /// The request type for a wire value, `None` for values the protocol
    /// does not define.
    pub const fn from_code(code: i32) -> Option<RequestType> {
        match code {
            1 => Some(RequestType::Write),
            2 => Some(RequestType::Read),
            CUSTOM_REQUEST_TYPE => Some(RequestType::Custom),
            _ => None,
        }
    }
}

/// A client request (the original's `RobotOrder`).
///
/// ```text
/// offset  field          type  order
/// 0       customer_id    i32   BE    (-1 ends the session)
/// 4       order_number   i32   BE    (ignored by reads)
/// 8       request_type   i32   BE    (1 write, 2 read)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RobotOrder {
    pub customer_id: i32,
    pub order_number: i32,
    pub request_type: i32,
}

impl RobotOrder {
    /// The `customer_id` that asks the server to end the session.
    pub const END_OF_SESSION: i32 = -1;

    /// A write of `order_number` for `customer_id`.
    pub const fn write(customer_id: i32, order_number: i32) -> Self {
        RobotOrder {
            customer_id,
            order_number,
            request_type: RequestType::Write.code(),
        }
    }

    /// A read of `customer_id`'s record. The original client sends -1 as the
    /// (ignored) order number in scans; we do the same everywhere.
    pub const fn read(customer_id: i32) -> Self {
        RobotOrder {
            customer_id,
            order_number: -1,
            request_type: RequestType::Read.code(),
        }
    }

    /// A custom order of `order_number` for `customer_id`.
    pub const fn custom(customer_id: i32, order_number: i32) -> Self {
        RobotOrder {
            customer_id,
            order_number,
            request_type: CUSTOM_REQUEST_TYPE,
        }
    }

    /// The frame that ends a session; the server sends no reply to it.
    pub const fn end_of_session() -> Self {
        RobotOrder {
            customer_id: Self::END_OF_SESSION,
            order_number: -1,
            request_type: -1,
        }
    }

    /// True when this frame ends the session.
    pub const fn ends_session(&self) -> bool {
        self.customer_id == Self::END_OF_SESSION
    }

    /// The request type, `None` when the wire value is undefined.
    pub const fn kind(&self) -> Option<RequestType> {
        RequestType::from_code(self.request_type)
    }
}

impl Frame for RobotOrder {
    const SIZE: usize = 12;

    fn encode(&self, out: &mut [u8]) {
        BigEndian::write_i32(&mut out[0..4], self.customer_id);
        BigEndian::write_i32(&mut out[4..8], self.order_number);
        BigEndian::write_i32(&mut out[8..12], self.request_type);
    }

    fn decode(buf: &[u8]) -> Self {
        RobotOrder {
            customer_id: BigEndian::read_i32(&buf[0..4]),
            order_number: BigEndian::read_i32(&buf[4..8]),
            request_type: BigEndian::read_i32(&buf[8..12]),
        }
    }
}

/// The reply to a write, sent once it is committed (the original's `RobotInfo`).
///
/// ```text
/// offset  field          type  order
/// 0       customer_id    i32   BE    (echoed)
/// 4       order_number   i32   BE    (echoed)
/// 8       request_type   i32   BE    (echoed)
/// 12      engineer_id    i32   BE    (the serving connection's number)
/// 16      admin_id       i32   BE    (always 0)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RobotInfo {
    pub customer_id: i32,
    pub order_number: i32,
    pub request_type: i32,
    pub engineer_id: i32,
    pub admin_id: i32,
}

impl RobotInfo {
    /// The reply to `order`, served by connection `engineer_id`.
    pub const fn for_order(order: &RobotOrder, engineer_id: i32) -> Self {
        RobotInfo {
            customer_id: order.customer_id,
            order_number: order.order_number,
            request_type: order.request_type,
            engineer_id,
            admin_id: 0,
        }
    }

    /// True when the first three fields echo `order`, as a reply must.
    pub const fn answers(&self, order: &RobotOrder) -> bool {
        self.customer_id == order.customer_id
            && self.order_number == order.order_number
            && self.request_type == order.request_type
    }
}

impl Frame for RobotInfo {
    const SIZE: usize = 20;

    fn encode(&self, out: &mut [u8]) {
        BigEndian::write_i32(&mut out[0..4], self.customer_id);
        BigEndian::write_i32(&mut out[4..8], self.order_number);
        BigEndian::write_i32(&mut out[8..12], self.request_type);
        BigEndian::write_i32(&mut out[12..16], self.engineer_id);
        BigEndian::write_i32(&mut out[16..20], self.admin_id);
    }

    fn decode(buf: &[u8]) -> Self {
        RobotInfo {
            customer_id: BigEndian::read_i32(&buf[0..4]),
            order_number: BigEndian::read_i32(&buf[4..8]),
            request_type: BigEndian::read_i32(&buf[8..12]),
            engineer_id: BigEndian::read_i32(&buf[12..16]),
            admin_id: BigEndian::read_i32(&buf[16..20]),
        }
    }
}

/// The reply to a read (the original's `CustomerRecord`).
///
/// ```text
/// offset  field          type  order
/// 0       customer_id    i32   BE
/// 4       last_order     i32   BE    (-1: no committed record)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerRecord {
    pub customer_id: i32,
    pub last_order: i32,
}

impl CustomerRecord {
    /// `last_order` of a customer with no committed record.
    pub const NO_ORDER: i32 = -1;
}

impl Frame for CustomerRecord {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        BigEndian::write_i32(&mut out[0..4], self.customer_id);
        BigEndian::write_i32(&mut out[4..8], self.last_order);
    }

    fn decode(buf: &[u8]) -> Self {
        CustomerRecord {
            customer_id: BigEndian::read_i32(&buf[0..4]),
            last_order: BigEndian::read_i32(&buf[4..8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{hex, EDGE_VALUES};

    #[test]
    fn golden_write_request() {
        let order = RobotOrder::write(7, 42);
        assert_eq!(order.to_vec(), hex("00 00 00 07 00 00 00 2a 00 00 00 01"));
        assert_eq!(RobotOrder::decode(&order.to_vec()), order);
    }

    #[test]
    fn golden_write_reply() {
        let reply = RobotInfo::for_order(&RobotOrder::write(7, 42), 3);
        let bytes = hex("00 00 00 07 00 00 00 2a 00 00 00 01 00 00 00 03 00 00 00 00");
        assert_eq!(reply.to_vec(), bytes);
        assert_eq!(RobotInfo::decode(&bytes), reply);
    }

    #[test]
    fn golden_read_reply_for_unknown_customer() {
        let rec = CustomerRecord {
            customer_id: 7,
            last_order: CustomerRecord::NO_ORDER,
        };
        let bytes = hex("00 00 00 07 ff ff ff ff");
        assert_eq!(rec.to_vec(), bytes);
        assert_eq!(CustomerRecord::decode(&bytes), rec);
    }

    #[test]
    fn read_and_end_of_session_requests() {
        assert_eq!(
            RobotOrder::read(7).to_vec(),
            hex("00 00 00 07 ff ff ff ff 00 00 00 02")
        );
        let end = RobotOrder::decode(&hex("ff ff ff ff 00 00 00 00 00 00 00 00"));
        assert!(end.ends_session());
        assert!(RobotOrder::end_of_session().ends_session());
    }

    #[test]
    fn fields_are_big_endian() {
        let order = RobotOrder {
            customer_id: 0x0102_0304,
            order_number: 0x0506_0708,
            request_type: 0x090a_0b0c,
        };
        assert_eq!(order.to_vec(), (1..=12).collect::<Vec<u8>>());
    }

    #[test]
    fn round_trips_over_edge_values() {
        for &a in &EDGE_VALUES {
            for &b in &EDGE_VALUES {
                let order = RobotOrder {
                    customer_id: a,
                    order_number: b,
                    request_type: a ^ b,
                };
                assert_eq!(RobotOrder::decode(&order.to_vec()), order);
                let info = RobotInfo {
                    customer_id: a,
                    order_number: b,
                    request_type: b,
                    engineer_id: a,
                    admin_id: b.wrapping_neg(),
                };
                assert_eq!(RobotInfo::decode(&info.to_vec()), info);
                let rec = CustomerRecord {
                    customer_id: a,
                    last_order: b,
                };
                assert_eq!(CustomerRecord::decode(&rec.to_vec()), rec);
            }
        }
    }

    #[test]
    fn request_types() {
        assert_eq!(RequestType::from_code(1), Some(RequestType::Write));
        assert_eq!(RequestType::from_code(2), Some(RequestType::Read));
        for code in [0, 3, -1, i32::MIN, i32::MAX] {
            assert_eq!(RequestType::from_code(code), None);
        }
        assert_eq!(RobotOrder::write(1, 2).kind(), Some(RequestType::Write));
    }

    #[test]
    fn reply_must_echo_the_request() {
        let order = RobotOrder::write(5, 6);
        let mut reply = RobotInfo::for_order(&order, 9);
        assert!(reply.answers(&order));
        reply.order_number = 7;
        assert!(!reply.answers(&order));
    }
}

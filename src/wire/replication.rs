//! v1 replication frames: the primary's 24-byte request and the backup's ack.
//!
//! The three op fields are little-endian: the original copied its in-memory
//! `MapOp` struct onto the socket on x86-64. We write them little-endian
//! explicitly, never "native", so a big-endian host still interoperates.

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use super::Frame;

/// The opcode that sets `arg1 → arg2`; every other opcode is a no-op.
pub const OPCODE_SET: i32 = 1;

/// One state-machine operation, as stored in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOp {
    pub opcode: i32,
    /// The customer id for [`OPCODE_SET`].
    pub arg1: i32,
    /// The order number for [`OPCODE_SET`].
    pub arg2: i32,
}

impl MapOp {
    /// "Customer `customer_id`'s last order is `order_number`."
    pub const fn set(customer_id: i32, order_number: i32) -> Self {
        MapOp {
            opcode: OPCODE_SET,
            arg1: customer_id,
            arg2: order_number,
        }
    }

    /// The `(customer_id, order_number)` this op records, `None` for no-ops.
    pub const fn as_set(&self) -> Option<(i32, i32)> {
        if self.opcode == OPCODE_SET {
            Some((self.arg1, self.arg2))
        } else {
            None
        }
    }
}

/// One log entry sent by the primary to a backup.
///
/// ```text
/// offset  field            type  order
/// 0       primary_id       i32   BE
/// 4       committed_index  i32   BE   (commit point before this entry)
/// 8       last_index       i32   BE   (this entry's index)
/// 12      op.opcode        i32   LE
/// 16      op.arg1          i32   LE
/// 20      op.arg2          i32   LE
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationRequest {
    pub primary_id: i32,
    pub committed_index: i32,
    pub last_index: i32,
    pub op: MapOp,
}

impl Frame for ReplicationRequest {
    const SIZE: usize = 24;

    fn encode(&self, out: &mut [u8]) {
        BigEndian::write_i32(&mut out[0..4], self.primary_id);
        BigEndian::write_i32(&mut out[4..8], self.committed_index);
        BigEndian::write_i32(&mut out[8..12], self.last_index);
        LittleEndian::write_i32(&mut out[12..16], self.op.opcode);
        LittleEndian::write_i32(&mut out[16..20], self.op.arg1);
        LittleEndian::write_i32(&mut out[20..24], self.op.arg2);
    }

    fn decode(buf: &[u8]) -> Self {
        ReplicationRequest {
            primary_id: BigEndian::read_i32(&buf[0..4]),
            committed_index: BigEndian::read_i32(&buf[4..8]),
            last_index: BigEndian::read_i32(&buf[8..12]),
            op: MapOp {
                opcode: LittleEndian::read_i32(&buf[12..16]),
                arg1: LittleEndian::read_i32(&buf[16..20]),
                arg2: LittleEndian::read_i32(&buf[20..24]),
            },
        }
    }
}

/// A backup's acknowledgement of the entry at `last_index`.
///
/// ```text
/// offset  field        type  order
/// 0       replica_id   i32   BE
/// 4       last_index   i32   BE
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationAck {
    pub replica_id: i32,
    pub last_index: i32,
}

impl Frame for ReplicationAck {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        BigEndian::write_i32(&mut out[0..4], self.replica_id);
        BigEndian::write_i32(&mut out[4..8], self.last_index);
    }

    fn decode(buf: &[u8]) -> Self {
        ReplicationAck {
            replica_id: BigEndian::read_i32(&buf[0..4]),
            last_index: BigEndian::read_i32(&buf[4..8]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{hex, EDGE_VALUES};

    #[test]
    fn golden_replication_request() {
        let req = ReplicationRequest {
            primary_id: 0,
            committed_index: 4,
            last_index: 5,
            op: MapOp::set(7, 42),
        };
        let bytes = hex("00 00 00 00 00 00 00 04 00 00 00 05 01 00 00 00 07 00 00 00 2a 00 00 00");
        assert_eq!(req.to_vec(), bytes);
        assert_eq!(ReplicationRequest::decode(&bytes), req);
    }

    #[test]
    fn golden_ack() {
        let ack = ReplicationAck {
            replica_id: 2,
            last_index: 5,
        };
        let bytes = hex("00 00 00 02 00 00 00 05");
        assert_eq!(ack.to_vec(), bytes);
        assert_eq!(ReplicationAck::decode(&bytes), ack);
    }

    #[test]
    fn op_fields_are_little_endian_and_header_big_endian() {
        let req = ReplicationRequest {
            primary_id: 0x0102_0304,
            committed_index: 0x0506_0708,
            last_index: 0x090a_0b0c,
            op: MapOp {
                opcode: 0x0d0e_0f10,
                arg1: 0x1112_1314,
                arg2: 0x1516_1718,
            },
        };
        let bytes = req.to_vec();
        assert_eq!(&bytes[0..12], &(1..=12).collect::<Vec<u8>>()[..]);
        assert_eq!(&bytes[12..16], &[0x10, 0x0f, 0x0e, 0x0d]);
        assert_eq!(&bytes[16..20], &[0x14, 0x13, 0x12, 0x11]);
        assert_eq!(&bytes[20..24], &[0x18, 0x17, 0x16, 0x15]);
    }

    #[test]
    fn negative_op_arguments_little_endian() {
        let req = ReplicationRequest {
            primary_id: 1,
            committed_index: -1,
            last_index: 0,
            op: MapOp::set(-2, i32::MIN),
        };
        assert_eq!(
            req.to_vec(),
            hex("00 00 00 01 ff ff ff ff 00 00 00 00 01 00 00 00 fe ff ff ff 00 00 00 80")
        );
    }

    #[test]
    fn round_trips_over_edge_values() {
        for &a in &EDGE_VALUES {
            for &b in &EDGE_VALUES {
                let req = ReplicationRequest {
                    primary_id: a,
                    committed_index: b,
                    last_index: a.wrapping_add(b),
                    op: MapOp {
                        opcode: b,
                        arg1: a,
                        arg2: b,
                    },
                };
                assert_eq!(ReplicationRequest::decode(&req.to_vec()), req);
                let ack = ReplicationAck {
                    replica_id: a,
                    last_index: b,
                };
                assert_eq!(ReplicationAck::decode(&ack.to_vec()), ack);
            }
        }
    }

    #[test]
    fn only_opcode_one_sets() {
        assert_eq!(MapOp::set(3, 4).as_set(), Some((3, 4)));
        assert_eq!(MapOp::default().as_set(), None);
        let other = MapOp {
            opcode: 2,
            arg1: 3,
            arg2: 4,
        };
        assert_eq!(other.as_set(), None);
    }
}

//! Wire protocol v1: the handshake tags and fixed-size frames of the original
//! robot factory, as plain values with `encode`/`decode` and no I/O.
//!
//! Everything here is byte-for-byte what the original C++ programs put on a
//! socket (see `docs/protocol.md`). Sockets live in `server` and `client`;
//! they read exactly [`Frame::SIZE`] bytes and hand them to [`Frame::decode`].
//! Every frame has a fixed size, so decoding cannot fail: any 12 bytes are a
//! request, any 24 bytes a replication frame. Whether the *values* make sense
//! is for the layer above to judge.

mod client;
mod cursor;
pub mod election;
mod entry;
pub mod kv;
#[cfg(test)]
mod kv_tests;
pub mod native;
#[cfg(test)]
mod native_tests;
pub mod observe;
mod replication;
pub mod status;
mod tag;

pub use client::{CustomerRecord, RequestType, RobotInfo, RobotOrder, CUSTOM_REQUEST_TYPE};
pub use entry::{
    Entry, EntryError, Epoch, MemberSet, Op, MAX_ENTRY_LEN, MAX_MEMBERS, MAX_VALUE_LEN,
};
pub use replication::{MapOp, ReplicationAck, ReplicationRequest, OPCODE_SET};
pub use tag::{Tag, CLIENT_TAG, HANDSHAKE_LEN, PFA_TAG};

/// The largest v1 frame, so callers can read any frame into one stack buffer.
pub const MAX_FRAME_SIZE: usize = ReplicationRequest::SIZE;

/// A fixed-size v1 frame.
pub trait Frame: Sized {
    /// Exact encoded size in bytes.
    const SIZE: usize;

    /// Writes the frame into `out[..Self::SIZE]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`Self::SIZE`].
    fn encode(&self, out: &mut [u8]);

    /// Reads the frame from `buf[..Self::SIZE]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`Self::SIZE`].
    fn decode(buf: &[u8]) -> Self;

    /// Encodes into a new vector; convenient in tests and cold paths.
    fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; Self::SIZE];
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
pub(crate) mod testing {
    /// Parses "00 0a ff" style hex, as written in the protocol document.
    pub fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("test hex"))
            .collect()
    }

    /// Values that exercise sign and byte-order handling.
    pub const EDGE_VALUES: [i32; 9] = [
        0,
        1,
        -1,
        42,
        -42,
        0x0102_0304,
        i32::MIN,
        i32::MAX,
        i32::MIN + 1,
    ];
}

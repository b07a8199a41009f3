//! Log entries as the native replication protocol and the durable log carry
//! them: an op tagged with the epoch of the primary that appended it.
//!
//! ```text
//! offset  field         type   order
//! 0       epoch         u64    BE
//! 8       kind          u8           (0 no-op, 1 set, 2 in-sync set, 3 string write)
//! 9       payload       ...          set: customer_id i32 BE, order i32 BE
//!                                    in-sync: count u8, then count × id i32 BE
//!                                    string write: op u8 (v2 op code: 2 put,
//!                                      3 create, 4 update, 5 delete, 6 cas),
//!                                      key u16 BE length + bytes,
//!                                      cas only: expected version u64 BE,
//!                                      all but delete: value u32 BE length + bytes
//! ```
//!
//! v1 peers see a set as `MapOp` opcode 1 and anything else as a no-op
//! (opcode 0), which keeps every log index aligned with theirs. A string
//! write reaching an original backup as a no-op is safe: the original has
//! no string store and no client of it can read one, so the no-op holds
//! the entry's log index and nothing it serves differs from a v2 server's
//! customer records.
//!
//! A string write's key and value sit in one shared record (the one the
//! string store keeps once it is applied), so cloning an entry (the log
//! hands out copies to every stream) never copies a value, and customer
//! sets stay allocation-free.

use byteorder::{BigEndian, ByteOrder};

use super::kv::{Version, KEY_CEILING};
use super::MapOp;
use crate::state::kv::{KvWrite, WriteKind};

/// The longest value a string write in the log may carry. Every bound of
/// the native stream and the durable log is derived from it, so a server's
/// `--max-value` may not exceed it.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// The longest encoded entry: a compare-and-set of the largest key and
/// value a log entry may carry.
pub const MAX_ENTRY_LEN: usize = 9 + 1 + 2 + KEY_CEILING + 8 + 4 + MAX_VALUE_LEN;

/// A primary's epoch (term). It orders primaries: `(counter << 16) | id`,
/// so two servers never pick the same one. Epoch 0 is "no epoch": entries
/// received from a v1 primary carry it.
pub type Epoch = u64;

/// The most servers an in-sync set can name.
pub const MAX_MEMBERS: usize = 16;

/// A small set of factory ids (the in-sync set), kept sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberSet {
    ids: [i32; MAX_MEMBERS],
    len: u8,
}

impl MemberSet {
    /// The empty set.
    pub const fn new() -> Self {
        MemberSet {
            ids: [0; MAX_MEMBERS],
            len: 0,
        }
    }

    /// A set of the given ids; `None` if there are more than [`MAX_MEMBERS`]
    /// distinct ones.
    pub fn from_ids(ids: impl IntoIterator<Item = i32>) -> Option<Self> {
        let mut set = MemberSet::new();
        for id in ids {
            if !set.insert(id) {
                return None;
            }
        }
        Some(set)
    }

    /// The ids, ascending.
    pub fn ids(&self) -> &[i32] {
        &self.ids[..self.len as usize]
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True with no members.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `id` is a member.
    pub fn contains(&self, id: i32) -> bool {
        self.ids().binary_search(&id).is_ok()
    }

    /// Adds `id`; false only when the set is full and `id` is new.
    pub fn insert(&mut self, id: i32) -> bool {
        match self.ids().binary_search(&id) {
            Ok(_) => true,
            Err(_) if self.len() == MAX_MEMBERS => false,
            Err(at) => {
                let len = self.len();
                self.ids.copy_within(at..len, at + 1);
                self.ids[at] = id;
                self.len += 1;
                true
            }
        }
    }

    /// Removes `id` if present.
    pub fn remove(&mut self, id: i32) {
        if let Ok(at) = self.ids().binary_search(&id) {
            let len = self.len();
            self.ids.copy_within(at + 1..len, at);
            self.len -= 1;
            self.ids[self.len()] = 0;
        }
    }
}

/// What an entry does when applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Nothing (a v1 op other than "set", or a filler).
    Noop,
    /// `customer_id`'s last order becomes `order_number`.
    Set { customer_id: i32, order_number: i32 },
    /// The in-sync set becomes these servers.
    InSync(Box<MemberSet>),
    /// A protocol v2 write to the string store (a clone shares its record).
    Kv(KvWrite),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Epoch of the primary that appended it.
    pub epoch: Epoch,
    /// What it does.
    pub op: Op,
}

/// Why bytes could not be decoded as an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The buffer ends before the entry does.
    Short,
    /// The kind byte names no entry kind.
    UnknownKind(u8),
    /// An in-sync set claims more than [`MAX_MEMBERS`] members.
    TooManyMembers(u8),
    /// A string write names no write op.
    UnknownKvOp(u8),
    /// A string write's value is over [`MAX_VALUE_LEN`].
    ValueTooLong(u32),
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::Short => write!(f, "entry cut short"),
            EntryError::UnknownKind(k) => write!(f, "unknown entry kind {k}"),
            EntryError::TooManyMembers(n) => {
                write!(f, "in-sync set of {n} members (at most {MAX_MEMBERS})")
            }
            EntryError::UnknownKvOp(op) => write!(f, "unknown string write op {op}"),
            EntryError::ValueTooLong(n) => {
                write!(f, "string value of {n} bytes (at most {MAX_VALUE_LEN})")
            }
        }
    }
}

impl std::error::Error for EntryError {}

const KIND_NOOP: u8 = 0;
const KIND_SET: u8 = 1;
const KIND_IN_SYNC: u8 = 2;
const KIND_KV: u8 = 3;

// The v2 client protocol's op codes, reused for string writes.
const KV_PUT: u8 = 2;
const KV_CREATE: u8 = 3;
const KV_UPDATE: u8 = 4;
const KV_DELETE: u8 = 5;
const KV_CAS: u8 = 6;

impl Entry {
    /// A "set" entry.
    pub const fn set(epoch: Epoch, customer_id: i32, order_number: i32) -> Self {
        Entry {
            epoch,
            op: Op::Set {
                customer_id,
                order_number,
            },
        }
    }

    /// A string write entry.
    pub fn kv(epoch: Epoch, write: KvWrite) -> Self {
        Entry {
            epoch,
            op: Op::Kv(write),
        }
    }

    /// The entry a v1 frame's op becomes (v1 carries no epoch).
    pub fn from_map_op(epoch: Epoch, op: &MapOp) -> Self {
        let op = match op.as_set() {
            Some((customer_id, order_number)) => Op::Set {
                customer_id,
                order_number,
            },
            None => Op::Noop,
        };
        Entry { epoch, op }
    }

    /// The op a v1 peer is sent: sets as opcode 1, everything else opcode 0.
    pub fn to_map_op(&self) -> MapOp {
        match self.op {
            Op::Set {
                customer_id,
                order_number,
            } => MapOp::set(customer_id, order_number),
            _ => MapOp::default(),
        }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        9 + match &self.op {
            Op::Noop => 0,
            Op::Set { .. } => 8,
            Op::InSync(set) => 1 + 4 * set.len(),
            Op::Kv(write) => kv_len(write),
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut head = [0u8; 8];
        BigEndian::write_u64(&mut head, self.epoch);
        out.extend_from_slice(&head);
        match &self.op {
            Op::Noop => out.push(KIND_NOOP),
            Op::Set {
                customer_id,
                order_number,
            } => {
                out.push(KIND_SET);
                push_i32(out, *customer_id);
                push_i32(out, *order_number);
            }
            Op::Kv(write) => encode_kv(write, out),
            Op::InSync(set) => {
                out.push(KIND_IN_SYNC);
                out.push(set.len() as u8);
                for &id in set.ids() {
                    push_i32(out, id);
                }
            }
        }
    }

    /// Decodes one entry from the start of `buf`; returns it and its length.
    ///
    /// # Errors
    /// [`EntryError`] for a short buffer, an unknown kind or an oversized set.
    pub fn decode(buf: &[u8]) -> Result<(Entry, usize), EntryError> {
        let head = buf.get(..9).ok_or(EntryError::Short)?;
        let epoch = BigEndian::read_u64(&head[..8]);
        let (op, len) = match head[8] {
            KIND_NOOP => (Op::Noop, 9),
            KIND_SET => {
                let body = buf.get(9..17).ok_or(EntryError::Short)?;
                let op = Op::Set {
                    customer_id: BigEndian::read_i32(&body[..4]),
                    order_number: BigEndian::read_i32(&body[4..]),
                };
                (op, 17)
            }
            KIND_IN_SYNC => decode_members(buf)?,
            KIND_KV => decode_kv(&buf[9..])?,
            kind => return Err(EntryError::UnknownKind(kind)),
        };
        Ok((Entry { epoch, op }, len))
    }
}

fn decode_members(buf: &[u8]) -> Result<(Op, usize), EntryError> {
    let count = *buf.get(9).ok_or(EntryError::Short)?;
    if count as usize > MAX_MEMBERS {
        return Err(EntryError::TooManyMembers(count));
    }
    let end = 10 + 4 * count as usize;
    let body = buf.get(10..end).ok_or(EntryError::Short)?;
    let ids = body.chunks_exact(4).map(BigEndian::read_i32);
    // Duplicates collapse; at most MAX_MEMBERS ids, so this cannot overflow.
    let set = MemberSet::from_ids(ids).ok_or(EntryError::TooManyMembers(count))?;
    Ok((Op::InSync(Box::new(set)), end))
}

/// Encoded size of a string write after the entry's kind byte.
fn kv_len(write: &KvWrite) -> usize {
    let value = match write.kind() {
        WriteKind::Delete => 0,
        WriteKind::Cas { .. } => 8 + 4 + write.value().len(),
        WriteKind::Put | WriteKind::Create | WriteKind::Update => 4 + write.value().len(),
    };
    1 + 2 + write.key().len() + value
}

/// Callers keep keys within [`KEY_CEILING`] and values within
/// [`MAX_VALUE_LEN`] (the v2 session refuses longer ones before logging).
fn encode_kv(write: &KvWrite, out: &mut Vec<u8>) {
    out.push(KIND_KV);
    let (code, expected) = match write.kind() {
        WriteKind::Put => (KV_PUT, None),
        WriteKind::Create => (KV_CREATE, None),
        WriteKind::Update => (KV_UPDATE, None),
        WriteKind::Delete => (KV_DELETE, None),
        WriteKind::Cas { expected } => (KV_CAS, Some(expected)),
    };
    out.push(code);
    let key = write.key();
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    if let Some(expected) = expected {
        out.extend_from_slice(&expected.to_be_bytes());
    }
    if code != KV_DELETE {
        let value = write.value();
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
}

/// Decodes a string write from the bytes after the kind byte; every length
/// is checked against the bytes present (and the value's against
/// [`MAX_VALUE_LEN`]) before anything is copied.
fn decode_kv(body: &[u8]) -> Result<(Op, usize), EntryError> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], EntryError> {
        let part = body.get(at..at + n).ok_or(EntryError::Short)?;
        at += n;
        Ok(part)
    };
    let code = take(1)?[0];
    if !(KV_PUT..=KV_CAS).contains(&code) {
        return Err(EntryError::UnknownKvOp(code));
    }
    let key_len = BigEndian::read_u16(take(2)?) as usize;
    let key = take(key_len)?;
    let expected: Version = if code == KV_CAS {
        BigEndian::read_u64(take(8)?)
    } else {
        0
    };
    let value = if code == KV_DELETE {
        &[][..]
    } else {
        let len = BigEndian::read_u32(take(4)?);
        if len as usize > MAX_VALUE_LEN {
            return Err(EntryError::ValueTooLong(len));
        }
        take(len as usize)?
    };
    let kind = match code {
        KV_PUT => WriteKind::Put,
        KV_CREATE => WriteKind::Create,
        KV_UPDATE => WriteKind::Update,
        KV_DELETE => WriteKind::Delete,
        _ => WriteKind::Cas { expected },
    };
    Ok((Op::Kv(KvWrite::new(kind, key, value)), 9 + at))
}

fn push_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;

    fn round_trip(e: Entry) {
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), e.encoded_len());
        assert_eq!(Entry::decode(&buf), Ok((e, buf.len())));
        for cut in 0..buf.len() {
            assert_eq!(Entry::decode(&buf[..cut]), Err(EntryError::Short));
        }
    }

    #[test]
    fn golden_set_entry() {
        let mut buf = Vec::new();
        Entry::set(0x0001_0002, 7, 42).encode(&mut buf);
        assert_eq!(
            buf,
            hex("00 00 00 00 00 01 00 02 01 00 00 00 07 00 00 00 2a")
        );
    }

    #[test]
    fn golden_in_sync_and_noop_entries() {
        let mut buf = Vec::new();
        let set = MemberSet::from_ids([2, 0]).unwrap();
        Entry {
            epoch: 1,
            op: Op::InSync(Box::new(set)),
        }
        .encode(&mut buf);
        Entry {
            epoch: 1,
            op: Op::Noop,
        }
        .encode(&mut buf);
        assert_eq!(
            buf,
            hex("00 00 00 00 00 00 00 01 02 02 00 00 00 00 00 00 00 02 \
                 00 00 00 00 00 00 00 01 00")
        );
    }

    #[test]
    fn entries_round_trip() {
        round_trip(Entry::set(u64::MAX, i32::MIN, i32::MAX));
        round_trip(kv(KvWrite::put(b"key", &[0, 1, 2, 255])));
        round_trip(kv(KvWrite::delete(b"k")));
        round_trip(kv(KvWrite::cas(b"k", crate::wire::kv::NO_VERSION, b"v")));
        round_trip(Entry {
            epoch: 0,
            op: Op::Noop,
        });
        let full = MemberSet::from_ids(0..MAX_MEMBERS as i32).unwrap();
        round_trip(Entry {
            epoch: 9,
            op: Op::InSync(Box::new(full)),
        });
        round_trip(Entry {
            epoch: 9,
            op: Op::InSync(Box::new(MemberSet::new())),
        });
    }

    fn kv(write: KvWrite) -> Entry {
        Entry::kv(3, write)
    }

    #[test]
    fn golden_string_write_entries() {
        let mut buf = Vec::new();
        kv(KvWrite::put(b"k", b"vv")).encode(&mut buf);
        assert_eq!(
            buf,
            hex("00 00 00 00 00 00 00 03 03 02 00 01 6b 00 00 00 02 76 76")
        );
        buf.clear();
        kv(KvWrite::cas(b"k", 5, b"")).encode(&mut buf);
        assert_eq!(
            buf,
            hex("00 00 00 00 00 00 00 03 03 06 00 01 6b                  00 00 00 00 00 00 00 05 00 00 00 00")
        );
        buf.clear();
        kv(KvWrite::delete(b"")).encode(&mut buf);
        assert_eq!(buf, hex("00 00 00 00 00 00 00 03 03 05 00 00"));
    }

    #[test]
    fn string_writes_round_trip_up_to_the_largest() {
        let key = vec![0xab; KEY_CEILING];
        let value = vec![0xcd; MAX_VALUE_LEN];
        round_trip(kv(KvWrite::create(b"\0", b"x")));
        round_trip(kv(KvWrite::update(b"", b"")));
        let largest = kv(KvWrite::cas(&key, u64::MAX, &value));
        assert_eq!(largest.encoded_len(), MAX_ENTRY_LEN);
        let mut buf = Vec::new();
        largest.encode(&mut buf);
        assert_eq!(Entry::decode(&buf), Ok((largest, buf.len())));
        // Cloning shares the payload instead of copying the value.
        let e = kv(KvWrite::delete(b"k"));
        match (&e.op, &e.clone().op) {
            (Op::Kv(a), Op::Kv(b)) => assert!(a.shares(b)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bad_string_writes_are_errors() {
        // Unknown op 7 (scan is no write), and op 1 (get).
        assert_eq!(
            Entry::decode(&hex("00 00 00 00 00 00 00 01 03 07 00 00")),
            Err(EntryError::UnknownKvOp(7))
        );
        assert_eq!(
            Entry::decode(&hex("00 00 00 00 00 00 00 01 03 01 00 00")),
            Err(EntryError::UnknownKvOp(1))
        );
        // A value one byte over the bound is refused before it is read.
        let mut over = hex("00 00 00 00 00 00 00 01 03 02 00 00");
        over.extend_from_slice(&(MAX_VALUE_LEN as u32 + 1).to_be_bytes());
        assert_eq!(
            Entry::decode(&over),
            Err(EntryError::ValueTooLong(MAX_VALUE_LEN as u32 + 1))
        );
        // A key that claims more bytes than are there.
        assert_eq!(
            Entry::decode(&hex("00 00 00 00 00 00 00 01 03 05 00 05 6b")),
            Err(EntryError::Short)
        );
    }

    #[test]
    fn string_writes_reach_v1_peers_as_no_ops() {
        let e = kv(KvWrite::put(b"k", b"v"));
        assert_eq!(e.to_map_op(), MapOp::default());
        assert_eq!(e.to_map_op().opcode, 0);
    }

    #[test]
    fn bad_entries_are_errors() {
        assert_eq!(
            Entry::decode(&hex("00 00 00 00 00 00 00 01 07")),
            Err(EntryError::UnknownKind(7))
        );
        assert_eq!(
            Entry::decode(&hex("00 00 00 00 00 00 00 01 02 11")),
            Err(EntryError::TooManyMembers(17))
        );
    }

    #[test]
    fn v1_conversion_keeps_sets_and_drops_the_rest() {
        let e = Entry::from_map_op(0, &MapOp::set(3, 4));
        assert_eq!(e, Entry::set(0, 3, 4));
        assert_eq!(e.to_map_op(), MapOp::set(3, 4));
        let other = MapOp {
            opcode: 5,
            arg1: 1,
            arg2: 2,
        };
        assert_eq!(Entry::from_map_op(0, &other).op, Op::Noop);
        let isr = Entry {
            epoch: 1,
            op: Op::InSync(Box::new(MemberSet::new())),
        };
        assert_eq!(isr.to_map_op().opcode, 0);
        assert_ne!(isr.to_map_op().opcode, crate::wire::OPCODE_SET);
    }

    #[test]
    fn member_sets_stay_sorted_and_bounded() {
        let mut s = MemberSet::from_ids([5, 1, 3, 1]).unwrap();
        assert_eq!(s.ids(), &[1, 3, 5]);
        s.remove(3);
        s.remove(9);
        assert_eq!(s.ids(), &[1, 5]);
        assert!(s.contains(5) && !s.contains(3));
        assert!(MemberSet::from_ids(0..17).is_none());
    }

    #[test]
    fn a_log_slot_stays_small() {
        // The log keeps 100,000 to 200,000 entries by default; each byte
        // of an entry is 0.1 to 0.2 bytes per key of a million-key store.
        // In-sync sets (65 bytes, rare) are boxed for this.
        assert!(std::mem::size_of::<Entry>() <= 32);
    }
}

//! Log records: what one append, truncation, epoch or commit note puts in
//! `DIR/log`, framed with a length and a CRC so that replay can tell a torn
//! tail from damage. Pure codec, no I/O; [`super::replay`] walks the frames
//! and [`super::DiskLog`] encodes them.
//!
//! ```text
//! frame
//! offset  field    type   order
//! 0       length   u32    BE     payload bytes, 1..=MAX_PAYLOAD (~1.1 MiB)
//! 4       crc      u32    BE     CRC-32 (IEEE, crc32fast) of the payload
//! 8       payload  length bytes
//!
//! payload
//! offset  field    type   order
//! 0       kind     u8            1 entry, 2 truncate, 3 epoch, 4 commit
//! 1       entry:    index i32 BE, then the entry as wire::Entry encodes it
//!         truncate: from  i32 BE   (drop entries at index >= from)
//!         epoch:    epoch u64 BE
//!         commit:   index i32 BE   (entries up to index are committed)
//! ```

use crate::wire::{Entry, Epoch, MAX_ENTRY_LEN};

/// Bytes before a record's payload: length and CRC.
pub(crate) const FRAME_HEADER: usize = 8;

/// The largest payload a frame may claim: an entry record of the largest
/// entry (a string write of a 1 MiB value). The bound is no larger than
/// that because a length that runs past the end of the file is read as a
/// torn tail, and the bound limits how far a damaged length field could
/// reach. (Format version 1 had no string writes and a bound of 4096.)
pub(crate) const MAX_PAYLOAD: usize = 1 + 4 + MAX_ENTRY_LEN;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_EPOCH: u8 = 3;
const KIND_COMMIT: u8 = 4;

/// One record of the log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// `entry` sits at log index `index`.
    Entry { index: i32, entry: Entry },
    /// Entries at index `>= from` are dropped.
    Truncate { from: i32 },
    /// The server has moved to this epoch.
    Epoch(Epoch),
    /// Entries up to `index` are committed.
    Commit { index: i32 },
}

impl Record {
    /// Appends the framed record (length, CRC, payload) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        self.encode_payload(out);
        let payload = &out[start + FRAME_HEADER..];
        // Payloads are < MAX_PAYLOAD bytes, so the length fits in a u32.
        let len = (payload.len() as u32).to_be_bytes();
        let crc = crc32fast::hash(payload).to_be_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc);
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry { index, entry } => {
                out.push(KIND_ENTRY);
                out.extend_from_slice(&index.to_be_bytes());
                entry.encode(out);
            }
            Record::Truncate { from } => {
                out.push(KIND_TRUNCATE);
                out.extend_from_slice(&from.to_be_bytes());
            }
            Record::Epoch(epoch) => {
                out.push(KIND_EPOCH);
                out.extend_from_slice(&epoch.to_be_bytes());
            }
            Record::Commit { index } => {
                out.push(KIND_COMMIT);
                out.extend_from_slice(&index.to_be_bytes());
            }
        }
    }

    /// Decodes a payload whose CRC has already been checked.
    ///
    /// # Errors
    /// A description of the problem: unknown kind, wrong length, bad entry.
    pub(crate) fn decode(payload: &[u8]) -> Result<Record, String> {
        let (&kind, body) = payload.split_first().ok_or("empty payload")?;
        match kind {
            KIND_ENTRY => {
                let index = read_i32(body.get(..4).ok_or("entry record cut short")?);
                let (entry, used) = Entry::decode(&body[4..])
                    .map_err(|e| format!("entry at index {index}: {e}"))?;
                if 4 + used != body.len() {
                    return Err(format!("entry at index {index}: trailing bytes"));
                }
                Ok(Record::Entry { index, entry })
            }
            KIND_TRUNCATE => Ok(Record::Truncate {
                from: read_i32(exact::<4>(body, "truncate")?),
            }),
            KIND_EPOCH => Ok(Record::Epoch(u64::from_be_bytes(*exact::<8>(
                body, "epoch",
            )?))),
            KIND_COMMIT => Ok(Record::Commit {
                index: read_i32(exact::<4>(body, "commit")?),
            }),
            other => Err(format!("unknown record kind {other}")),
        }
    }
}

/// `body` as exactly `N` bytes, or an error naming the record kind.
fn exact<'a, const N: usize>(body: &'a [u8], what: &str) -> Result<&'a [u8; N], String> {
    body.try_into()
        .map_err(|_| format!("{what} record of {} bytes, expected {N}", body.len()))
}

fn read_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// What lies at one offset of the log file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A whole frame whose CRC matches; the next one starts at `end`.
    Whole { payload: &'a [u8], end: usize },
    /// The file ends inside the frame (fewer than 8 header bytes, or a
    /// plausible length that runs past the end): a torn write.
    Cut,
    /// An impossible length or a CRC mismatch. `end` is where the frame
    /// claims to end (just past the header when the length is impossible).
    Bad { end: usize, detail: String },
}

/// Reads the frame starting at `buf[at..]`. Never allocates from the
/// length field: the payload is a slice of `buf`.
pub(crate) fn read_frame(buf: &[u8], at: usize) -> Frame<'_> {
    let rest = &buf[at..];
    let Some(header) = rest.get(..FRAME_HEADER) else {
        return Frame::Cut;
    };
    let len = read_u32(&header[..4]) as usize;
    let crc = read_u32(&header[4..]);
    if len == 0 || len > MAX_PAYLOAD {
        return Frame::Bad {
            end: at + FRAME_HEADER,
            detail: format!("record length {len} outside 1..={MAX_PAYLOAD}"),
        };
    }
    let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Frame::Cut;
    };
    let end = at + FRAME_HEADER + len;
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Frame::Bad {
            end,
            detail: format!("checksum {actual:08x}, record says {crc:08x}"),
        };
    }
    Frame::Whole { payload, end }
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;
    use crate::wire::{MemberSet, Op};

    fn framed(r: Record) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    /// Encodes `r`, compares with `golden`, and decodes the golden bytes back.
    fn check_golden(r: Record, golden: &str) {
        let bytes = hex(golden);
        assert_eq!(framed(r.clone()), bytes, "{r:?}");
        match read_frame(&bytes, 0) {
            Frame::Whole { payload, end } => {
                assert_eq!(end, bytes.len());
                assert_eq!(Record::decode(payload), Ok(r));
            }
            other => panic!("{r:?}: {other:?}"),
        }
    }

    #[test]
    fn golden_entry_record() {
        // len 22, crc, kind 1, index 5, entry: epoch 0x10002, set(7, 42).
        check_golden(
            Record::Entry {
                index: 5,
                entry: Entry::set(0x0001_0002, 7, 42),
            },
            "00 00 00 16 ba 4b 29 10  01 00 00 00 05 \
             00 00 00 00 00 01 00 02 01 00 00 00 07 00 00 00 2a",
        );
    }

    #[test]
    fn golden_in_sync_entry_record() {
        let set = MemberSet::from_ids([3, 1]).unwrap();
        check_golden(
            Record::Entry {
                index: 0,
                entry: Entry {
                    epoch: 1,
                    op: Op::InSync(Box::new(set)),
                },
            },
            "00 00 00 17 a6 37 91 e1  01 00 00 00 00 \
             00 00 00 00 00 00 00 01 02 02 00 00 00 01 00 00 00 03",
        );
    }

    #[test]
    fn golden_truncate_epoch_commit_records() {
        check_golden(
            Record::Truncate { from: 3 },
            "00 00 00 05 25 eb f5 c7  02 00 00 00 03",
        );
        check_golden(
            Record::Epoch(0x0002_0001),
            "00 00 00 09 ab 07 cc 93  03 00 00 00 00 00 02 00 01",
        );
        check_golden(
            Record::Commit { index: -1 },
            "00 00 00 05 ed 19 71 3e  04 ff ff ff ff",
        );
    }

    #[test]
    fn the_largest_entry_record_is_within_the_bound() {
        let entry = Entry::kv(
            1,
            crate::state::kv::KvWrite::cas(
                &vec![1; crate::wire::kv::KEY_CEILING],
                3,
                &vec![2; crate::wire::MAX_VALUE_LEN],
            ),
        );
        let r = Record::Entry { index: 4, entry };
        let bytes = framed(r.clone());
        assert_eq!(bytes.len(), FRAME_HEADER + MAX_PAYLOAD);
        match read_frame(&bytes, 0) {
            Frame::Whole { payload, .. } => assert_eq!(Record::decode(payload), Ok(r)),
            other => panic!("{other:?}"),
        }
        let mut over = bytes.clone();
        over[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(read_frame(&over, 0), Frame::Bad { end: 8, .. }));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = framed(Record::Commit { index: 9 });
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(read_frame(&bytes, 0), Frame::Bad { end, .. } if end == bytes.len()));
    }

    #[test]
    fn short_frames_are_cut_and_impossible_lengths_bad() {
        let bytes = framed(Record::Epoch(7));
        for cut in 0..bytes.len() {
            assert_eq!(read_frame(&bytes[..cut], 0), Frame::Cut, "cut at {cut}");
        }
        // A zero-filled region: length 0 is never written.
        assert!(matches!(read_frame(&[0; 16], 0), Frame::Bad { end: 8, .. }));
        // A huge length is damage, not a torn write, even past the end.
        let huge = hex("7f ff ff ff 00 00 00 00 01");
        assert!(matches!(read_frame(&huge, 0), Frame::Bad { end: 8, .. }));
    }

    #[test]
    fn bad_payloads_are_described() {
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&hex("09")).unwrap_err().contains("kind 9"));
        assert!(Record::decode(&hex("04 00 00 00")).is_err());
        assert!(Record::decode(&hex("02 00 00 00 01 00")).is_err());
        // An entry with a byte left over.
        let mut p = hex("01 00 00 00 00");
        Entry::set(1, 2, 3).encode(&mut p);
        p.push(0);
        assert!(Record::decode(&p).unwrap_err().contains("trailing"));
    }
}

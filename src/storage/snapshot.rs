//! [`Snapshot`] and the `DIR/snapshot` file: the record map as of one log
//! index, written whole by [`super::DiskLog::install_snapshot`] and read by
//! [`super::DiskLog::open`]. Pure codec; the caller does the file I/O.
//!
//! ```text
//! offset  field         type     order
//! 0       magic         8 bytes         "FACTSNP\n"
//! 8       version       u32      BE     1
//! 12      body length   u32      BE     bytes from offset 20 to the end
//! 16      body CRC      u32      BE     CRC-32 (IEEE) of the body
//! 20      generation    u64      BE     must match the log file's header
//! 28      last_index    i32      BE     -1 for an empty snapshot
//! 32      last_epoch    u64      BE
//! 40      member count  u8              in-sync set, at most MAX_MEMBERS
//! 41      ids           count × i32 BE
//! ..      record count  u32      BE
//! ..      records       count × (customer_id i32 BE, last_order i32 BE)
//! ```
//!
//! The whole body sits under one CRC: a snapshot is written once and never
//! appended to, so any damage is corruption, never a torn tail.

use std::path::Path;

use super::StorageError;
use crate::wire::{Epoch, MemberSet, MAX_MEMBERS};

/// Magic bytes at the start of `DIR/snapshot`.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"FACTSNP\n";
/// The snapshot format this code reads and writes.
pub(crate) const SNAPSHOT_VERSION: u32 = 1;
/// Bytes before the body: magic, version, body length, body CRC.
const HEADER_LEN: usize = 20;

/// The record map as of `last_index`: what the log's entries up to and
/// including `last_index` add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log index folded in; -1 for an empty snapshot.
    pub last_index: i32,
    /// Epoch of the entry at `last_index` (0 if none).
    pub last_epoch: Epoch,
    /// The in-sync set in force at `last_index`.
    pub in_sync: MemberSet,
    /// `(customer_id, last_order)` pairs, in any order.
    pub records: Vec<(i32, i32)>,
}

/// Encodes the whole snapshot file for `generation`.
pub(crate) fn encode_file(generation: u64, snap: &Snapshot) -> Vec<u8> {
    let mut body = Vec::with_capacity(45 + 4 * snap.in_sync.len() + 8 * snap.records.len());
    body.extend_from_slice(&generation.to_be_bytes());
    body.extend_from_slice(&snap.last_index.to_be_bytes());
    body.extend_from_slice(&snap.last_epoch.to_be_bytes());
    // MemberSet holds at most MAX_MEMBERS (16) ids.
    body.push(snap.in_sync.len() as u8);
    for id in snap.in_sync.ids() {
        body.extend_from_slice(&id.to_be_bytes());
    }
    // A record map keyed by i32 cannot hold more than u32::MAX entries in
    // any memory this runs in.
    body.extend_from_slice(&(snap.records.len() as u32).to_be_bytes());
    for (customer, order) in &snap.records {
        body.extend_from_slice(&customer.to_be_bytes());
        body.extend_from_slice(&order.to_be_bytes());
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a snapshot file read from `path`: its generation and contents.
///
/// # Errors
/// [`StorageError::BadHeader`] for a short file, wrong magic or version;
/// [`StorageError::Corrupt`] for a wrong length, CRC or field.
pub(crate) fn decode_file(path: &Path, bytes: &[u8]) -> Result<(u64, Snapshot), StorageError> {
    let body = check_header(path, bytes)?;
    let corrupt = |offset: usize, detail: &str| {
        StorageError::corrupt(path, (HEADER_LEN + offset) as u64, detail)
    };
    let mut r = Reader { buf: body, pos: 0 };
    let short = "snapshot body cut short";
    let generation = r.u64().ok_or_else(|| corrupt(r.pos, short))?;
    let last_index = r.i32().ok_or_else(|| corrupt(r.pos, short))?;
    let last_epoch = r.u64().ok_or_else(|| corrupt(r.pos, short))?;
    let count_at = r.pos;
    let count = r.take(1).ok_or_else(|| corrupt(r.pos, short))?[0] as usize;
    if count > MAX_MEMBERS {
        return Err(corrupt(count_at, "in-sync set larger than MAX_MEMBERS"));
    }
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(r.i32().ok_or_else(|| corrupt(r.pos, short))?);
    }
    let in_sync = MemberSet::from_ids(ids).ok_or_else(|| corrupt(count_at, "bad in-sync set"))?;
    let records = read_records(&mut r)
        .ok_or_else(|| corrupt(r.pos, "record count disagrees with the body length"))?;
    let snap = Snapshot {
        last_index,
        last_epoch,
        in_sync,
        records,
    };
    Ok((generation, snap))
}

/// Whether `bytes` are a snapshot whose write never fully reached the disk
/// (renamed into place before its data, by a build or a file system that
/// did not order them): empty, all zeros, a prefix of a header, or a header
/// declaring more body than follows. A whole file that fails its checks is
/// not torn but damaged.
pub(crate) fn is_torn(bytes: &[u8]) -> bool {
    if bytes.iter().all(|&b| b == 0) {
        return true;
    }
    let magic_len = bytes.len().min(SNAPSHOT_MAGIC.len());
    if bytes[..magic_len] != SNAPSHOT_MAGIC[..magic_len] {
        return false;
    }
    match bytes.get(..HEADER_LEN) {
        None => true,
        Some(header) => be_u32(&header[12..16]) as usize > bytes.len() - HEADER_LEN,
    }
}

/// Checks magic, version, length and CRC; returns the body.
fn check_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8], StorageError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(StorageError::bad_header(
            path,
            format!("{} bytes, shorter than the snapshot header", bytes.len()),
        ));
    };
    if &header[..8] != SNAPSHOT_MAGIC {
        return Err(StorageError::bad_header(
            path,
            "not a factory snapshot (wrong magic)",
        ));
    }
    let version = be_u32(&header[8..12]);
    if version != SNAPSHOT_VERSION {
        return Err(StorageError::bad_header(
            path,
            format!("snapshot format version {version}, this build reads {SNAPSHOT_VERSION}"),
        ));
    }
    let body = &bytes[HEADER_LEN..];
    let len = be_u32(&header[12..16]) as usize;
    if len != body.len() {
        let detail = format!("body of {} bytes, header says {len}", body.len());
        return Err(StorageError::corrupt(path, 12, detail));
    }
    let crc = crc32fast::hash(body);
    if crc != be_u32(&header[16..20]) {
        return Err(StorageError::corrupt(
            path,
            HEADER_LEN as u64,
            "snapshot body fails its checksum",
        ));
    }
    Ok(body)
}

/// Reads the record count and exactly that many records, which must end the
/// body. The count is checked against the bytes left before allocating.
fn read_records(r: &mut Reader<'_>) -> Option<Vec<(i32, i32)>> {
    let count = r.u32()? as usize;
    if r.buf.len() - r.pos != count.checked_mul(8)? {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push((r.i32()?, r.i32()?));
    }
    Some(records)
}

/// A cursor over the snapshot body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(be_u32)
    }

    fn i32(&mut self) -> Option<i32> {
        self.u32().map(|v| v as i32)
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some((u64::from(be_u32(&b[..4])) << 32) | u64::from(be_u32(&b[4..])))
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;

    fn sample() -> Snapshot {
        Snapshot {
            last_index: 4,
            last_epoch: 0x0001_0002,
            in_sync: MemberSet::from_ids([2, 1]).unwrap(),
            records: vec![(7, 42), (-1, 3)],
        }
    }

    #[test]
    fn golden_snapshot_file() {
        let bytes = encode_file(3, &sample());
        let body = hex(
            "00 00 00 00 00 00 00 03  00 00 00 04  00 00 00 00 00 01 00 02 \
             02 00 00 00 01 00 00 00 02  00 00 00 02 \
             00 00 00 07 00 00 00 2a  ff ff ff ff 00 00 00 03",
        );
        let mut expected = b"FACTSNP\n".to_vec();
        expected.extend_from_slice(&hex("00 00 00 01 00 00 00 31"));
        expected.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(bytes, expected);
        assert_eq!(decode_file(Path::new("s"), &bytes).unwrap(), (3, sample()));
    }

    #[test]
    fn empty_snapshot_round_trips() {
        let empty = Snapshot {
            last_index: -1,
            ..Snapshot::default()
        };
        let bytes = encode_file(1, &empty);
        assert_eq!(decode_file(Path::new("s"), &bytes).unwrap(), (1, empty));
    }

    #[test]
    fn torn_means_a_write_that_stopped_short() {
        let good = encode_file(1, &sample());
        assert!(!is_torn(&good));
        for len in [0, 3, 8, 19, 20, good.len() - 1] {
            assert!(is_torn(&good[..len]), "{len} bytes");
        }
        assert!(is_torn(&vec![0; good.len()]));
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert!(!is_torn(&flipped), "whole but damaged");
        assert!(!is_torn(b"FACTLOG\n"), "foreign");
    }

    #[test]
    fn damage_is_corrupt_and_a_foreign_file_a_bad_header() {
        let path = Path::new("/d/snapshot");
        let good = encode_file(1, &sample());
        for at in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            let err = decode_file(path, &bad).unwrap_err();
            assert!(
                matches!(err, StorageError::Corrupt { offset: 20, .. }),
                "{at}: {err}"
            );
        }
        let err = decode_file(path, &good[..good.len() - 1]).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset: 12, .. }),
            "{err}"
        );
        let err = decode_file(path, b"FACTLOG\n\0\0\0\x01").unwrap_err();
        assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
        assert!(err.to_string().contains("/d/snapshot"));
    }
}

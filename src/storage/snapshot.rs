//! [`Snapshot`] and the `DIR/snapshot` file: the record map and the string
//! store as of one log index, written by
//! [`super::DiskLog::install_snapshot`] and read by
//! [`super::DiskLog::open`]. Pure codec; the caller does the file I/O.
//!
//! ```text
//! offset  field         type     order
//! 0       magic         8 bytes         "FACTSNP\n"
//! 8       version       u32      BE     2 (1: no string section)
//! 12      body length   u32      BE     bytes of the base body (v1: to the end)
//! 16      body CRC      u32      BE     CRC-32 (IEEE) of the base body
//! 20      generation    u64      BE     must match the log file's header
//! 28      last_index    i32      BE     -1 for an empty snapshot
//! 32      last_epoch    u64      BE
//! 40      member count  u8              in-sync set, at most MAX_MEMBERS
//! 41      ids           count × i32 BE
//! ..      record count  u32      BE
//! ..      records       count × (customer_id i32 BE, last_order i32 BE)
//!   version 2 only, after the base body: string chunks, each
//! +0      length        u32      BE     payload bytes, 4..=MAX_CHUNK_PAYLOAD
//! +4      crc           u32      BE     CRC-32 of the payload
//! +8      payload       key count u32 BE, then per key: key u16 BE length
//!                       + bytes, version u64 BE, value u32 BE length + bytes
//!   ending with a chunk of key count 0.
//! ```
//!
//! Each part sits under its own CRC: a snapshot is written once and never
//! appended to, so any damage is corruption, never a torn tail; a file
//! that ends before the last chunk is torn. Chunks keep every piece
//! written (and checked) at most about 1 MiB: the file is written chunk by
//! chunk, never encoded whole.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::StorageError;

use crate::state::kv::{KvStore, Versioned};
use crate::wire::kv::KEY_CEILING;
use crate::wire::{Epoch, MemberSet, MAX_ENTRY_LEN, MAX_MEMBERS, MAX_VALUE_LEN};

/// Magic bytes at the start of `DIR/snapshot`.
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"FACTSNP\n";
/// The snapshot format this code writes.
pub(crate) const SNAPSHOT_VERSION: u32 = 2;
/// The format before string keys, still read.
pub(crate) const SNAPSHOT_VERSION_1: u32 = 1;
/// Bytes of string items a chunk is filled to (one larger item goes alone).
const CHUNK_BUDGET: usize = 1 << 20;
/// The largest chunk payload a reader accepts: a budget's worth, or one
/// item of the largest key and value, with its count.
const MAX_CHUNK_PAYLOAD: usize = 4 + if CHUNK_BUDGET > MAX_ENTRY_LEN {
    CHUNK_BUDGET
} else {
    MAX_ENTRY_LEN
};
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
    /// The string store's keys, with their versions and values.
    pub kv: KvStore,
}

/// Writes the snapshot file for `generation` to `out`, chunk by chunk.
///
/// # Errors
/// Whatever `out` returns.
pub(crate) fn write_file(out: &mut impl Write, generation: u64, snap: &Snapshot) -> io::Result<()> {
    out.write_all(&encode_base(generation, snap))?;
    let mut chunk = Chunk::default();
    for (key, v) in snap.kv.iter() {
        // Within the budget, and at least one key a chunk.
        if chunk.count > 0 && chunk.items_len() + item_len(key, v) > CHUNK_BUDGET {
            out.write_all(&chunk.finish())?;
        }
        chunk.push(key, v);
    }
    if chunk.count > 0 {
        out.write_all(&chunk.finish())?;
    }
    out.write_all(&chunk.finish())
}

/// Bytes a key takes in a chunk.
fn item_len(key: &[u8], v: &Versioned) -> usize {
    2 + key.len() + 8 + 4 + v.value().len()
}

/// A string chunk being filled: length and CRC (filled in last), count,
/// keys.
struct Chunk {
    bytes: Vec<u8>,
    count: u32,
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk {
            bytes: vec![0; 12],
            count: 0,
        }
    }
}

impl Chunk {
    fn items_len(&self) -> usize {
        self.bytes.len() - 12
    }

    /// Callers keep keys within a u16 and values within MAX_VALUE_LEN (the
    /// store holds only what the log carried).
    fn push(&mut self, key: &[u8], v: &Versioned) {
        let out = &mut self.bytes;
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&v.version().to_be_bytes());
        out.extend_from_slice(&(v.value().len() as u32).to_be_bytes());
        out.extend_from_slice(v.value());
        self.count += 1;
    }

    /// The framed chunk; this one starts empty again.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::replace(&mut self.bytes, vec![0; 12]);
        let count = std::mem::take(&mut self.count);
        let len = (out.len() - 8) as u32;
        out[8..12].copy_from_slice(&count.to_be_bytes());
        let crc = crc32fast::hash(&out[8..]);
        out[..4].copy_from_slice(&len.to_be_bytes());
        out[4..8].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

/// Encodes the whole snapshot file for `generation` (tests, small ones).
#[cfg(test)]
pub(crate) fn encode_file(generation: u64, snap: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    write_file(&mut out, generation, snap).expect("writing to a vector");
    out
}

/// The header and base body (everything but the string chunks).
fn encode_base(generation: u64, snap: &Snapshot) -> Vec<u8> {
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
    let (generation, mut snap) = decode_base(path, bytes)?;
    let (version, body) = check_header(path, bytes)?;
    if version != SNAPSHOT_VERSION_1 {
        snap.kv = read_chunks(path, bytes, HEADER_LEN + body.len())?;
    }
    Ok((generation, snap))
}

/// Decodes the header and base body at the start of `bytes` (everything
/// but the string chunks, which are left empty).
fn decode_base(path: &Path, bytes: &[u8]) -> Result<(u64, Snapshot), StorageError> {
    let (_, body) = check_header(path, bytes)?;
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
        kv: KvStore::new(),
    };
    Ok((generation, snap))
}

/// What [`load`] found in a snapshot file.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// A write that never fully reached the disk (see [`is_torn`]), of
    /// this many bytes.
    Torn(u64),
    /// A whole snapshot and its generation.
    Whole(u64, Snapshot),
}

/// Reads the snapshot file at `path` as it is laid out: the header and
/// base body, then one string chunk at a time into a reused buffer, so
/// that no buffer of the file's size is needed. `None` when it does not
/// exist.
///
/// # Errors
/// As [`decode_file`]: [`StorageError::BadHeader`] for a foreign file or
/// version, [`StorageError::Corrupt`] for damage; [`StorageError::Io`].
pub(crate) fn load(path: &Path) -> Result<Option<Loaded>, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    let io = |e| StorageError::io(path, e);
    let file_len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut r)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.len() < HEADER_LEN || head.iter().all(|&b| b == 0) {
        return if is_torn(&head) {
            Ok(Some(Loaded::Torn(file_len)))
        } else {
            decode_file(path, &head).map(|(g, s)| Some(Loaded::Whole(g, s)))
        };
    }
    let version = be_u32(&head[8..12]);
    let base = u64::from(be_u32(&head[12..16]));
    if &head[..8] == SNAPSHOT_MAGIC && base > file_len - HEADER_LEN as u64 {
        return Ok(Some(Loaded::Torn(file_len)));
    }
    // Version 1 (and anything refused by its header) is read whole: it
    // holds no string keys, only the records.
    if &head[..8] != SNAPSHOT_MAGIC || version != SNAPSHOT_VERSION {
        r.read_to_end(&mut head).map_err(io)?;
        return decode_file(path, &head).map(|(g, s)| Some(Loaded::Whole(g, s)));
    }
    // `base` is within the file's length, checked above.
    (&mut r).take(base).read_to_end(&mut head).map_err(io)?;
    let (generation, mut snap) = decode_base(path, &head)?;
    match read_chunks_from(path, &mut r, head.len() as u64, file_len)? {
        Some(kv) => snap.kv = kv,
        None => return Ok(Some(Loaded::Torn(file_len))),
    }
    Ok(Some(Loaded::Whole(generation, snap)))
}

/// Reads the string chunks of a version 2 file from offset `at` to its
/// end; `None` if the file ends inside one (torn).
fn read_chunks_from(
    path: &Path,
    r: &mut impl Read,
    mut at: u64,
    file_len: u64,
) -> Result<Option<KvStore>, StorageError> {
    let corrupt = |at: u64, detail: &str| StorageError::corrupt(path, at, detail);
    let mut items = KvStore::new();
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        if file_len - at < 8 {
            return Ok(None);
        }
        r.read_exact(&mut header)
            .map_err(|e| StorageError::io(path, e))?;
        let len = be_u32(&header[..4]) as usize;
        if !(4..=MAX_CHUNK_PAYLOAD).contains(&len) {
            return Err(corrupt(at, "string chunk length out of range"));
        }
        if file_len - at - 8 < len as u64 {
            return Ok(None);
        }
        payload.clear();
        payload.resize(len, 0);
        r.read_exact(&mut payload)
            .map_err(|e| StorageError::io(path, e))?;
        if crc32fast::hash(&payload) != be_u32(&header[4..]) {
            return Err(corrupt(at, "string chunk fails its checksum"));
        }
        let count = read_items(&payload, &mut items)
            .ok_or_else(|| corrupt(at, "malformed string chunk"))?;
        at += 8 + len as u64;
        if count == 0 {
            return if at == file_len {
                Ok(Some(items))
            } else {
                Err(corrupt(at, "bytes after the last string chunk"))
            };
        }
    }
}

/// Where each string chunk of a version 2 file starts, from `at` on.
enum ChunkAt<'a> {
    /// A whole chunk whose CRC matches; the next starts at `end`.
    Whole { payload: &'a [u8], end: usize },
    /// The file ends inside the chunk.
    Cut,
    /// An impossible length or a CRC mismatch.
    Bad(&'static str),
}

fn chunk_at(bytes: &[u8], at: usize) -> ChunkAt<'_> {
    let Some(header) = bytes.get(at..at + 8) else {
        return ChunkAt::Cut;
    };
    let len = be_u32(&header[..4]) as usize;
    if !(4..=MAX_CHUNK_PAYLOAD).contains(&len) {
        return ChunkAt::Bad("string chunk length out of range");
    }
    let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
        return ChunkAt::Cut;
    };
    if crc32fast::hash(payload) != be_u32(&header[4..]) {
        return ChunkAt::Bad("string chunk fails its checksum");
    }
    ChunkAt::Whole {
        payload,
        end: at + 8 + len,
    }
}

/// Reads every string chunk from `at` to the end of the file.
fn read_chunks(path: &Path, bytes: &[u8], mut at: usize) -> Result<KvStore, StorageError> {
    let corrupt = |at: usize, detail: &str| StorageError::corrupt(path, at as u64, detail);
    let mut items = KvStore::new();
    loop {
        let (payload, end) = match chunk_at(bytes, at) {
            ChunkAt::Whole { payload, end } => (payload, end),
            ChunkAt::Cut => return Err(corrupt(at, "snapshot ends inside its string chunks")),
            ChunkAt::Bad(why) => return Err(corrupt(at, why)),
        };
        let count =
            read_items(payload, &mut items).ok_or_else(|| corrupt(at, "malformed string chunk"))?;
        if count == 0 {
            return if end == bytes.len() {
                Ok(items)
            } else {
                Err(corrupt(end, "bytes after the last string chunk"))
            };
        }
        at = end;
    }
}

/// Appends the items of one chunk's payload; `None` if it is malformed.
/// Every length is checked against what is left before anything is copied.
fn read_items(payload: &[u8], store: &mut KvStore) -> Option<u32> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let count = r.u32()?;
    // Each key takes at least 14 bytes.
    if count as usize > (payload.len() - 4) / 14 {
        return None;
    }
    for _ in 0..count {
        let key_len = r.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))? as usize;
        if key_len > KEY_CEILING {
            return None;
        }
        let key = r.take(key_len)?;
        let version = r.u64()?;
        let value_len = r.u32()? as usize;
        if value_len > MAX_VALUE_LEN {
            return None;
        }
        store.restore(Versioned::new(version, key, r.take(value_len)?));
    }
    (r.pos == payload.len()).then_some(count)
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
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return true;
    };
    let base = be_u32(&header[12..16]) as usize;
    if base > bytes.len() - HEADER_LEN {
        return true;
    }
    if be_u32(&header[8..12]) != SNAPSHOT_VERSION {
        return false;
    }
    // Version 2: torn when the string chunks stop before the last one.
    let mut at = HEADER_LEN + base;
    loop {
        match chunk_at(bytes, at) {
            ChunkAt::Cut => return true,
            ChunkAt::Bad(_) => return false,
            ChunkAt::Whole { payload, end } => {
                if payload[..4] == [0; 4] {
                    return false;
                }
                at = end;
            }
        }
    }
}

/// Checks magic, version, length and CRC; returns the version and the
/// base body.
fn check_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(u32, &'a [u8]), StorageError> {
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
    if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_1 {
        return Err(StorageError::bad_header(
            path,
            format!(
                "snapshot format version {version}, this build reads \
                 {SNAPSHOT_VERSION_1} and {SNAPSHOT_VERSION}"
            ),
        ));
    }
    let rest = &bytes[HEADER_LEN..];
    let len = be_u32(&header[12..16]) as usize;
    // Version 1 has nothing after the body; version 2 has its chunks.
    let fits = if version == SNAPSHOT_VERSION_1 {
        len == rest.len()
    } else {
        len <= rest.len()
    };
    if !fits {
        let detail = format!("body of {} bytes, header says {len}", rest.len());
        return Err(StorageError::corrupt(path, 12, detail));
    }
    let body = &rest[..len];
    let crc = crc32fast::hash(body);
    if crc != be_u32(&header[16..20]) {
        return Err(StorageError::corrupt(
            path,
            HEADER_LEN as u64,
            "snapshot body fails its checksum",
        ));
    }
    Ok((version, body))
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
            kv: KvStore::new(),
        }
    }

    /// A store of `(key, version, value)`.
    fn store_of(items: Vec<(Vec<u8>, u64, Vec<u8>)>) -> KvStore {
        let mut store = KvStore::new();
        for (key, version, value) in items {
            store.restore(Versioned::new(version, &key, &value));
        }
        store
    }

    /// The 8 bytes of the chunk that ends a version 2 file's string keys.
    fn last_chunk() -> Vec<u8> {
        let mut out = hex("00 00 00 04");
        out.extend_from_slice(&crc32fast::hash(&[0; 4]).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    }

    fn with_keys(sizes: &[usize]) -> Snapshot {
        let kv = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let key = format!("key{i}").into_bytes();
                (key, 100 + i as u64, vec![i as u8; n])
            })
            .collect();
        Snapshot {
            kv: store_of(kv),
            ..sample()
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
        expected.extend_from_slice(&hex("00 00 00 02 00 00 00 31"));
        expected.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        expected.extend_from_slice(&body);
        let v1 = {
            let mut v1 = expected.clone();
            v1[11] = 1;
            v1
        };
        expected.extend_from_slice(&last_chunk());
        assert_eq!(bytes, expected);
        assert_eq!(decode_file(Path::new("s"), &bytes).unwrap(), (3, sample()));
        // The version 1 file (the same body, nothing after it) still reads.
        assert_eq!(decode_file(Path::new("s"), &v1).unwrap(), (3, sample()));
        assert!(!is_torn(&v1));
    }

    #[test]
    fn golden_string_chunk() {
        let snap = Snapshot {
            kv: store_of(vec![(b"k".to_vec(), 9, b"vv".to_vec())]),
            ..sample()
        };
        let bytes = encode_file(3, &snap);
        let base = encode_file(3, &sample());
        let payload = hex("00 00 00 01  00 01 6b  00 00 00 00 00 00 00 09  00 00 00 02 76 76");
        let mut expected = base[..base.len() - 12].to_vec();
        expected.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        expected.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        expected.extend_from_slice(&payload);
        expected.extend_from_slice(&last_chunk());
        assert_eq!(bytes, expected);
        assert_eq!(decode_file(Path::new("s"), &bytes).unwrap(), (3, snap));
    }

    #[test]
    fn large_values_are_written_in_chunks_of_about_a_mebibyte() {
        let snap = with_keys(&[600_000, 600_000, MAX_VALUE_LEN, 0, 10]);
        let mut out = Vec::new();
        let mut writes = Recorder::default();
        write_file(&mut writes, 1, &snap).unwrap();
        write_file(&mut out, 1, &snap).unwrap();
        // Base, then one chunk per big value (two 600 kB do not fit one),
        // the small ones together, and the last, empty chunk.
        assert_eq!(writes.sizes.len(), 1 + 4 + 1, "{:?}", writes.sizes);
        assert!(writes.sizes.iter().all(|&n| n <= 8 + MAX_CHUNK_PAYLOAD));
        assert_eq!(decode_file(Path::new("s"), &out).unwrap(), (1, snap));
    }

    /// Counts the pieces a writer is handed.
    #[derive(Default)]
    struct Recorder {
        sizes: Vec<usize>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sizes.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What [`load`] makes of `bytes` written to a file.
    fn load_bytes(bytes: &[u8]) -> Result<Option<Loaded>, StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, bytes).unwrap();
        load(&path)
    }

    #[test]
    fn load_reads_what_decode_reads_chunk_by_chunk() {
        let snap = with_keys(&[600_000, 600_000, MAX_VALUE_LEN, 0, 10]);
        let good = encode_file(4, &snap);
        match load_bytes(&good) {
            Ok(Some(Loaded::Whole(4, got))) => assert_eq!(got, snap),
            other => panic!("{other:?}"),
        }
        let mut v1 = encode_file(4, &sample());
        v1.truncate(v1.len() - 12);
        v1[11] = 1;
        match load_bytes(&v1) {
            Ok(Some(Loaded::Whole(4, got))) => assert_eq!(got, sample()),
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(&dir.path().join("absent")), Ok(None)));
    }

    #[test]
    fn load_tells_torn_files_from_damaged_ones() {
        let good = encode_file(1, &with_keys(&[3, 70_000, 5]));
        let base_end = encode_file(1, &sample()).len() - 12;
        for len in [
            0,
            7,
            19,
            20,
            30,
            base_end + 3,
            base_end + 40_000,
            good.len() - 1,
        ] {
            assert!(
                matches!(load_bytes(&good[..len]), Ok(Some(Loaded::Torn(n))) if n == len as u64),
                "{len} bytes"
            );
        }
        assert!(matches!(
            load_bytes(&vec![0; good.len()]),
            Ok(Some(Loaded::Torn(_)))
        ));
        for at in [25, base_end + 6, base_end + 20, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(load_bytes(&bad), Err(StorageError::Corrupt { .. })),
                "{at}"
            );
        }
        let mut extra = good;
        extra.push(1);
        assert!(matches!(
            load_bytes(&extra),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            load_bytes(b"FACTLOG\n\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(StorageError::BadHeader { .. })
        ));
    }

    #[test]
    fn a_file_cut_in_its_string_chunks_is_torn_and_damage_there_corrupt() {
        let path = Path::new("/d/snapshot");
        let good = encode_file(1, &with_keys(&[3, 70_000, 5]));
        assert!(!is_torn(&good));
        let base_end = encode_file(1, &sample()).len() - 12;
        for len in (base_end..good.len()).step_by(997).chain([good.len() - 1]) {
            assert!(is_torn(&good[..len]), "{len} bytes");
            assert!(decode_file(path, &good[..len]).is_err());
        }
        for at in [base_end + 2, base_end + 6, base_end + 20, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(!is_torn(&bad), "{at}");
            let err = decode_file(path, &bad).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{at}: {err}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(
            decode_file(path, &extra).is_err(),
            "bytes after the last chunk"
        );
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
        for at in HEADER_LEN..good.len() - 12 {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            let err = decode_file(path, &bad).unwrap_err();
            assert!(
                matches!(err, StorageError::Corrupt { offset: 20, .. }),
                "{at}: {err}"
            );
        }
        // Cut inside the base body (before the 12-byte last chunk).
        let err = decode_file(path, &good[..good.len() - 13]).unwrap_err();
        assert!(
            matches!(err, StorageError::Corrupt { offset: 12, .. }),
            "{err}"
        );
        let err = decode_file(path, b"FACTLOG\n\0\0\0\x01").unwrap_err();
        assert!(matches!(err, StorageError::BadHeader { .. }), "{err}");
        assert!(err.to_string().contains("/d/snapshot"));
    }
}

//! The election's durable state ([`HardState`]: epoch, vote, latest in-sync
//! set) in its own small file, `DIR/election`, replaced whole on every
//! change: written and fsynced under `election.tmp`, renamed into place,
//! directory fsynced. The election thread calls [`save`] for every
//! `Output::Persist` before it sends what follows, and [`load`] at start.
//!
//! ```text
//! offset  field        type     order
//! 0       magic        8 bytes         "FACTELE\n"
//! 8       version      u32      BE     1
//! 12      body length  u32      BE
//! 16      body CRC     u32      BE     CRC-32 (IEEE) of the body
//! 20      body:        epoch u64, voted_for i32 (-1: none),
//!                      config epoch u64, config version u32,
//!                      member count u8 (<= 16), ids i32 x count,
//!                      floor epoch u64, floor index i32
//! ```
//!
//! A rename is atomic, so the file is always one whole state; one that
//! fails its checksum is [`StorageError::Corrupt`] and the server must not
//! start (voting again in an epoch it may have voted in is not safe).

use std::path::Path;

use byteorder::{BigEndian, ByteOrder};

use super::files::{read_optional, rename_into_place, write_file};
use super::StorageError;
use crate::replication::election::{Config, ConfigId, HardState, LogPos};
use crate::wire::{MemberSet, MAX_MEMBERS};

/// The file's name under the data directory.
pub const FILE: &str = "election";
const TMP: &str = "election.tmp";
const MAGIC: &[u8; 8] = b"FACTELE\n";
const VERSION: u32 = 1;
const HEADER: usize = 20;

/// Replaces the state in `dir`, durably when `durable` (the vote must be
/// on disk before it is sent).
///
/// # Errors
/// [`StorageError::Io`] naming the file or directory.
pub fn save(dir: &Path, state: &HardState, durable: bool) -> Result<(), StorageError> {
    let bytes = encode(state);
    let tmp = dir.join(TMP);
    write_file(&tmp, &bytes, durable)?;
    rename_into_place(dir, &tmp, &dir.join(FILE), durable)
}

/// The state saved in `dir`, or `None` if none was ever saved.
///
/// # Errors
/// [`StorageError::BadHeader`] for a foreign file or version,
/// [`StorageError::Corrupt`] for a damaged one, [`StorageError::Io`].
pub fn load(dir: &Path) -> Result<Option<HardState>, StorageError> {
    let path = dir.join(FILE);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    decode(&bytes).map(Some).map_err(|e| match e {
        Bad::Header(detail) => StorageError::BadHeader {
            path: path.clone(),
            detail,
        },
        Bad::Body(offset, detail) => StorageError::Corrupt {
            path: path.clone(),
            offset,
            detail,
        },
    })
}

fn encode(state: &HardState) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&state.epoch.to_be_bytes());
    body.extend_from_slice(&state.voted_for.unwrap_or(-1).to_be_bytes());
    let c = &state.config;
    body.extend_from_slice(&c.id.epoch.to_be_bytes());
    body.extend_from_slice(&c.id.version.to_be_bytes());
    body.push(c.members.len() as u8);
    for &id in c.members.ids() {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(&c.floor.epoch.to_be_bytes());
    body.extend_from_slice(&c.floor.index.to_be_bytes());
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

enum Bad {
    Header(String),
    Body(u64, String),
}

fn decode(bytes: &[u8]) -> Result<HardState, Bad> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Bad::Header("not an election state file".into()));
    }
    let version = BigEndian::read_u32(&bytes[8..12]);
    if version != VERSION {
        return Err(Bad::Header(format!(
            "version {version}, expected {VERSION}"
        )));
    }
    let len = BigEndian::read_u32(&bytes[12..16]) as usize;
    let body = &bytes[HEADER..];
    if body.len() != len {
        return Err(Bad::Body(
            12,
            format!("body of {} bytes, header says {len}", body.len()),
        ));
    }
    if crc32fast::hash(body) != BigEndian::read_u32(&bytes[16..20]) {
        return Err(Bad::Body(16, "checksum mismatch".into()));
    }
    parse_body(body).ok_or_else(|| Bad::Body(HEADER as u64, "malformed body".into()))
}

fn parse_body(body: &[u8]) -> Option<HardState> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let part = body.get(at..at + n)?;
        at += n;
        Some(part)
    };
    let epoch = BigEndian::read_u64(take(8)?);
    let voted = BigEndian::read_i32(take(4)?);
    let config_epoch = BigEndian::read_u64(take(8)?);
    let version = BigEndian::read_u32(take(4)?);
    let count = take(1)?[0] as usize;
    if count > MAX_MEMBERS {
        return None;
    }
    let mut members = MemberSet::new();
    for _ in 0..count {
        members.insert(BigEndian::read_i32(take(4)?));
    }
    let floor_epoch = BigEndian::read_u64(take(8)?);
    let floor_index = BigEndian::read_i32(take(4)?);
    if take(1).is_some() || members.len() != count {
        return None;
    }
    Some(HardState {
        epoch,
        voted_for: (voted >= 0).then_some(voted),
        config: Config {
            id: ConfigId {
                epoch: config_epoch,
                version,
            },
            members,
            floor: LogPos {
                epoch: floor_epoch,
                index: floor_index,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> HardState {
        HardState {
            epoch: 0x5_0002,
            voted_for: Some(2),
            config: Config {
                id: ConfigId {
                    epoch: 0x4_0001,
                    version: 7,
                },
                members: MemberSet::from_ids([1, 2]).unwrap(),
                floor: LogPos {
                    epoch: 0x3_0000,
                    index: 99,
                },
            },
        }
    }

    #[test]
    fn saves_and_loads_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None, "nothing saved yet");
        save(dir.path(), &state(), true).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(state()));
        let mut next = state();
        next.epoch += 0x1_0000;
        next.voted_for = None;
        save(dir.path(), &next, true).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(next));
        assert!(!dir.path().join(TMP).exists());
    }

    #[test]
    fn a_damaged_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &state(), false).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
        std::fs::write(&path, b"FACTLOG\n\0\0\0\x01").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(StorageError::BadHeader { .. })
        ));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&state());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&bytes).is_ok());
    }
}

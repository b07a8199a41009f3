//! One stored string key: its key, value and version in a single shared
//! allocation, the element of [`super::kv::KvStore`]'s ordered set.
//!
//! Why one allocation: a map of separate key and value boxes costs two
//! allocator chunks and a 40-byte tree slot per key: 156.6 bytes for a
//! 13-byte key and a 16-byte value; one chunk behind a 16-byte slot 102.7,
//! behind an 8-byte slot 89.6 (measured, docs/performance.md).
//! Sharing it lets a read, or a snapshot's copy of the whole set, take a
//! reference instead of copying the bytes under the store's lock.
//!
//! The allocation is a `triomphe::ThinArc`: a reference count and no weak
//! count, the version as its header, then the length and the bytes, so
//! the pointer is one word (std's `Arc<[u8]>` is two, and the tree holds
//! one per key). The bytes: key length (u16, little-endian), key, value.
//!
//! A log entry that writes a key holds the record it will store
//! ([`super::kv::KvWrite`]), so the log's retained entries and the store
//! share one copy of each key and value. The entry is made before the log
//! gives it an index, so a record is made *unstamped* and gets its
//! version once, when the entry is applied ([`Versioned::stamped`]); the
//! header is atomic for that one change, made under the store's lock.
//! Keys are at most `u16::MAX` bytes: every format that carries one
//! (protocol v2, the native stream, the log, the snapshot) gives its
//! length in two bytes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use triomphe::ThinArc;

use crate::wire::kv::Version;

/// A key's value and the log index that wrote it, with the key itself.
/// Equality compares all three.
#[derive(Clone)]
pub struct Versioned(ThinArc<AtomicU64, u8>);

/// The header of a record no entry has been applied with yet.
const UNSTAMPED: Version = Version::MAX;

impl Versioned {
    /// The record of `key` holding `value`, written at `version`.
    ///
    /// `key` must be at most `u16::MAX` bytes (see the module's note); a
    /// longer one is a bug of the caller's decoder, not of the input.
    pub fn new(version: Version, key: &[u8], value: &[u8]) -> Self {
        let key_len = u16::try_from(key.len()).expect("string keys fit in a u16 length");
        // Gathered in a buffer and copied once more: triomphe's constructor
        // from an iterator writes byte by byte: 3.1 to 3.7 us a 1 KiB put
        // against 0.28 to 0.37 through the buffer (measured, 2,000,000 puts).
        let mut bytes = Vec::with_capacity(KEY_LEN_BYTES + key.len() + value.len());
        bytes.extend_from_slice(&key_len.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Versioned(ThinArc::from_header_and_slice(
            AtomicU64::new(version),
            &bytes,
        ))
    }

    /// A record for a log entry that has no index yet.
    pub fn unstamped(key: &[u8], value: &[u8]) -> Self {
        Versioned::new(UNSTAMPED, key, value)
    }

    /// Index of the entry that wrote the value ([`Version::MAX`] before
    /// the entry is applied; a stored record always has its index).
    pub fn version(&self) -> Version {
        self.0.header.header.load(AtomicOrdering::Acquire)
    }

    /// This record as written by the entry at `index`: itself, given that
    /// version if it had none, or a copy when it already holds another
    /// (never changed once set: a snapshot or a reader may hold it).
    pub fn stamped(&self, index: Version) -> Versioned {
        let header = &self.0.header.header;
        match header.compare_exchange(
            UNSTAMPED,
            index,
            AtomicOrdering::AcqRel,
            AtomicOrdering::Acquire,
        ) {
            Ok(_) => self.clone(),
            Err(held) if held == index => self.clone(),
            Err(_) => Versioned::new(index, self.key(), self.value()),
        }
    }

    /// True when both are the same allocation (tests check sharing).
    #[cfg(test)]
    pub(crate) fn shares(&self, other: &Versioned) -> bool {
        std::ptr::eq(self.0.slice.as_ptr(), other.0.slice.as_ptr())
    }

    fn key_len(&self) -> usize {
        u16::from_le_bytes([self.0.slice[0], self.0.slice[1]]) as usize
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.0.slice[KEY_LEN_BYTES..KEY_LEN_BYTES + self.key_len()]
    }

    /// The value's bytes.
    pub fn value(&self) -> &[u8] {
        &self.0.slice[KEY_LEN_BYTES + self.key_len()..]
    }
}

const KEY_LEN_BYTES: usize = 2;

impl PartialEq for Versioned {
    fn eq(&self, other: &Self) -> bool {
        self.version() == other.version() && self.0.slice == other.0.slice
    }
}

impl Eq for Versioned {}

impl fmt::Debug for Versioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versioned")
            .field("version", &self.version())
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .finish()
    }
}

/// A record as the store's set orders it: by key alone, so the set finds
/// a record from a key (`Borrow<[u8]>`) and holds one record per key.
#[derive(Clone, Debug)]
pub(super) struct ByKey(pub(super) Versioned);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.key().cmp(other.0.key())
    }
}

impl Borrow<[u8]> for ByKey {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_and_version_come_back() {
        for (key, value) in [
            (&b""[..], &b""[..]),
            (b"k", b""),
            (b"", b"v"),
            (b"key0000000001", b"0123456789abcdef"),
        ] {
            let r = Versioned::new(0x0102_0304_0506_0708, key, value);
            assert_eq!(r.version(), 0x0102_0304_0506_0708);
            assert_eq!((r.key(), r.value()), (key, value));
        }
        let long = vec![7u8; u16::MAX as usize];
        let r = Versioned::new(u64::MAX, &long, b"x");
        assert_eq!(
            (r.key(), r.value(), r.version()),
            (&long[..], &b"x"[..], u64::MAX)
        );
    }

    #[test]
    fn a_record_is_stamped_once_and_copied_for_another_index() {
        let r = Versioned::unstamped(b"k", b"v");
        assert_eq!(r.version(), Version::MAX);
        let stored = r.stamped(7);
        assert!(stored.shares(&r), "the entry's record is the stored one");
        assert_eq!((r.version(), stored.version()), (7, 7));
        assert!(
            r.stamped(7).shares(&r),
            "the same index again: the same record"
        );
        let other = r.stamped(9);
        assert!(!other.shares(&r));
        assert_eq!(
            (other.version(), other.key(), other.value()),
            (9, &b"k"[..], &b"v"[..])
        );
        assert_eq!(r.version(), 7, "a stamped record never changes");
    }

    #[test]
    fn the_set_orders_by_key_only() {
        let a1 = ByKey(Versioned::new(1, b"a", b"one"));
        let a2 = ByKey(Versioned::new(2, b"a", b"two"));
        let b = ByKey(Versioned::new(0, b"b", b""));
        assert_eq!(a1, a2);
        assert!(a1 < b);
        assert_ne!(a1.0, a2.0, "records still differ by value and version");
    }
}

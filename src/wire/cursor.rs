//! Bounded cursors over frame bodies, shared by the native replication
//! frames (`native`) and the election frames (`election`): a writer of
//! big-endian fields, and a reader that checks every length against what is
//! left before it takes a byte. Each codec adds its own composite fields in
//! an `impl` block of its own.

use byteorder::{BigEndian, ByteOrder};

use super::entry::{MemberSet, MAX_MEMBERS};
use super::native::FrameError;

pub(super) struct Writer<'a>(pub(super) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(super) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn members(&mut self, set: &MemberSet) {
        self.0.push(set.len() as u8);
        for &id in set.ids() {
            self.i32(id);
        }
    }
}

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) name: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::BadBody(self.name));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn flag(&mut self) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError::BadBody(self.name)),
        }
    }
    pub(super) fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(BigEndian::read_i32(self.take(4)?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(BigEndian::read_u32(self.take(4)?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(BigEndian::read_u64(self.take(8)?))
    }
    pub(super) fn members(&mut self) -> Result<MemberSet, FrameError> {
        let count = self.u8()?;
        if count as usize > MAX_MEMBERS {
            return Err(FrameError::TooMany("in-sync members", count.into()));
        }
        let mut ids = Vec::with_capacity(count as usize);
        for _ in 0..count {
            ids.push(self.i32()?);
        }
        MemberSet::from_ids(ids).ok_or(FrameError::TooMany("in-sync members", count.into()))
    }
    pub(super) fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::BadBody(self.name))
        }
    }
}

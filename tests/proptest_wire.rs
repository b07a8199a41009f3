//! Property tests of every decoder fed random bytes (issue 5): none panics,
//! none allocates from a length it was sent, and each gives the outcome its
//! documentation promises. 256 cases per property keeps the whole file well
//! under a second; the fuzz targets in `fuzz/` run the same decoders for
//! as long as one likes.

use std::io::Read;

use factory::conn::{read_native, NativeError};
use factory::storage::{DiskLog, FsyncPolicy};
use factory::wire::native::{Body, FrameError, NativeFrame, RejectCode, MAX_FRAME_LEN, NATIVE_TAG};
use factory::wire::{
    CustomerRecord, Entry, Frame, MemberSet, Op, ReplicationAck, ReplicationRequest, RobotInfo,
    RobotOrder, Tag, HANDSHAKE_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any `F::SIZE` bytes are a frame (`wire` docs), and encoding it gives
/// the same bytes back: every field is a plain i32.
fn fixed_frame_round_trips<F: Frame>(bytes: &[u8]) {
    let frame = F::decode(&bytes[..F::SIZE]);
    assert_eq!(frame.to_vec(), &bytes[..F::SIZE]);
}

/// Bytes that often start like a native frame, so that the decoders get
/// past their first checks.
fn native_like() -> impl Strategy<Value = Vec<u8>> {
    (0u8..=10, 0u8..=2, vec(any::<u8>(), 0..300)).prop_map(|(kind, version, mut rest)| {
        let mut out = vec![version, kind];
        out.append(&mut rest);
        out
    })
}

fn member_set() -> impl Strategy<Value = MemberSet> {
    vec(any::<i32>(), 0..=16).prop_map(|ids| MemberSet::from_ids(ids).expect("at most 16"))
}

fn entry() -> impl Strategy<Value = Entry> {
    let op = prop_oneof![
        Just(Op::Noop),
        (any::<i32>(), any::<i32>()).prop_map(|(customer_id, order_number)| Op::Set {
            customer_id,
            order_number
        }),
        member_set().prop_map(Op::InSync),
    ];
    (any::<u64>(), op).prop_map(|(epoch, op)| Entry { epoch, op })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<i32>(), any::<i32>()).prop_map(|(primary_id, commit_index)| Body::Hello {
            primary_id,
            commit_index
        }),
        (any::<i32>(), any::<i32>(), any::<u64>()).prop_map(|(r, l, e)| Body::CatchUp {
            replica_id: r,
            last_index: l,
            last_epoch: e
        }),
        (
            any::<i32>(),
            any::<u64>(),
            any::<i32>(),
            vec(entry(), 0..20)
        )
            .prop_map(
                |(prev_index, prev_epoch, commit_index, entries)| Body::Append {
                    prev_index,
                    prev_epoch,
                    commit_index,
                    entries
                }
            ),
        any::<i32>().prop_map(|commit_index| Body::Heartbeat { commit_index }),
        (any::<i32>(), any::<i32>()).prop_map(|(replica_id, last_index)| Body::Ack {
            replica_id,
            last_index
        }),
        (
            any::<i32>(),
            any::<u64>(),
            member_set(),
            vec(any::<(i32, i32)>(), 0..50),
            any::<bool>()
        )
            .prop_map(|(last_index, last_epoch, in_sync, records, done)| {
                Body::Snapshot {
                    last_index,
                    last_epoch,
                    in_sync,
                    records,
                    kv: Vec::new(),
                    done,
                }
            }),
        any::<i32>().prop_map(|candidate_id| Body::Probe { candidate_id }),
        (
            any::<i32>(),
            any::<i32>(),
            any::<u64>(),
            any::<bool>(),
            member_set(),
            any::<i32>()
        )
            .prop_map(
                |(replica_id, last_index, last_epoch, trusted, in_sync, primary_id)| {
                    Body::ProbeReply {
                        replica_id,
                        last_index,
                        last_epoch,
                        trusted,
                        in_sync,
                        primary_id,
                    }
                }
            ),
        (
            1u8..=5,
            vec(any::<char>(), 0..40).prop_map(String::from_iter)
        )
            .prop_map(|(code, reason)| Body::Reject {
                code: match code {
                    1 => RejectCode::StaleEpoch,
                    2 => RejectCode::HasPrimary,
                    3 => RejectCode::LogMismatch,
                    4 => RejectCode::Protocol,
                    _ => RejectCode::Storage,
                },
                reason
            }),
    ]
}

/// A reader that counts the bytes taken from it, to show that a refused
/// length is refused before its body is read.
struct Counting<'a> {
    bytes: &'a [u8],
    taken: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (&self.bytes[self.taken..]).read(buf)?;
        self.taken += n;
        Ok(n)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn v1_frames_decode_any_bytes_and_round_trip(bytes in vec(any::<u8>(), 24)) {
        fixed_frame_round_trips::<RobotOrder>(&bytes);
        fixed_frame_round_trips::<RobotInfo>(&bytes);
        fixed_frame_round_trips::<CustomerRecord>(&bytes);
        fixed_frame_round_trips::<ReplicationRequest>(&bytes);
        fixed_frame_round_trips::<ReplicationAck>(&bytes);
    }

    #[test]
    fn tags_are_recognised_by_the_original_prefixes(
        bytes in prop_oneof![
            vec(any::<u8>(), HANDSHAKE_LEN),
            vec(any::<u8>(), 5).prop_map(|t| [b"PFA".to_vec(), t].concat()),
            vec(any::<u8>(), 2).prop_map(|t| [b"CLIENT".to_vec(), t].concat()),
            Just(NATIVE_TAG.to_vec()),
        ]
    ) {
        let raw: [u8; HANDSHAKE_LEN] = bytes.clone().try_into().unwrap();
        let expected = if raw == NATIVE_TAG {
            Some(Tag::Native)
        } else if raw.starts_with(b"PFA") {
            Some(Tag::Pfa)
        } else if raw.starts_with(b"CLIENT") {
            Some(Tag::Client)
        } else {
            None
        };
        prop_assert_eq!(Tag::decode(&raw), expected);
    }

    #[test]
    fn entries_decode_or_fail_cleanly(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..120),
            // An in-sync entry, the kind with a count: duplicates and
            // counts over the bound included.
            (any::<u64>(), 0u8..20, vec(0u8..3, 0..90)).prop_map(|(epoch, count, ids)| {
                let mut out = epoch.to_be_bytes().to_vec();
                out.extend([2, count]);
                out.extend(ids.iter().flat_map(|&i| i32::from(i).to_be_bytes()));
                out
            }),
        ]
    ) {
        if let Ok((entry, used)) = Entry::decode(&bytes) {
            prop_assert!(used <= bytes.len());
            // Duplicate ids collapse, so the encoding may be shorter.
            prop_assert!(entry.encoded_len() <= used);
            let mut again = Vec::new();
            entry.encode(&mut again);
            prop_assert_eq!(Entry::decode(&again), Ok((entry, again.len())));
        }
    }

    #[test]
    fn entries_round_trip(entry in entry()) {
        let mut bytes = Vec::new();
        entry.encode(&mut bytes);
        prop_assert_eq!(Entry::decode(&bytes), Ok((entry, bytes.len())));
    }

    #[test]
    fn native_frames_decode_or_fail_cleanly(
        bytes in prop_oneof![vec(any::<u8>(), 0..300), native_like()]
    ) {
        // Decoding is a pure function of the bytes; a frame it accepts
        // encodes to a frame that decodes to the same value.
        if let Ok(frame) = NativeFrame::decode(&bytes) {
            let mut again = Vec::new();
            frame.encode(&mut again);
            prop_assert_eq!(NativeFrame::decode(&again[4..]), Ok(frame));
        }
    }

    #[test]
    fn native_frames_round_trip(epoch in any::<u64>(), body in body()) {
        let frame = NativeFrame::new(epoch, body);
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        prop_assert_eq!(bytes.len() - 4, u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize);
        prop_assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
    }

    #[test]
    fn a_native_stream_of_random_bytes_never_reads_past_a_refused_length(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..64),
            (any::<u32>(), vec(any::<u8>(), 0..64))
                .prop_map(|(len, rest)| [len.to_be_bytes().to_vec(), rest].concat()),
        ]
    ) {
        let mut reader = Counting { bytes: &bytes, taken: 0 };
        let mut scratch = Vec::new();
        // Bounded: every frame read takes at least 4 bytes or ends.
        for _ in 0..bytes.len() + 1 {
            match read_native(&mut reader, &mut scratch) {
                Ok(_) => continue,
                Err(NativeError::Frame(FrameError::BadLength(len))) => {
                    prop_assert!(len < 10 || len as usize > MAX_FRAME_LEN);
                    break;
                }
                Err(_) => break,
            }
        }
        prop_assert!(scratch.capacity() <= bytes.len().max(64), "allocated {}", scratch.capacity());
        prop_assert!(reader.taken <= bytes.len());
    }

    #[test]
    fn a_durable_log_of_random_bytes_opens_or_is_refused(
        random in vec(any::<u8>(), 0..400),
        records in vec((1u8..=5, vec(any::<u8>(), 0..24)), 0..8),
        with_header in any::<bool>(),
    ) {
        // Records with a correct length and CRC around random payloads get
        // through to the payload decoder; random bytes after them do not.
        let mut body = Vec::new();
        for (kind, rest) in records {
            let payload = [vec![kind], rest].concat();
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            body.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            body.extend_from_slice(&payload);
        }
        body.extend_from_slice(&random);
        // The storage decoders have one public entry point: opening a
        // directory. A header that checks out makes the records after it
        // (random here) go through the record decoder.
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(b"FACTLOG\n");
            bytes.extend_from_slice(&1u32.to_be_bytes());
            bytes.extend_from_slice(&0u64.to_be_bytes());
        }
        bytes.extend_from_slice(&body);
        std::fs::write(dir.path().join("log"), &bytes).unwrap();
        if let Ok((log, recovered)) = DiskLog::open(dir.path(), FsyncPolicy::Never) {
            // Every record is at least 9 bytes: nothing was made up.
            prop_assert!(recovered.entries.len() <= body.len() / 9);
            prop_assert!(recovered.committed_index < recovered.first_index + recovered.entries.len() as i32);
            prop_assert!(log.entry_count() <= body.len());
        }
    }
}

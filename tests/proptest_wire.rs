//! Property tests of every decoder fed random bytes (issue 5): none panics,
//! none allocates from a length it was sent, and each gives the outcome its
//! documentation promises. 256 cases per property keeps the whole file well
//! under a second; the fuzz targets in `fuzz/` run the same decoders for
//! as long as one likes.

use std::cell::Cell;
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
use proptest::test_runner::{FileFailurePersistence, TestRunner};

/// A failing case is saved here (the CI prints the directory on failure)
/// and replayed first by the next run.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/proptest_wire.txt"
);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
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
        member_set().prop_map(|s| Op::InSync(Box::new(s))),
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
        any::<i32>().prop_map(|replica_id| Body::ReadIndex { replica_id }),
        any::<i32>().prop_map(|commit_index| Body::ReadIndexReply { commit_index }),
    ]
}

/// A reader over `bytes` (followed, if `endless`, by zeros without end)
/// that counts the bytes taken from it, so a test can tell exactly where
/// a decoder stopped reading, even when more bytes were there to take.
struct Counting<'a> {
    bytes: &'a [u8],
    taken: usize,
    endless: bool,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if self.taken < self.bytes.len() {
            (&self.bytes[self.taken..]).read(buf)?
        } else if self.endless {
            buf.fill(0);
            buf.len()
        } else {
            0
        };
        self.taken += n;
        Ok(n)
    }
}

/// Length prefixes that land in each of the ranges `read_native` treats
/// differently, the bounds themselves included: below the header, short
/// accepted lengths whose bodies are present, long accepted ones, and over
/// the bound.
fn length_prefix() -> impl Strategy<Value = u32> {
    let max = MAX_FRAME_LEN as u32;
    prop_oneof![
        2 => 0u32..10,
        4 => 10u32..=60,
        2 => 61..=max,
        1 => Just(max),
        1 => Just(max + 1),
        2 => max + 1..=u32::MAX,
    ]
}

/// A stream for `read_native`: well-formed frames, then a length prefix
/// from [`length_prefix`] and bytes after it.
fn native_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        vec((any::<u64>(), body()), 0..3),
        length_prefix(),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(frames, len, rest)| {
            let mut out = Vec::new();
            for (epoch, body) in frames {
                NativeFrame::new(epoch, body).encode(&mut out);
            }
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&rest);
            out
        })
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
        (bytes, sent) in prop_oneof![
            vec(any::<u8>(), 0..300).prop_map(|b| (b, None)),
            native_like().prop_map(|b| (b, None)),
            // Encoded frames, whole or with one byte changed, so that the
            // accepting branch below runs in a good share of the cases.
            (any::<u64>(), body(), any::<(usize, u8)>()).prop_map(|(epoch, body, (at, flip))| {
                let frame = NativeFrame::new(epoch, body);
                let mut bytes = Vec::new();
                frame.encode(&mut bytes);
                bytes.drain(..4);
                if flip % 2 == 0 {
                    (bytes, Some(frame))
                } else {
                    let i = at % bytes.len();
                    bytes[i] ^= flip;
                    (bytes, None)
                }
            }),
        ]
    ) {
        let decoded = NativeFrame::decode(&bytes);
        if let Some(frame) = sent {
            prop_assert_eq!(&decoded, &Ok(frame));
        }
        // Decoding is a pure function of the bytes; a frame it accepts
        // encodes to a frame that decodes to the same value.
        if let Ok(frame) = decoded {
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
        bytes in prop_oneof![vec(any::<u8>(), 0..64), native_stream()],
        endless in any::<bool>(),
    ) {
        let mut reader = Counting { bytes: &bytes, taken: 0, endless };
        let mut scratch = Vec::new();
        // Bounded: every frame read takes at least 4 bytes or ends.
        for _ in 0..bytes.len() + 2 {
            let start = reader.taken;
            let result = read_native(&mut reader, &mut scratch);
            // The prefix this read began with, from the stream itself.
            let at = |i: usize| if start + i < bytes.len() { bytes[start + i] } else { 0 };
            let declared = u32::from_be_bytes([at(0), at(1), at(2), at(3)]) as usize;
            let accepted = (10..=MAX_FRAME_LEN).contains(&declared);
            match result {
                Err(NativeError::Frame(FrameError::BadLength(len))) if reader.taken == start + 4 => {
                    // Refused from the prefix alone: not one body byte taken.
                    prop_assert_eq!(len as usize, declared);
                    prop_assert!(!accepted, "length {} refused", len);
                    break;
                }
                Err(NativeError::Frame(_)) | Ok(_) => {
                    // An accepted length: exactly that many bytes taken.
                    prop_assert!(accepted, "length {} read, {} bytes taken", declared, reader.taken - start);
                    prop_assert_eq!(reader.taken - start, 4 + declared);
                    if result.is_err() {
                        break;
                    }
                }
                Err(NativeError::Conn(_)) => {
                    // The stream ended first, with the prefix or inside an
                    // accepted body: all of it was taken, nothing more.
                    prop_assert!(!endless);
                    prop_assert_eq!(reader.taken, bytes.len());
                    prop_assert!(reader.taken < start + 4 || accepted);
                    break;
                }
            }
        }
        // Memory follows the bytes that came, never a length that was sent.
        prop_assert!(
            scratch.capacity() <= 2 * reader.taken + 4096,
            "allocated {} for {} bytes",
            scratch.capacity(),
            reader.taken
        );
    }
}

// --- the durable log -------------------------------------------------------

/// The log file's header, as the `storage` module docs lay it out.
fn log_header() -> Vec<u8> {
    [
        b"FACTLOG\n".as_slice(),
        &1u32.to_be_bytes(),
        &0u64.to_be_bytes(),
    ]
    .concat()
}

/// Appends one log record (length, CRC, payload), written from the
/// `storage` module docs rather than with the code under test.
fn log_record(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let payload = [&[kind], body].concat();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

/// One step of a well-formed log.
#[derive(Clone, Debug)]
enum LogOp {
    /// The next entry.
    Append(Entry),
    /// Drop this many entries from the end.
    Truncate(u8),
    Epoch(u64),
    /// Commit up to this many entries before the last one.
    Commit(u8),
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        4 => entry().prop_map(LogOp::Append),
        1 => (0u8..4).prop_map(LogOp::Truncate),
        1 => any::<u64>().prop_map(LogOp::Epoch),
        2 => (0u8..4).prop_map(LogOp::Commit),
    ]
}

/// What opening a well-formed log must recover: the entries left after
/// truncations, the highest epoch, the highest commit point (never past
/// the last entry).
#[derive(Clone, Debug, Default)]
struct LogModel {
    entries: Vec<Entry>,
    epoch: u64,
    committed: i32,
}

/// Encodes `ops` as records and works out what opening them must give.
fn well_formed_records(ops: &[LogOp]) -> (Vec<u8>, LogModel) {
    let mut out = Vec::new();
    let mut m = LogModel {
        committed: -1,
        ..LogModel::default()
    };
    for op in ops {
        let last = m.entries.len() as i32 - 1;
        match op {
            LogOp::Append(e) => {
                let mut body = (last + 1).to_be_bytes().to_vec();
                e.encode(&mut body);
                log_record(1, &body, &mut out);
                m.entries.push(e.clone());
            }
            LogOp::Truncate(n) => {
                let from = m.entries.len().saturating_sub(usize::from(*n));
                log_record(2, &(from as i32).to_be_bytes(), &mut out);
                m.entries.truncate(from);
                m.committed = m.committed.min(from as i32 - 1);
            }
            LogOp::Epoch(e) => {
                log_record(3, &e.to_be_bytes(), &mut out);
                m.epoch = m.epoch.max(*e);
            }
            LogOp::Commit(n) => {
                let index = last - i32::from(*n);
                log_record(4, &index.to_be_bytes(), &mut out);
                m.committed = m.committed.max(index);
            }
        }
    }
    (out, m)
}

/// A log file to open: random records and bytes, or a well-formed log
/// (possibly ending in a torn record) and what it must open as.
#[derive(Clone, Debug)]
struct LogInput {
    file: Vec<u8>,
    /// Bytes after the header.
    body_len: usize,
    expected: Option<(LogModel, bool)>,
}

fn random_log() -> impl Strategy<Value = LogInput> {
    (
        vec(any::<u8>(), 0..400),
        vec((1u8..=5, vec(any::<u8>(), 0..24)), 0..8),
        any::<bool>(),
    )
        .prop_map(|(random, records, with_header)| {
            // Records with a correct length and CRC around random payloads
            // get through to the payload decoder; random bytes after them
            // do not.
            let mut body = Vec::new();
            for (kind, rest) in records {
                log_record(kind, &rest, &mut body);
            }
            body.extend_from_slice(&random);
            let header = if with_header {
                log_header()
            } else {
                Vec::new()
            };
            LogInput {
                body_len: body.len(),
                file: [header, body].concat(),
                expected: None,
            }
        })
}

fn well_formed_log() -> impl Strategy<Value = LogInput> {
    (vec(log_op(), 0..20), any::<u64>(), 0usize..17).prop_map(|(ops, epoch, torn)| {
        let (mut body, model) = well_formed_records(&ops);
        // A crash in the middle of writing one more (epoch) record.
        let mut last = Vec::new();
        log_record(3, &epoch.to_be_bytes(), &mut last);
        body.extend_from_slice(&last[..torn]);
        LogInput {
            body_len: body.len(),
            file: [log_header(), body].concat(),
            expected: Some((model, torn > 0)),
        }
    })
}

/// Opens `input` as a data directory and checks the outcome; counts the
/// logs that opened in `opened`.
fn check_durable_log(input: &LogInput, opened: &Cell<u32>) -> Result<(), TestCaseError> {
    // The storage decoders have one public entry point: opening a
    // directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log"), &input.file).unwrap();
    let result = DiskLog::open(dir.path(), FsyncPolicy::Never);
    if let Some((model, torn)) = &input.expected {
        let (log, recovered) = match &result {
            Ok(ok) => ok,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "a well-formed log is refused: {e}"
                )))
            }
        };
        prop_assert_eq!(&recovered.entries, &model.entries);
        prop_assert_eq!(recovered.epoch, model.epoch);
        prop_assert_eq!(recovered.committed_index, model.committed);
        prop_assert_eq!(recovered.truncated_tail.is_some(), *torn);
        prop_assert_eq!(log.entry_count(), model.entries.len());
    }
    if let Ok((log, recovered)) = result {
        opened.set(opened.get() + 1);
        // Every record is at least 9 bytes: nothing was made up.
        prop_assert!(recovered.entries.len() <= input.body_len / 9);
        prop_assert!(
            recovered.committed_index < recovered.first_index + recovered.entries.len() as i32
        );
        prop_assert!(log.entry_count() <= input.body_len);
    }
    Ok(())
}

#[test]
fn a_durable_log_of_random_bytes_opens_or_is_refused() {
    let opened = Cell::new(0);
    let mut runner = TestRunner::new(config());
    let inputs = prop_oneof![random_log(), well_formed_log()];
    if let Err(e) = runner.run(&inputs, |input| check_durable_log(&input, &opened)) {
        panic!("{e}");
    }
    // The checks on an opened log ran for a real share of the cases, not
    // only for the few random files that happen to open.
    let cases = config().cases;
    assert!(
        opened.get() >= cases / 3,
        "only {} of {cases} logs opened",
        opened.get()
    );
}

//! Golden bytes and round trips for the native replication frames.

use super::native::*;
use super::testing::hex;
use super::{Entry, MemberSet, Op};

fn encode(frame: &NativeFrame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

fn round_trip(frame: NativeFrame) {
    let bytes = encode(&frame);
    let len = check_length(bytes[..4].try_into().unwrap()).unwrap();
    assert_eq!(len, bytes.len() - 4);
    assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
    // Every strict prefix of the body is refused, never a panic.
    for cut in 4..bytes.len() - 1 {
        assert!(NativeFrame::decode(&bytes[4..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn tag_starts_with_neither_v1_prefix() {
    assert_eq!(NATIVE_TAG.to_vec(), hex("46 52 45 50 00 00 00 01"));
    assert!(!NATIVE_TAG.starts_with(b"PFA") && !NATIVE_TAG.starts_with(b"CLIENT"));
}

#[test]
fn golden_hello() {
    let f = NativeFrame::new(
        0x0001_0000,
        Body::Hello {
            primary_id: 0,
            commit_index: -1,
        },
    );
    assert_eq!(
        encode(&f),
        hex("00 00 00 12 01 01 00 00 00 00 00 01 00 00 00 00 00 00 ff ff ff ff")
    );
}

#[test]
fn golden_catch_up() {
    let f = NativeFrame::new(
        2,
        Body::CatchUp {
            replica_id: 1,
            last_index: 5,
            last_epoch: 2,
        },
    );
    assert_eq!(
        encode(&f),
        hex("00 00 00 1a 01 02 00 00 00 00 00 00 00 02 \
             00 00 00 01 00 00 00 05 00 00 00 00 00 00 00 02")
    );
}

#[test]
fn golden_append_with_one_entry() {
    let f = NativeFrame::new(
        2,
        Body::Append {
            prev_index: 4,
            prev_epoch: 2,
            commit_index: 4,
            entries: vec![Entry::set(2, 7, 42)],
        },
    );
    assert_eq!(
        encode(&f),
        hex("00 00 00 2f 01 03 00 00 00 00 00 00 00 02 \
             00 00 00 04 00 00 00 00 00 00 00 02 00 00 00 04 00 00 00 01 \
             00 00 00 00 00 00 00 02 01 00 00 00 07 00 00 00 2a")
    );
}

#[test]
fn golden_heartbeat_ack_probe() {
    let hb = NativeFrame::new(3, Body::Heartbeat { commit_index: 9 });
    assert_eq!(
        encode(&hb),
        hex("00 00 00 0e 01 04 00 00 00 00 00 00 00 03 00 00 00 09")
    );
    let ack = NativeFrame::new(
        3,
        Body::Ack {
            replica_id: 2,
            last_index: 9,
        },
    );
    assert_eq!(
        encode(&ack),
        hex("00 00 00 12 01 05 00 00 00 00 00 00 00 03 00 00 00 02 00 00 00 09")
    );
    let probe = NativeFrame::new(0x0002_0001, Body::Probe { candidate_id: 1 });
    assert_eq!(
        encode(&probe),
        hex("00 00 00 0e 01 07 00 00 00 00 00 02 00 01 00 00 00 01")
    );
}

#[test]
fn golden_snapshot_chunk() {
    let f = NativeFrame::new(
        1,
        Body::Snapshot {
            last_index: 3,
            last_epoch: 1,
            in_sync: MemberSet::from_ids([0, 1]).unwrap(),
            records: vec![(7, 42)],
            kv: vec![],
            done: true,
        },
    );
    assert_eq!(
        encode(&f),
        hex("00 00 00 2c 01 06 00 00 00 00 00 00 00 01 \
             00 00 00 03 00 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 01 01 \
             00 00 00 01 00 00 00 07 00 00 00 2a")
    );
}

#[test]
fn golden_reject() {
    let f = NativeFrame::new(
        5,
        Body::Reject {
            code: RejectCode::StaleEpoch,
            reason: "old".into(),
        },
    );
    assert_eq!(
        encode(&f),
        hex("00 00 00 12 01 09 00 00 00 00 00 00 00 05 01 00 00 00 03 6f 6c 64")
    );
}

#[test]
fn every_kind_round_trips() {
    let set = MemberSet::from_ids([0, 1, 2]).unwrap();
    let bodies = vec![
        Body::Hello {
            primary_id: i32::MAX,
            commit_index: i32::MIN,
        },
        Body::CatchUp {
            replica_id: -1,
            last_index: -1,
            last_epoch: 0,
        },
        Body::Append {
            prev_index: -1,
            prev_epoch: 0,
            commit_index: -1,
            entries: vec![
                Entry::set(1, -5, i32::MIN),
                Entry {
                    epoch: 1,
                    op: Op::Noop,
                },
                Entry {
                    epoch: 1,
                    op: Op::InSync(Box::new(set)),
                },
            ],
        },
        Body::Append {
            prev_index: 3,
            prev_epoch: 1,
            commit_index: 3,
            entries: vec![],
        },
        Body::Heartbeat { commit_index: 77 },
        Body::Ack {
            replica_id: 4,
            last_index: 1000,
        },
        Body::Snapshot {
            last_index: -1,
            last_epoch: 0,
            in_sync: MemberSet::new(),
            records: vec![],
            kv: vec![],
            done: false,
        },
        Body::Probe { candidate_id: 3 },
        Body::ProbeReply {
            replica_id: 1,
            last_index: 10,
            last_epoch: 7,
            trusted: true,
            in_sync: set,
            primary_id: -1,
        },
        Body::Reject {
            code: RejectCode::HasPrimary,
            reason: "primary 2".into(),
        },
        Body::ReadIndex { replica_id: 2 },
        Body::ReadIndexReply { commit_index: -1 },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        round_trip(NativeFrame::new(u64::MAX - i as u64, body));
    }
}

#[test]
fn lengths_are_bounded_before_reading() {
    assert_eq!(check_length([0, 0, 0, 9]), Err(FrameError::BadLength(9)));
    assert_eq!(
        check_length([0xff; 4]),
        Err(FrameError::BadLength(u32::MAX))
    );
    assert_eq!(
        check_length([0, 0x20, 0, 1]),
        Err(FrameError::BadLength(0x0020_0001))
    );
    assert_eq!(check_length([0, 0x20, 0, 0]), Ok(MAX_FRAME_LEN));
}

fn big_write(value_len: usize) -> Entry {
    Entry::kv(
        1,
        crate::state::kv::KvWrite::put(&vec![7; crate::wire::kv::KEY_CEILING], &vec![9; value_len]),
    )
}

#[test]
fn an_append_of_the_largest_entry_fits_a_frame() {
    let entry = big_write(crate::wire::MAX_VALUE_LEN);
    let frame = NativeFrame::new(
        1,
        Body::Append {
            prev_index: 0,
            prev_epoch: 1,
            commit_index: 0,
            entries: vec![entry],
        },
    );
    let bytes = encode(&frame);
    let len = check_length(bytes[..4].try_into().unwrap()).unwrap();
    assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
    assert!(len <= MAX_FRAME_LEN);
}

#[test]
fn batches_stop_before_the_byte_bound() {
    // Each about half a MiB: three do not fit in one frame, two do.
    let half = big_write(500_000);
    let entries = vec![half.clone(), half.clone(), half.clone(), half];
    let n = batch_len(&entries);
    assert_eq!(n, 3);
    let bytes: usize = entries[..n].iter().map(Entry::encoded_len).sum();
    assert!(bytes <= MAX_APPEND_BYTES);
    assert!(bytes + entries[n].encoded_len() > MAX_APPEND_BYTES);
    // Sets are bounded by count alone; an empty log gives an empty batch.
    let sets = vec![Entry::set(1, 2, 3); MAX_BATCH_ENTRIES + 5];
    assert_eq!(batch_len(&sets), MAX_BATCH_ENTRIES);
    assert_eq!(batch_len(&sets[..3]), 3);
    assert_eq!(batch_len(&[]), 0);
    // One entry always goes, so a batch always progresses.
    let largest = vec![big_write(crate::wire::MAX_VALUE_LEN); 2];
    assert_eq!(batch_len(&largest), 1);
}

#[test]
fn bad_frames_are_errors() {
    let mut bytes = encode(&NativeFrame::new(1, Body::Heartbeat { commit_index: 1 }));
    bytes[4] = 9;
    assert_eq!(
        NativeFrame::decode(&bytes[4..]),
        Err(FrameError::Version(9))
    );
    bytes[4] = NATIVE_VERSION;
    bytes[5] = 200;
    assert_eq!(
        NativeFrame::decode(&bytes[4..]),
        Err(FrameError::UnknownKind(200))
    );
    // Trailing bytes after a complete body.
    let mut long = encode(&NativeFrame::new(1, Body::Heartbeat { commit_index: 1 }));
    long.push(0);
    assert!(NativeFrame::decode(&long[4..]).is_err());
    // An append claiming more entries than the bound, or than its bytes hold.
    let huge = hex(
        "01 03 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 \
                    00 00 00 00 00 00 ff ff",
    );
    assert_eq!(
        NativeFrame::decode(&huge),
        Err(FrameError::TooMany("entries", 0xffff))
    );
    let few = hex(
        "01 03 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 \
                   00 00 00 00 00 00 00 05",
    );
    assert_eq!(
        NativeFrame::decode(&few),
        Err(FrameError::BadBody("append"))
    );
    // A flag byte other than 0 or 1.
    let mut probe_reply = encode(&NativeFrame::new(
        1,
        Body::ProbeReply {
            replica_id: 1,
            last_index: 1,
            last_epoch: 1,
            trusted: false,
            in_sync: MemberSet::new(),
            primary_id: -1,
        },
    ));
    probe_reply[4 + 10 + 16] = 2;
    assert!(NativeFrame::decode(&probe_reply[4..]).is_err());
}

#[test]
fn long_reject_reasons_are_cut_on_a_char_boundary() {
    let reason = "é".repeat(MAX_REASON_LEN);
    let bytes = encode(&NativeFrame::new(
        1,
        Body::Reject {
            code: RejectCode::Protocol,
            reason,
        },
    ));
    let Ok(NativeFrame {
        body: Body::Reject { reason, .. },
        ..
    }) = NativeFrame::decode(&bytes[4..])
    else {
        panic!("reject decodes");
    };
    assert!(reason.len() <= MAX_REASON_LEN && reason.chars().all(|c| c == 'é'));
}

#[test]
fn a_reject_reason_that_is_not_utf8_is_refused() {
    // The fuzz finding: code 1, a 2-byte reason 0xff 0x6f. Decoded lossily it
    // became "\u{fffd}o" (4 bytes) and did not round-trip.
    let bytes = hex("01 09 00 00 00 00 00 00 00 05 01 00 00 00 02 ff 6f");
    assert_eq!(
        NativeFrame::decode(&bytes),
        Err(FrameError::BadBody("reject"))
    );
    // A reason cut inside a multi-byte character, too.
    let cut = hex("01 09 00 00 00 00 00 00 00 05 01 00 00 00 01 c3");
    assert_eq!(
        NativeFrame::decode(&cut),
        Err(FrameError::BadBody("reject"))
    );
    // The same frame with valid text decodes and round-trips.
    let good = hex("01 09 00 00 00 00 00 00 00 05 01 00 00 00 02 c3 a9");
    let frame = NativeFrame::decode(&good).unwrap();
    assert_eq!(encode(&frame)[4..], good[..]);
}

#[test]
fn read_index_frames_are_the_documented_bytes() {
    let mut out = Vec::new();
    NativeFrame::new(2 << 16, Body::ReadIndex { replica_id: 1 }).encode(&mut out);
    assert_eq!(
        out,
        hex("00 00 00 0e 01 0a 00 00 00 00 00 02 00 00 00 00 00 01")
    );
    out.clear();
    NativeFrame::new(2 << 16, Body::ReadIndexReply { commit_index: 41 }).encode(&mut out);
    assert_eq!(
        out,
        hex("00 00 00 0e 01 0b 00 00 00 00 00 02 00 00 00 00 00 29")
    );
}

fn item(key: &str, value_len: usize) -> crate::wire::kv::KvItem {
    crate::wire::kv::KvItem {
        key: key.as_bytes().to_vec(),
        version: 5,
        value: vec![3; value_len],
    }
}

#[test]
fn snapshot_chunks_carry_string_keys_after_the_records() {
    let body = Body::Snapshot {
        last_index: 3,
        last_epoch: 1,
        in_sync: MemberSet::from_ids([0]).unwrap(),
        records: vec![(7, 42)],
        kv: vec![item("k", 2), item("", 0)],
        done: false,
    };
    let bytes = encode(&NativeFrame::new(1, body.clone()));
    // Records as before, then count 2, then key "k" version 5 value 03 03.
    let tail = hex(
        "00 00 00 07 00 00 00 2a  00 00 00 02  00 01 6b 00 00 00 00 00 00 00 05 \
         00 00 00 02 03 03  00 00 00 00 00 00 00 00 00 05 00 00 00 00",
    );
    assert!(bytes.ends_with(&tail), "{bytes:02x?}");
    // Not `round_trip`: the string section is optional (so that a chunk
    // without keys is what older builds send), so the prefix that ends
    // with the records is itself a frame; the length prefix delimits it.
    assert_eq!(
        NativeFrame::decode(&bytes[4..]),
        Ok(NativeFrame::new(1, body))
    );
    for cut in bytes.len() - tail.len() + 9..bytes.len() - 1 {
        assert!(NativeFrame::decode(&bytes[4..cut]).is_err(), "cut at {cut}");
    }
    // A value over the bound, or a count the bytes cannot hold, is refused.
    let mut over = bytes.clone();
    let at = over.len() - 4;
    over[at..].copy_from_slice(&(crate::wire::MAX_VALUE_LEN as u32 + 1).to_be_bytes());
    assert!(NativeFrame::decode(&over[4..]).is_err());
    let mut count = bytes;
    let at = count.len() - tail.len() + 8;
    count[at..at + 4].copy_from_slice(&[0, 0, 0, 200]);
    assert!(NativeFrame::decode(&count[4..]).is_err());
}

#[test]
fn snapshot_chunks_stop_before_the_byte_bound() {
    let items = vec![item("a", 400_000), item("b", 400_000), item("c", 400_000)];
    assert_eq!(chunk_len(&items), 2);
    let big = vec![item("a", crate::wire::MAX_VALUE_LEN), item("b", 1)];
    assert_eq!(chunk_len(&big), 1, "a large key goes alone");
    assert_eq!(chunk_len(&[]), 0);
    let frame = NativeFrame::new(
        1,
        Body::Snapshot {
            last_index: 3,
            last_epoch: 1,
            in_sync: MemberSet::new(),
            records: vec![(1, 1); MAX_CHUNK_RECORDS],
            kv: big[..1].to_vec(),
            done: true,
        },
    );
    let bytes = encode(&frame);
    assert!(bytes.len() - 4 <= MAX_FRAME_LEN);
    assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
}

//! Property tests of string writes in the log: random writes (binary keys
//! and values, empty ones included) round-trip through the entry encoding
//! and through native appends and snapshot chunks, byte for byte; random
//! bytes after a string-write kind never panic the decoder and are
//! accepted only when they re-encode to themselves.

use factory::state::kv::KvWrite;
use factory::wire::kv::KvItem;
use factory::wire::native::{Body, NativeFrame};
use factory::wire::{Entry, MemberSet};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptest_entry_kv.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn write() -> impl Strategy<Value = KvWrite> {
    let k = || bytes(40);
    let v = || bytes(300);
    prop_oneof![
        (k(), v()).prop_map(|(key, value)| KvWrite::put(&key, &value)),
        (k(), v()).prop_map(|(key, value)| KvWrite::create(&key, &value)),
        (k(), v()).prop_map(|(key, value)| KvWrite::update(&key, &value)),
        k().prop_map(|key| KvWrite::delete(&key)),
        (k(), any::<u64>(), v())
            .prop_map(|(key, expected, value)| KvWrite::cas(&key, expected, &value)),
    ]
}

fn encoded(frame: &NativeFrame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn string_write_entries_round_trip(epoch in any::<u64>(), w in write()) {
        let e = Entry::kv(epoch, w);
        let mut buf = Vec::new();
        e.encode(&mut buf);
        prop_assert_eq!(buf.len(), e.encoded_len());
        prop_assert_eq!(Entry::decode(&buf), Ok((e.clone(), buf.len())));
        for cut in 0..buf.len() {
            prop_assert!(Entry::decode(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn appends_of_string_writes_round_trip(
        writes in vec(write(), 1..20),
        sets in vec((any::<i32>(), any::<i32>()), 0..5),
    ) {
        let mut entries: Vec<Entry> = writes.into_iter().map(|w| Entry::kv(3, w)).collect();
        entries.extend(sets.into_iter().map(|(c, o)| Entry::set(3, c, o)));
        let frame = NativeFrame::new(3, Body::Append {
            prev_index: 9,
            prev_epoch: 2,
            commit_index: 9,
            entries,
        });
        let bytes = encoded(&frame);
        prop_assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
    }

    #[test]
    fn snapshot_chunks_with_string_keys_round_trip(
        items in vec((bytes(40), any::<u64>(), bytes(300)), 1..20),
        records in vec((any::<i32>(), any::<i32>()), 0..5),
    ) {
        let kv = items
            .into_iter()
            .map(|(key, version, value)| KvItem { key, version, value })
            .collect();
        let frame = NativeFrame::new(1, Body::Snapshot {
            last_index: 4,
            last_epoch: 1,
            in_sync: MemberSet::new(),
            records,
            kv,
            done: true,
        });
        let bytes = encoded(&frame);
        prop_assert_eq!(NativeFrame::decode(&bytes[4..]), Ok(frame));
    }

    #[test]
    fn random_string_write_bodies_never_panic(body in bytes(64)) {
        let mut buf = vec![0, 0, 0, 0, 0, 0, 0, 1, 3];
        buf.extend_from_slice(&body);
        if let Ok((e, used)) = Entry::decode(&buf) {
            let mut again = Vec::new();
            e.encode(&mut again);
            prop_assert_eq!(&again[..], &buf[..used]);
        }
    }
}

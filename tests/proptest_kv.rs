//! Property tests of the v2 codec (`wire::kv`) and the string store
//! (`state::kv`): random requests round-trip byte for byte, random bytes
//! never panic the decoders and are accepted only when they re-encode to
//! themselves, and the store's outcomes follow a model written out here
//! apart from the code.

use std::collections::BTreeMap;

use factory::state::kv::{KvOutcome, KvStore, KvWrite};
use factory::wire::kv::{KvLimits, KvOp, KvRequest, KvResponse, NO_VERSION};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptest_kv.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Small limits, so that sizes at and one over them come up often.
const LIMITS: KvLimits = KvLimits {
    max_key: 8,
    max_value: 16,
};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn op() -> impl Strategy<Value = KvOp> {
    let k = || bytes(LIMITS.max_key);
    let v = || bytes(LIMITS.max_value);
    prop_oneof![
        k().prop_map(|key| KvOp::Get { key }),
        (k(), v()).prop_map(|(key, value)| KvOp::Put { key, value }),
        (k(), v()).prop_map(|(key, value)| KvOp::Create { key, value }),
        (k(), v()).prop_map(|(key, value)| KvOp::Update { key, value }),
        k().prop_map(|key| KvOp::Delete { key }),
        (k(), any::<u64>(), v()).prop_map(|(key, expected, value)| KvOp::Cas {
            key,
            expected,
            value
        }),
        (k(), 1u32..=1000).prop_map(|(start, limit)| KvOp::Scan { start, limit }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn requests_round_trip(id in any::<u64>(), op in op()) {
        let request = KvRequest { id, op };
        let mut out = Vec::new();
        request.encode(&mut out);
        let len = LIMITS.check_length(out[..4].try_into().unwrap()).unwrap();
        prop_assert_eq!(len, out.len() - 4);
        prop_assert_eq!(KvRequest::decode(&out[4..], &LIMITS), Ok(request));
    }

    /// Random bytes after a valid request header: accepted only when they
    /// are exactly a request, which then encodes back to the same bytes.
    #[test]
    fn random_bodies_never_panic_and_accepted_ones_are_exact(
        op in 0u8..=8,
        body in bytes(40),
        valid in op(),
        cut in 0usize..40,
    ) {
        // Half of the cases: a valid request cut short or extended.
        let mut frame = Vec::new();
        KvRequest { id: 1, op: valid }.encode(&mut frame);
        let mut candidate = frame[4..].to_vec();
        if cut % 2 == 0 {
            candidate.truncate(9 + cut.min(candidate.len() - 9));
        } else {
            candidate = [&[0u8; 8][..], &[op][..], &body].concat();
        }
        if let Ok(request) = KvRequest::decode(&candidate, &LIMITS) {
            let mut again = Vec::new();
            request.encode(&mut again);
            prop_assert_eq!(&again[4..], &candidate[..]);
        }
        let _ = KvResponse::decode(&candidate, &LIMITS);
    }

    /// The store against a model: a map of key to (version, value) with the
    /// rules of docs/protocol.md §9.1.
    #[test]
    fn store_follows_the_model(ops in vec(op(), 1..60)) {
        let mut store = KvStore::new();
        let mut model: BTreeMap<Vec<u8>, (u64, Vec<u8>)> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let index = i as u64;
            let (write, expect) = match op {
                KvOp::Put { key, value } => {
                    model.insert(key.clone(), (index, value.clone()));
                    (KvWrite::put(&key, &value), KvOutcome::Written(index))
                }
                KvOp::Create { key, value } => match model.get(&key) {
                    Some(&(v, _)) => (KvWrite::create(&key, &value), KvOutcome::Exists(v)),
                    None => {
                        model.insert(key.clone(), (index, value.clone()));
                        (KvWrite::create(&key, &value), KvOutcome::Written(index))
                    }
                },
                KvOp::Update { key, value } => {
                    if let Some(slot) = model.get_mut(&key) {
                        *slot = (index, value.clone());
                        (KvWrite::update(&key, &value), KvOutcome::Written(index))
                    } else {
                        (KvWrite::update(&key, &value), KvOutcome::NotFound)
                    }
                }
                KvOp::Delete { key } => {
                    let outcome = match model.remove(&key) {
                        Some(_) => KvOutcome::Deleted(index),
                        None => KvOutcome::NotFound,
                    };
                    (KvWrite::delete(&key), outcome)
                }
                KvOp::Cas { key, expected, value } => {
                    // Half the time, expect the real version so that cas succeeds.
                    let current = model.get(&key).map_or(NO_VERSION, |e| e.0);
                    let expected = if expected % 2 == 0 { current } else { expected };
                    let outcome = if current == expected {
                        model.insert(key.clone(), (index, value.clone()));
                        KvOutcome::Written(index)
                    } else {
                        KvOutcome::Mismatch(current)
                    };
                    (KvWrite::cas(&key, expected, &value), outcome)
                }
                KvOp::Get { key } | KvOp::Scan { start: key, .. } => {
                    let got = store.get(&key).map(|v| (v.version(), v.value().to_vec()));
                    prop_assert_eq!(got, model.get(&key).cloned());
                    continue;
                }
            };
            prop_assert_eq!(store.apply(index, &write), expect);
        }
        let stored: Vec<(Vec<u8>, u64, Vec<u8>)> =
            store.iter().map(|(k, v)| (k.to_vec(), v.version(), v.value().to_vec())).collect();
        let modelled: Vec<(Vec<u8>, u64, Vec<u8>)> =
            model.into_iter().map(|(k, (v, val))| (k, v, val)).collect();
        prop_assert_eq!(stored, modelled);
    }
}

//! The v2 decoders (`wire::kv`, the bytes after the length prefix): no
//! panic, and a request or response they accept round-trips exactly.
#![no_main]

use factory::wire::kv::{KvLimits, KvRequest, KvResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits, so that the fuzzer reaches "too large" easily too.
    let limits = KvLimits {
        max_key: 16,
        max_value: 64,
    };
    if let Ok(request) = KvRequest::decode(data, &limits) {
        let mut again = Vec::new();
        request.encode(&mut again);
        assert_eq!(&again[4..], data);
    }
    if let Ok(response) = KvResponse::decode(data, &limits) {
        let mut again = Vec::new();
        response.encode(&mut again);
        assert_eq!(&again[4..], data);
    }
});

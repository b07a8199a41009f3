//! The log entry decoder (`wire::Entry::decode`): an entry it accepts
//! took no more than the bytes given, and re-encodes to one that decodes
//! the same (not always to the same bytes: duplicate ids in an in-sync set
//! collapse).
#![no_main]

use factory::wire::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((entry, used)) = Entry::decode(data) {
        assert!(used <= data.len() && entry.encoded_len() <= used);
        let mut again = Vec::new();
        entry.encode(&mut again);
        assert_eq!(Entry::decode(&again), Ok((entry, again.len())));
    }
});

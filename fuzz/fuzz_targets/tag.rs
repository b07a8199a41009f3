//! The handshake decoder (`wire::Tag::decode`): the original's prefixes.
#![no_main]

use factory::wire::native::NATIVE_TAG;
use factory::wire::{Tag, HANDSHAKE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(raw) = data.get(..HANDSHAKE_LEN) else {
        return;
    };
    let raw: [u8; HANDSHAKE_LEN] = raw.try_into().unwrap();
    let expected = if raw == NATIVE_TAG {
        Some(Tag::Native)
    } else if raw.starts_with(b"PFA") {
        Some(Tag::Pfa)
    } else if raw.starts_with(b"CLIENT") {
        Some(Tag::Client)
    } else {
        None
    };
    assert_eq!(Tag::decode(&raw), expected);
});

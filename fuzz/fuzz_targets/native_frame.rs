//! The native frame decoder (`wire::native::NativeFrame::decode`, the bytes
//! after the length prefix): no panic, and a frame it accepts round-trips.
#![no_main]

use factory::wire::native::NativeFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = NativeFrame::decode(data) {
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(NativeFrame::decode(&again[4..]), Ok(frame));
    }
});

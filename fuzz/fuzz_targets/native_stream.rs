//! A native replication stream as a backup reads it (`conn::read_native`):
//! frames one after another from arbitrary bytes, the length prefix checked
//! before anything is allocated.
#![no_main]

use factory::conn::read_native;
use factory::wire::native::MAX_FRAME_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut scratch = Vec::new();
    // Each frame read takes at least its 4-byte prefix, or ends the loop.
    for _ in 0..=data.len() / 4 {
        if read_native(&mut rest, &mut scratch).is_err() {
            break;
        }
    }
    assert!(scratch.len() <= MAX_FRAME_LEN);
});

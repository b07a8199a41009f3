//! The storage decoders through their public entry point: a data
//! directory whose `log` file holds the input (after a valid header when
//! the first byte is odd, so that the record decoder is reached).
//! Opening either recovers a log or is refused; it never panics.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use factory::storage::{DiskLog, FsyncPolicy};
use libfuzzer_sys::fuzz_target;

static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "factory-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = Vec::new();
    if first % 2 == 1 {
        bytes.extend_from_slice(b"FACTLOG\n");
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&0u64.to_be_bytes());
    }
    bytes.extend_from_slice(body);
    std::fs::write(dir.join("log"), &bytes).unwrap();
    let _ = DiskLog::open(&dir, FsyncPolicy::Never);
    let _ = std::fs::remove_dir_all(&dir);
});

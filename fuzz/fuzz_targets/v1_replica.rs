//! A backup's v1 rule (`state::Replica::on_replicate`) fed any sequence of
//! 24-byte replication frames: the log never grows by more than one entry
//! per frame, and a refused frame changes nothing.
#![no_main]

use factory::state::Replica;
use factory::wire::{Frame, ReplicationRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut replica = Replica::new(1);
    for bytes in data.chunks_exact(ReplicationRequest::SIZE) {
        let frame = ReplicationRequest::decode(bytes);
        let before = (
            replica.last_index(),
            replica.committed_index(),
            replica.primary_id(),
        );
        let refused = replica.on_replicate(&frame).is_err();
        assert!(replica.last_index() <= before.0 + 1);
        if refused {
            let after = (
                replica.last_index(),
                replica.committed_index(),
                replica.primary_id(),
            );
            assert_eq!(before, after);
        }
    }
});

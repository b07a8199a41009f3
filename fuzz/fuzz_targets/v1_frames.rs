//! Every v1 frame decoder (`wire::Frame::decode`): any bytes of the right
//! size are a frame, and encoding it gives the same bytes back.
#![no_main]

use factory::wire::{
    CustomerRecord, Frame, ReplicationAck, ReplicationRequest, RobotInfo, RobotOrder,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<F: Frame>(data: &[u8]) {
    if let Some(bytes) = data.get(..F::SIZE) {
        assert_eq!(F::decode(bytes).to_vec(), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<RobotOrder>(data);
    round_trip::<RobotInfo>(data);
    round_trip::<CustomerRecord>(data);
    round_trip::<ReplicationRequest>(data);
    round_trip::<ReplicationAck>(data);
});

//! Encode and decode of the v1 frames (`factory::wire`): the per-frame CPU
//! cost a server pays on every request, reply and replication message.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use factory::wire::{
    CustomerRecord, Frame, MapOp, ReplicationAck, ReplicationRequest, RobotInfo, RobotOrder,
    MAX_FRAME_SIZE,
};

/// Benches `encode/NAME` and `decode/NAME` for every v1 frame.
pub fn bench_wire(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire");
    frame(&mut group, "RobotOrder", RobotOrder::write(7, 42));
    frame(
        &mut group,
        "RobotInfo",
        RobotInfo::for_order(&RobotOrder::write(7, 42), 3),
    );
    frame(
        &mut group,
        "CustomerRecord",
        CustomerRecord {
            customer_id: 7,
            last_order: 42,
        },
    );
    frame(
        &mut group,
        "ReplicationRequest",
        ReplicationRequest {
            primary_id: 0,
            committed_index: 99,
            last_index: 100,
            op: MapOp::set(7, 42),
        },
    );
    frame(
        &mut group,
        "ReplicationAck",
        ReplicationAck {
            replica_id: 1,
            last_index: 100,
        },
    );
    group.finish();
}

/// Encodes `value` into, and decodes it from, a stack buffer as the
/// connection code does; throughput is in bytes.
fn frame<F: Frame + Copy>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, value: F) {
    group.throughput(Throughput::Bytes(F::SIZE as u64));
    group.bench_function(format!("encode/{name}"), |b| {
        let mut buf = [0u8; MAX_FRAME_SIZE];
        b.iter(|| {
            black_box(value).encode(&mut buf[..F::SIZE]);
            black_box(&buf);
        });
    });
    let bytes = value.to_vec();
    group.bench_function(format!("decode/{name}"), |b| {
        b.iter(|| F::decode(black_box(&bytes[..])));
    });
}

//! The benchmark suites run by `benches/benches.rs`.

pub mod cluster;
pub mod wire;

//! # factory
//!
//! A Rust port of the robot-factory replicated key-value store: customers
//! place orders, and `customer_id → last order number` is kept in a
//! state-machine log replicated from a primary to its backups. The wire
//! protocol is byte-for-byte the original's (`docs/protocol.md`), so original
//! clients and servers mix freely with these.
//!
//! ## Layout
//!
//! | module          | what it owns                                                   | ports from the original          |
//! |-----------------|----------------------------------------------------------------|----------------------------------|
//! | [`wire`]        | handshake tags and frames (v1, native, status, v2), no I/O     | `Messages`, `MapOp`, `Handshake` |
//! | [`state`]       | the log, customer records, the string store, the apply rules   | `RobotFactory`'s bookkeeping     |
//! | [`replication`] | takeover, catch-up and election decisions as plain functions   | (the original has none)          |
//! | [`storage`]     | the durable log and snapshot files, recovery                   | (the original keeps memory only) |
//! | [`protocol`]    | a client session's decisions on raw bytes, no I/O (sans-IO)    | `EngineerThread`'s request loop  |
//! | [`server`]      | accept loop; per role: session, primary, backup, election      | `ServerMain`, `ServerThread`     |
//! | [`client`]      | the client stub, the cluster client, the load generator        | `ClientStub`, `ClientThread`     |
//! | [`balancer`]    | the `load` binary's routing, pooling and cache                 | (seed 001's load balancer)       |
//! | [`conn`]        | reading and writing whole frames on a blocking stream          | `Socket` (`Send`, `Recv`)        |
//! | [`cli`]         | command-line parsing, one file per binary                      | the `main`s' argument handling   |
//! | `exposition`  | the Prometheus text writer and `/metrics` endpoint             | (new)                            |
//! | [`logging`]     | the binaries' env_logger setup (`RUST_LOG`, checked)           | (the original prints nothing)    |
//! | [`kv`]          | the blocking client of protocol v2 (string keys, pipelined)    | (new)                            |
//! | [`ffi`]         | libfactory's C ABI (`include/factory.h`), the only `unsafe`    | (new)                            |
#![deny(unsafe_code)]

pub mod balancer;
pub mod cli;
pub mod client;
pub mod conn;
mod exposition;
pub mod ffi;
pub mod kv;
pub(crate) mod kv_budget;
pub(crate) mod kv_frames;
pub mod logging;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod state;
pub mod storage;
pub mod wire;

/// The crate version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

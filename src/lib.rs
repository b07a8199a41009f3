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
//! | module     | what it owns                                             | ports from the original          |
//! |------------|----------------------------------------------------------|----------------------------------|
//! | [`wire`]   | handshake tags and frames, encode/decode, no I/O         | `Messages`, `MapOp`, `Handshake` |
//! | [`state`]  | log, record table, indexes, the append/apply/ack rules   | `RobotFactory`'s bookkeeping     |
//! | [`protocol`] | a client session's decisions on raw bytes, no I/O (sans-IO) | `EngineerThread`'s request loop |
//! | [`server`] | accept loop, client sessions, admin (primary), backups   | `ServerMain`, `ServerThread`     |
//! | [`client`] | the client stub and the load generator                   | `ClientStub`, `ClientThread`     |
//! | [`conn`]   | reading and writing whole frames on a blocking stream     | `Socket` (`Send`, `Recv`)        |
//! | [`cli`]    | command-line parsing shared by the two binaries          | the `main`s' argument handling   |
//! | `exposition` | the Prometheus text writer and `/metrics` endpoint of server and balancer | (none) |
//! | [`logging`]| the binaries' env_logger setup (`RUST_LOG`, checked)    | (the original prints nothing)    |
#![deny(unsafe_code)]

pub mod balancer;
pub mod cli;
pub mod client;
pub mod conn;
mod exposition;
pub mod ffi;
pub mod logging;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod state;
pub mod storage;
pub mod wire;

/// The crate version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

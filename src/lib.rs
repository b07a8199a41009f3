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
//! | [`kv`]     | the blocking client of protocol v2 (string keys, pipelined) | (new in the port)             |
//! | [`conn`]   | reading and writing whole frames on a blocking stream     | `Socket` (`Send`, `Recv`)        |
//! | [`cli`]    | command-line parsing shared by the two binaries          | the `main`s' argument handling   |
//! | [`logging`]| a small `log` backend configured by `RUST_LOG`           | (the original prints nothing)    |
#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod conn;
pub mod ffi;
pub mod kv;
pub mod logging;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod state;
pub mod storage;
pub mod wire;

/// The crate version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

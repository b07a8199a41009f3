//! libfactory: the C ABI over [`crate::server`] and [`crate::client`], and
//! the only module where `unsafe` is allowed.
//!
//! C programs (and the C++ drop-in headers in `bindings/cpp/`) call these
//! functions through `include/factory.h`, which `build.rs` generates from
//! this module with cbindgen; the header is the reference for C users, so
//! every exported item's doc comment is written for them.
//!
//! The habits, taken from rustls-ffi: opaque handles are `Box`es handed out
//! with `Box::into_raw` and taken back only by their own stop/close/free;
//! every exported body runs inside `ffi_boundary!` so that no panic
//! unwinds into C; every pointer argument goes through `ptr_arg!`, the
//! one place that checks for NULL; out-params are written only on success.
//! Unlike the original's client stub, which printed errors and returned
//! invalid messages, every call returns a [`factory_status`].
#![allow(unsafe_code)]
// The exported names are the C names (`factory_server`, `FACTORY_OK`).
#![allow(non_camel_case_types)]
// These functions are called from C, where `unsafe` does not exist: their
// pointer contract is stated in each doc comment (and so in the header),
// and every dereference goes through `ptr_arg!` after a NULL check.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[macro_use]
mod boundary;
mod client;
mod cluster;
mod kv;
mod kv_scan;
mod rlimit;
mod server;
mod signal;
mod socket;
mod status;

pub use client::*;
pub use cluster::*;
pub use kv::*;
pub use kv_scan::*;
pub(crate) use rlimit::raise_open_files_limit;
pub use server::*;
#[cfg(unix)]
pub(crate) use socket::shutdown_both;
pub use status::*;

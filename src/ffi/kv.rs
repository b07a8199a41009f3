//! The protocol v2 client of the C ABI: `factory_kv`, string keys and
//! values on one server ([`crate::kv::KvClient`]) or on a cluster whose
//! primary it follows ([`crate::kv::KvCluster`]), and the calls get, put,
//! create, update, delete and cas. Scans are in `kv_scan.rs`.
//!
//! Keys and values cross the boundary as pointer and length (binary-safe:
//! NUL bytes are data). A value read comes back either in the caller's
//! buffer (`factory_kv_get`) or in one this library allocates with
//! `malloc` (`factory_kv_get_alloc`, freed with `factory_kv_free`).

use std::os::raw::{c_char, c_void};
use std::time::Duration;

use super::boundary::owned_text;
use super::signal::ignore_default_sigpipe;
use super::status::factory_status;
use crate::kv::{KvClient, KvClientError, KvCluster, KvClusterOptions};
use crate::wire::kv::{KvBody, KvOp, KvResponse, KvStatus, KEY_CEILING, VALUE_CEILING};

/// The I/O timeout of a single-server `factory_kv` when 0 is given.
const DEFAULT_TIMEOUT_MS: u32 = 30_000;

/// A protocol v2 (string keys and values) client. Opaque.
///
/// Ownership: made by `factory_kv_connect` or `factory_kv_connect_cluster`,
/// closed and freed by `factory_kv_close`.
/// Thread-safety: used by one thread at a time (it may move between
/// threads); connect one per thread to run requests in parallel.
/// A handle made by `factory_kv_connect` is unusable after a call returned
/// `FACTORY_ERR_IO`, `FACTORY_ERR_CLOSED`, `FACTORY_ERR_TIMEOUT` or
/// `FACTORY_ERR_PROTOCOL` (close it); one made by
/// `factory_kv_connect_cluster` connects again on its next call.
pub struct factory_kv {
    conn: Conn,
}

enum Conn {
    One(KvClient),
    Many(KvCluster),
}

impl factory_kv {
    pub(super) fn call(&mut self, op: KvOp) -> Result<KvResponse, factory_status> {
        let answer = match &mut self.conn {
            Conn::One(c) => c.call(op),
            Conn::Many(c) => c.call(op),
        };
        answer.map_err(|e| status_of_error(&e))
    }
}

/// The status of a call that got no answer it could use.
pub(super) fn status_of_error(e: &KvClientError) -> factory_status {
    match e {
        KvClientError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                factory_status::ERR_TIMEOUT
            }
            _ => factory_status::ERR_IO,
        },
        KvClientError::Closed { .. } => factory_status::ERR_CLOSED,
        KvClientError::Protocol { .. } => factory_status::ERR_PROTOCOL,
        KvClientError::Status { status, .. } => status_of_answer(*status),
        KvClientError::Unavailable { .. } => factory_status::ERR_UNAVAILABLE,
    }
}

/// The C status of a v2 answer's status.
pub(super) fn status_of_answer(status: KvStatus) -> factory_status {
    match status {
        KvStatus::Ok => factory_status::OK,
        KvStatus::NotFound => factory_status::KV_NOT_FOUND,
        KvStatus::Exists => factory_status::KV_EXISTS,
        KvStatus::VersionMismatch => factory_status::KV_VERSION_MISMATCH,
        KvStatus::TooLarge => factory_status::ERR_TOO_LARGE,
        KvStatus::NotPrimary => factory_status::ERR_NOT_PRIMARY,
        KvStatus::Busy => factory_status::ERR_BUSY,
        KvStatus::NoMemory => factory_status::ERR_NO_MEMORY,
        KvStatus::Unavailable => factory_status::ERR_UNAVAILABLE,
        KvStatus::BadRequest => factory_status::ERR_BAD_REQUEST,
    }
}

/// Borrows `len` bytes at `ptr` for the call; NULL is allowed for an empty
/// one. Lengths over `ceiling` are refused before the pointer is read.
macro_rules! bytes_arg {
    ($ptr:ident, $len:ident, $ceiling:expr) => {{
        if $len > $ceiling {
            return factory_status::ERR_TOO_LARGE;
        }
        if $len == 0 {
            &[][..]
        } else if $ptr.is_null() {
            return factory_status::ERR_NULL_POINTER;
        } else {
            // SAFETY: a non-NULL pointer with a non-zero length points to
            // that many readable bytes that live for the call (documented
            // contract); they are copied before the call returns.
            unsafe { ::std::slice::from_raw_parts($ptr, $len) }
        }
    }};
}
pub(super) use bytes_arg;

/// Connects to the v2 server at `host:port` (a name or an IP address,
/// copied), with a timeout of `timeout_ms` milliseconds for connecting and
/// for every later call (0: 30000). Blocks until connected. This handle
/// talks to that one server only: a write sent to a backup returns
/// `FACTORY_ERR_NOT_PRIMARY` (use `factory_kv_connect_cluster` to follow
/// the primary). On success stores the handle in `*out`, which the caller
/// owns and must pass to `factory_kv_close`; on failure leaves `*out`
/// untouched. Ignores SIGPIPE if its action is SIG_DFL.
///
/// Returns `FACTORY_ERR_CONNECT` if the host does not resolve or refuses,
/// `FACTORY_ERR_TIMEOUT`, `FACTORY_ERR_INVALID_ARGUMENT` for an empty or
/// non-UTF-8 host, `FACTORY_ERR_NULL_POINTER` if `host` or `out` is NULL.
#[no_mangle]
pub extern "C" fn factory_kv_connect(
    host: *const c_char,
    port: u16,
    timeout_ms: u32,
    out: *mut *mut factory_kv,
) -> factory_status {
    ffi_boundary! {
        let host = match owned_text(ptr_arg!(cstr host)) {
            Ok(host) => host,
            Err(status) => return status,
        };
        let out = ptr_arg!(out out);
        ignore_default_sigpipe();
        let ms = if timeout_ms == 0 { DEFAULT_TIMEOUT_MS } else { timeout_ms };
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        match KvClient::connect(address.as_str(), Some(Duration::from_millis(ms.into()))) {
            Ok(client) => {
                out.write(Box::into_raw(Box::new(factory_kv { conn: Conn::One(client) })));
                factory_status::OK
            }
            Err(KvClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::TimedOut =>
            {
                factory_status::ERR_TIMEOUT
            }
            Err(_) => factory_status::ERR_CONNECT,
        }
    }
}

/// Connects to a cluster: `servers` points to `count` NUL-terminated
/// addresses "host:port" (each copied). Every call goes to the server in
/// use; an answer "not primary" sends it to the primary that answer names,
/// else to the next server of the list; a server that cannot be reached,
/// fails, closes, or answers busy or unavailable sends it to the next one,
/// with backoff, until `deadline_ms` milliseconds have passed since the
/// call began (0: 30000). Each attempt waits at most 5 s (or the deadline).
/// A write whose connection failed after it was sent is sent again: a put
/// is then committed twice (the same value, a newer version); a create,
/// update, delete or cas may then return the outcome of its own first
/// commit (`FACTORY_KV_EXISTS`, `FACTORY_KV_VERSION_MISMATCH`,
/// `FACTORY_KV_NOT_FOUND`). Blocks until connected to one server. On
/// success stores the handle in `*out` (owned by the caller, freed by
/// `factory_kv_close`); on failure leaves `*out` untouched. Ignores SIGPIPE
/// if its action is SIG_DFL.
///
/// Returns `FACTORY_ERR_UNAVAILABLE` if no server could be reached before
/// the deadline, `FACTORY_ERR_INVALID_ARGUMENT` for a count of 0 or over
/// 1024 (checked first, so an empty list may be NULL) or an address that
/// is empty, not UTF-8 or not "host:port", `FACTORY_ERR_NULL_POINTER` if
/// `servers`, one of its entries or `out` is NULL.
#[no_mangle]
pub extern "C" fn factory_kv_connect_cluster(
    servers: *const *const c_char,
    count: usize,
    deadline_ms: u32,
    out: *mut *mut factory_kv,
) -> factory_status {
    ffi_boundary! {
        let list = match super::cluster::server_list(servers, count) {
            Ok(list) => list,
            Err(status) => return status,
        };
        let out = ptr_arg!(out out);
        ignore_default_sigpipe();
        let mut options = KvClusterOptions::default();
        if deadline_ms > 0 {
            options.deadline = Duration::from_millis(deadline_ms.into());
            options.attempt_timeout = options.attempt_timeout.min(options.deadline);
        }
        let Ok(mut cluster) = KvCluster::new(list, options) else {
            return factory_status::ERR_INVALID_ARGUMENT;
        };
        match cluster.connect_now() {
            Ok(()) => {
                out.write(Box::into_raw(Box::new(factory_kv { conn: Conn::Many(cluster) })));
                factory_status::OK
            }
            Err(e) => status_of_error(&e),
        }
    }
}

/// Closes the connection and frees the handle. NULL is a no-op.
#[no_mangle]
pub extern "C" fn factory_kv_close(kv: *mut factory_kv) {
    ffi_boundary! {
        drop(ptr_arg!(owned kv));
    }
}

/// Reads `key` (`key_len` bytes at `key`; NULL if 0) and copies its value
/// into the caller's buffer `value` of `capacity` bytes (NULL if 0).
///
/// - `FACTORY_OK`: the value is in `value[0..*value_len)` and its version
///   (the log index that wrote it) in `*version`.
/// - `FACTORY_KV_NOT_FOUND`: the key is absent; nothing is written.
/// - `FACTORY_ERR_BUFFER_TOO_SMALL`: the value is longer than `capacity`;
///   `*value_len` and `*version` are set to its length and version, and
///   `value` is left untouched (the value is not kept: call again with a
///   larger buffer, or use `factory_kv_get_alloc`).
///
/// Otherwise nothing is written: `FACTORY_ERR_TOO_LARGE` for a key over
/// the server's limit (default 1 KiB; 65535 bytes at most in protocol v2,
/// refused before sending), `FACTORY_ERR_NOT_PRIMARY` (a single-server
/// handle on a backup that does not serve reads), the errors of the
/// connection (`FACTORY_ERR_IO`, `_CLOSED`, `_TIMEOUT`, `_PROTOCOL`,
/// `_UNAVAILABLE`), `FACTORY_ERR_NULL_POINTER` if `kv`, `value_len` or
/// `version` is NULL, or `key`/`value` is NULL with a non-zero length.
#[no_mangle]
pub extern "C" fn factory_kv_get(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    value: *mut u8,
    capacity: usize,
    value_len: *mut usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        let kv = ptr_arg!(mut kv);
        let key = bytes_arg!(key, key_len, KEY_CEILING);
        if capacity > 0 && value.is_null() {
            return factory_status::ERR_NULL_POINTER;
        }
        let value_len = ptr_arg!(out value_len);
        let version = ptr_arg!(out version);
        let (found, v) = match get_value(kv, key) {
            Ok(found) => found,
            Err(status) => return status,
        };
        value_len.write(v.len());
        version.write(found);
        if v.len() > capacity {
            return factory_status::ERR_BUFFER_TOO_SMALL;
        }
        if !v.is_empty() {
            // SAFETY: `value` is non-NULL (capacity > 0, checked above) and
            // valid for writing `capacity` >= v.len() bytes (documented
            // contract); `v` is our own allocation, so they do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), value, v.len()) };
        }
        factory_status::OK
    }
}

/// Reads `key` into a buffer this library allocates: on `FACTORY_OK`
/// stores in `*value` a pointer to `*value_len` bytes (never NULL, even
/// for an empty value) and the version in `*version`. The caller owns the
/// buffer and must free it with `factory_kv_free` (it comes from `malloc`,
/// so `free` also works). On any other status nothing is written and
/// nothing is to be freed; the statuses are those of `factory_kv_get`
/// (without `FACTORY_ERR_BUFFER_TOO_SMALL`), and `FACTORY_ERR_IO` if the
/// buffer cannot be allocated.
#[no_mangle]
pub extern "C" fn factory_kv_get_alloc(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    value: *mut *mut u8,
    value_len: *mut usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        let kv = ptr_arg!(mut kv);
        let key = bytes_arg!(key, key_len, KEY_CEILING);
        let value = ptr_arg!(out value);
        let value_len = ptr_arg!(out value_len);
        let version = ptr_arg!(out version);
        let (found, v) = match get_value(kv, key) {
            Ok(found) => found,
            Err(status) => return status,
        };
        // SAFETY: malloc of at least one byte; NULL is checked below.
        let buffer = unsafe { libc::malloc(v.len().max(1)) }.cast::<u8>();
        if buffer.is_null() {
            return factory_status::ERR_IO;
        }
        // SAFETY: `buffer` was just allocated with room for v.len() bytes
        // and does not overlap `v`.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buffer, v.len()) };
        value.write(buffer);
        value_len.write(v.len());
        version.write(found);
        factory_status::OK
    }
}

/// Frees a buffer `factory_kv_get_alloc` returned. NULL is a no-op.
#[no_mangle]
pub extern "C" fn factory_kv_free(buffer: *mut c_void) {
    ffi_boundary! {
        // SAFETY: `buffer` is NULL or came from `factory_kv_get_alloc`'s
        // malloc and is freed once (documented contract).
        unsafe { libc::free(buffer) }
    }
}

fn get_value(kv: &mut factory_kv, key: &[u8]) -> Result<(u64, Vec<u8>), factory_status> {
    let answer = kv.call(KvOp::Get { key: key.to_vec() })?;
    match (answer.status, answer.body) {
        (KvStatus::Ok, KvBody::Value { version, value }) => Ok((version, value)),
        (KvStatus::Ok, _) => Err(factory_status::ERR_PROTOCOL),
        (status, _) => Err(status_of_answer(status)),
    }
}

/// Sends a write and stores the version its answer carries, if any.
fn write(kv: &mut factory_kv, op: KvOp, version: super::boundary::Out<u64>) -> factory_status {
    let answer = match kv.call(op) {
        Ok(a) => a,
        Err(status) => return status,
    };
    let status = status_of_answer(answer.status);
    if let KvBody::Version(v) = answer.body {
        if matches!(
            answer.status,
            KvStatus::Ok | KvStatus::Exists | KvStatus::VersionMismatch
        ) {
            version.write(v);
        }
    }
    status
}

/// Sets `key` to `value` (each pointer and length; NULL if the length is
/// 0), whether or not it exists, and blocks until the write is committed
/// (replicated, and durable as the server's `--fsync` says). On
/// `FACTORY_OK` stores the new version in `*version`; on any other status
/// writes nothing.
///
/// Returns `FACTORY_ERR_TOO_LARGE` for a key or value over the server's
/// limits (default 1 KiB and 1 MiB; over 65535 and 64 MiB, the most
/// protocol v2 carries, refused before sending; a value far over the
/// server's limit makes it close the connection instead:
/// `FACTORY_ERR_CLOSED`), `FACTORY_ERR_NO_MEMORY` when the server is at its
/// `--max-memory`, `FACTORY_ERR_NOT_PRIMARY` (single-server handle on a
/// backup), `FACTORY_ERR_BUSY`, `FACTORY_ERR_UNAVAILABLE` (no majority),
/// the connection errors of `factory_kv_get`, `FACTORY_ERR_NULL_POINTER`.
#[no_mangle]
pub extern "C" fn factory_kv_put(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        write_value(kv, (key, key_len), (value, value_len), version, |key, value| {
            KvOp::Put { key, value }
        })
    }
}

/// The body of `factory_kv_put`, `_create` and `_update`: the same
/// arguments, checked the same way, and the write `op` makes of them.
fn write_value(
    kv: *mut factory_kv,
    (key, key_len): (*const u8, usize),
    (value, value_len): (*const u8, usize),
    version: *mut u64,
    op: fn(Vec<u8>, Vec<u8>) -> KvOp,
) -> factory_status {
    let kv = ptr_arg!(mut kv);
    let key = bytes_arg!(key, key_len, KEY_CEILING).to_vec();
    let value = bytes_arg!(value, value_len, VALUE_CEILING).to_vec();
    let version = ptr_arg!(out version);
    write(kv, op(key, value), version)
}

/// As `factory_kv_put`, but only if `key` is absent: returns
/// `FACTORY_KV_EXISTS` (and stores the key's current version in
/// `*version`) if it is present.
#[no_mangle]
pub extern "C" fn factory_kv_create(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        write_value(kv, (key, key_len), (value, value_len), version, |key, value| {
            KvOp::Create { key, value }
        })
    }
}

/// As `factory_kv_put`, but only if `key` is present: returns
/// `FACTORY_KV_NOT_FOUND` (writing nothing) if it is absent.
#[no_mangle]
pub extern "C" fn factory_kv_update(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        write_value(kv, (key, key_len), (value, value_len), version, |key, value| {
            KvOp::Update { key, value }
        })
    }
}

/// Removes `key` and blocks until that is committed. On `FACTORY_OK`
/// stores the delete's log index in `*version`; returns
/// `FACTORY_KV_NOT_FOUND` (writing nothing) if the key is absent. Other
/// statuses as `factory_kv_put`.
#[no_mangle]
pub extern "C" fn factory_kv_delete(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        let kv = ptr_arg!(mut kv);
        let key = bytes_arg!(key, key_len, KEY_CEILING).to_vec();
        let version = ptr_arg!(out version);
        write(kv, KvOp::Delete { key }, version)
    }
}

/// Compare-and-set: sets `key` to `value` only if the key's version is
/// `expected` (`FACTORY_KV_NO_VERSION`, UINT64_MAX: only if it is absent).
/// On `FACTORY_OK` stores the new version in `*version`; on
/// `FACTORY_KV_VERSION_MISMATCH` stores the key's current version
/// (`FACTORY_KV_NO_VERSION` if absent). Other statuses as `factory_kv_put`.
#[no_mangle]
pub extern "C" fn factory_kv_cas(
    kv: *mut factory_kv,
    key: *const u8,
    key_len: usize,
    expected: u64,
    value: *const u8,
    value_len: usize,
    version: *mut u64,
) -> factory_status {
    ffi_boundary! {
        let kv = ptr_arg!(mut kv);
        let key = bytes_arg!(key, key_len, KEY_CEILING).to_vec();
        let value = bytes_arg!(value, value_len, VALUE_CEILING).to_vec();
        let version = ptr_arg!(out version);
        write(kv, KvOp::Cas { key, expected, value }, version)
    }
}

/// The version `factory_kv_cas` expects of an absent key, and the one it
/// reports for one (UINT64_MAX).
pub const FACTORY_KV_NO_VERSION: u64 = u64::MAX;

/// The longest key protocol v2 carries (a server's limit may be lower:
/// 1024 by default).
pub const FACTORY_KV_KEY_CEILING: usize = 65_535;

/// The longest value protocol v2 carries (a server's limit may be lower:
/// 1 MiB by default).
pub const FACTORY_KV_VALUE_CEILING: usize = 67_108_864;

// cbindgen writes the literals above into the header; they must be the
// codec's.
const _: () = assert!(FACTORY_KV_KEY_CEILING == KEY_CEILING);
const _: () = assert!(FACTORY_KV_VALUE_CEILING == VALUE_CEILING);

//! `factory_kv_scan`: an ordered scan of a v2 store, its result held by
//! the library (`factory_kv_scan_result`) and read item by item, so that C
//! never frees keys and values one at a time.

use super::kv::{bytes_arg, factory_kv};
use super::status::factory_status;
use crate::wire::kv::{KvBody, KvItem, KvOp, KvStatus, KEY_CEILING, MAX_SCAN_LIMIT};

/// The keys one scan returned. Opaque.
///
/// Ownership: made by `factory_kv_scan`, freed by
/// `factory_kv_scan_free`; the pointers `factory_kv_scan_item` gives point
/// into it and live until then. It does not refer to the `factory_kv`
/// (either may be freed first). Read-only: may be read from several
/// threads at once.
pub struct factory_kv_scan_result {
    items: Vec<KvItem>,
    more: bool,
}

/// One key of a scan, pointing into its `factory_kv_scan_result`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct factory_kv_item {
    /// The key's bytes (`key_len` of them; not NUL-terminated).
    pub key: *const u8,
    /// The key's length.
    pub key_len: usize,
    /// The value's bytes (`value_len` of them; not NUL-terminated).
    pub value: *const u8,
    /// The value's length.
    pub value_len: usize,
    /// The value's version: the log index that wrote it.
    pub version: u64,
}

/// Reads up to `limit` keys (1 to 1000) from `start` (inclusive; `start_len`
/// bytes, NULL if 0, the empty key being the first of all) in byte order,
/// with their values and versions. The server may return fewer than
/// `limit` keys (it stops before an answer would pass its size bound);
/// whether more follow is `factory_kv_scan_more`. To read the next page,
/// scan again from the last key returned with one zero byte appended (the
/// smallest key after it). On success stores the result in `*out`, owned
/// by the caller and freed with `factory_kv_scan_free`; on failure leaves
/// `*out` untouched.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` for a limit of 0 or over 1000,
/// `FACTORY_ERR_TOO_LARGE` for a start key over the server's key limit,
/// the other statuses of `factory_kv_get`.
#[no_mangle]
pub extern "C" fn factory_kv_scan(
    kv: *mut factory_kv,
    start: *const u8,
    start_len: usize,
    limit: u32,
    out: *mut *mut factory_kv_scan_result,
) -> factory_status {
    ffi_boundary! {
        let kv = ptr_arg!(mut kv);
        let start = bytes_arg!(start, start_len, KEY_CEILING).to_vec();
        let out = ptr_arg!(out out);
        if limit == 0 || limit > MAX_SCAN_LIMIT {
            return factory_status::ERR_INVALID_ARGUMENT;
        }
        let answer = match kv.call(KvOp::Scan { start, limit }) {
            Ok(a) => a,
            Err(status) => return status,
        };
        match (answer.status, answer.body) {
            (KvStatus::Ok, KvBody::Items { items, more }) => {
                out.write(Box::into_raw(Box::new(factory_kv_scan_result { items, more })));
                factory_status::OK
            }
            (KvStatus::Ok, _) => factory_status::ERR_PROTOCOL,
            (status, _) => super::kv::status_of_answer(status),
        }
    }
}

/// The number of keys in `result` (0 for NULL).
#[no_mangle]
pub extern "C" fn factory_kv_scan_count(result: *const factory_kv_scan_result) -> usize {
    ffi_boundary! {
        ptr_arg!(ref result).items.len()
    }
}

/// 1 if keys after the last one of `result` exist (scan again to read
/// them), 0 if the scan reached the end of the store (or `result` is NULL).
#[no_mangle]
pub extern "C" fn factory_kv_scan_more(result: *const factory_kv_scan_result) -> u8 {
    ffi_boundary! {
        u8::from(ptr_arg!(ref result).more)
    }
}

/// Stores the `index`th key of `result` (from 0, in key order) in `*out`;
/// its pointers live until `factory_kv_scan_free(result)`.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` for an index not below
/// `factory_kv_scan_count`, `FACTORY_ERR_NULL_POINTER`.
#[no_mangle]
pub extern "C" fn factory_kv_scan_item(
    result: *const factory_kv_scan_result,
    index: usize,
    out: *mut factory_kv_item,
) -> factory_status {
    ffi_boundary! {
        let result = ptr_arg!(ref result);
        let out = ptr_arg!(out out);
        let Some(item) = result.items.get(index) else {
            return factory_status::ERR_INVALID_ARGUMENT;
        };
        out.write(factory_kv_item {
            key: item.key.as_ptr(),
            key_len: item.key.len(),
            value: item.value.as_ptr(),
            value_len: item.value.len(),
            version: item.version,
        });
        factory_status::OK
    }
}

/// Frees a scan result and every key and value in it. NULL is a no-op.
#[no_mangle]
pub extern "C" fn factory_kv_scan_free(result: *mut factory_kv_scan_result) {
    ffi_boundary! {
        drop(ptr_arg!(owned result));
    }
}

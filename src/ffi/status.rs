//! [`factory_status`], the result of every fallible C call, its one mapping
//! from the Rust errors, and the static strings describing statuses and the
//! library version.

use std::os::raw::c_char;

use crate::client::ClientError;
use crate::server::ServerError;

/// The result of a libfactory call. `FACTORY_OK` is 0; every other value is
/// an error. Values are never reused: new codes are only added at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum factory_status {
    /// Success.
    OK = 0,
    /// An argument is out of range: an empty or non-UTF-8 string, an IP
    /// address that does not parse, or customer id -1 (which would end the
    /// session).
    ERR_INVALID_ARGUMENT = 1,
    /// A pointer argument is NULL.
    ERR_NULL_POINTER = 2,
    /// The host name did not resolve or no connection could be made.
    ERR_CONNECT = 3,
    /// A socket or thread operation failed.
    ERR_IO = 4,
    /// The server answered with a frame that does not match the request.
    ERR_PROTOCOL = 5,
    /// The server closed the connection.
    ERR_CLOSED = 6,
    /// The server's port is already in use.
    ERR_ADDRESS_IN_USE = 7,
    /// A bug inside libfactory was caught before it reached C; the handle
    /// involved may only be freed.
    ERR_PANIC = 8,
    /// The server did not answer within the client's timeout.
    ERR_TIMEOUT = 9,
    /// No server of a cluster client's list served the request before its
    /// deadline (each was down, refused, timed out or closed the session).
    ERR_UNAVAILABLE = 10,
    /// Protocol v2: the key does not exist (get, update, delete).
    KV_NOT_FOUND = 11,
    /// Protocol v2: create of a key that exists.
    KV_EXISTS = 12,
    /// Protocol v2: cas whose expected version is not the key's.
    KV_VERSION_MISMATCH = 13,
    /// Protocol v2: a key or value over the server's limit, or over what
    /// the protocol carries.
    ERR_TOO_LARGE = 14,
    /// The caller's buffer cannot hold the value (`factory_kv_get`).
    ERR_BUFFER_TOO_SMALL = 15,
    /// Protocol v2: the server is not the primary and does not serve this
    /// request (a single-server handle; a cluster handle follows).
    ERR_NOT_PRIMARY = 16,
    /// Protocol v2: the server is overloaded; try again later.
    ERR_BUSY = 17,
    /// Protocol v2: the write would take the server past `--max-memory`.
    ERR_NO_MEMORY = 18,
    /// Protocol v2: the server found the request malformed and closed the
    /// connection (a bug in the client).
    ERR_BAD_REQUEST = 19,
}

impl From<&ClientError> for factory_status {
    fn from(e: &ClientError) -> Self {
        match e {
            ClientError::Resolve { .. } | ClientError::Connect { .. } => {
                factory_status::ERR_CONNECT
            }
            ClientError::Closed { .. } => factory_status::ERR_CLOSED,
            ClientError::Timeout { .. } => factory_status::ERR_TIMEOUT,
            ClientError::Io { .. } => factory_status::ERR_IO,
            ClientError::Protocol { .. } => factory_status::ERR_PROTOCOL,
            ClientError::Unavailable { .. } => factory_status::ERR_UNAVAILABLE,
        }
    }
}

impl From<&ServerError> for factory_status {
    fn from(e: &ServerError) -> Self {
        match e {
            ServerError::AddressInUse(_) => factory_status::ERR_ADDRESS_IN_USE,
            ServerError::Bind(..) | ServerError::Io(_) | ServerError::Storage(_) => {
                factory_status::ERR_IO
            }
        }
    }
}

impl factory_status {
    /// The text `factory_status_str` returns, NUL-terminated.
    const fn text(self) -> &'static [u8] {
        match self {
            factory_status::OK => b"ok\0",
            factory_status::ERR_INVALID_ARGUMENT => b"invalid argument\0",
            factory_status::ERR_NULL_POINTER => b"null pointer argument\0",
            factory_status::ERR_CONNECT => b"cannot connect to the server\0",
            factory_status::ERR_IO => b"i/o error\0",
            factory_status::ERR_PROTOCOL => b"unexpected reply from the server\0",
            factory_status::ERR_CLOSED => b"connection closed by the server\0",
            factory_status::ERR_ADDRESS_IN_USE => b"address already in use\0",
            factory_status::ERR_PANIC => b"internal error in libfactory\0",
            factory_status::ERR_TIMEOUT => b"the server did not answer in time\0",
            factory_status::ERR_UNAVAILABLE => b"no server of the cluster answered in time\0",
            factory_status::KV_NOT_FOUND => b"key not found\0",
            factory_status::KV_EXISTS => b"key exists\0",
            factory_status::KV_VERSION_MISMATCH => b"version mismatch\0",
            factory_status::ERR_TOO_LARGE => b"key or value too large\0",
            factory_status::ERR_BUFFER_TOO_SMALL => b"buffer too small for the value\0",
            factory_status::ERR_NOT_PRIMARY => b"server is not the primary\0",
            factory_status::ERR_BUSY => b"server busy\0",
            factory_status::ERR_NO_MEMORY => b"server out of memory (--max-memory)\0",
            factory_status::ERR_BAD_REQUEST => b"server refused a malformed request\0",
        }
    }
}

/// The library version, e.g. "0.1.0".
///
/// The string is static: do not free it. Thread-safe; does not block.
#[no_mangle]
pub extern "C" fn factory_version() -> *const c_char {
    ffi_boundary! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    }
}

/// A short English description of `status`, e.g. "connection closed by the
/// server". `status` must be one of the values of `factory_status`.
///
/// The string is static: do not free it. Thread-safe; does not block.
#[no_mangle]
pub extern "C" fn factory_status_str(status: factory_status) -> *const c_char {
    ffi_boundary! {
        status.text().as_ptr().cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn codes_are_stable() {
        // C programs compiled against older headers depend on these.
        let codes = [
            (factory_status::OK, 0),
            (factory_status::ERR_INVALID_ARGUMENT, 1),
            (factory_status::ERR_NULL_POINTER, 2),
            (factory_status::ERR_CONNECT, 3),
            (factory_status::ERR_IO, 4),
            (factory_status::ERR_PROTOCOL, 5),
            (factory_status::ERR_CLOSED, 6),
            (factory_status::ERR_ADDRESS_IN_USE, 7),
            (factory_status::ERR_PANIC, 8),
            (factory_status::ERR_TIMEOUT, 9),
            (factory_status::ERR_UNAVAILABLE, 10),
            (factory_status::KV_NOT_FOUND, 11),
            (factory_status::KV_EXISTS, 12),
            (factory_status::KV_VERSION_MISMATCH, 13),
            (factory_status::ERR_TOO_LARGE, 14),
            (factory_status::ERR_BUFFER_TOO_SMALL, 15),
            (factory_status::ERR_NOT_PRIMARY, 16),
            (factory_status::ERR_BUSY, 17),
            (factory_status::ERR_NO_MEMORY, 18),
            (factory_status::ERR_BAD_REQUEST, 19),
        ];
        for (status, code) in codes {
            assert_eq!(status as i32, code);
            // SAFETY: factory_status_str returns static NUL-terminated text.
            let text = unsafe { CStr::from_ptr(factory_status_str(status)) };
            assert!(!text.to_bytes().is_empty());
        }
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: factory_version returns static NUL-terminated text.
        let v = unsafe { CStr::from_ptr(factory_version()) };
        assert_eq!(v.to_str(), Ok(crate::VERSION));
    }
}

//! The client half of the C ABI: `factory_client`, one session with a
//! server (the original's `ClientStub`), and the two reply structs.

use std::os::raw::c_char;
use std::time::Duration;

use super::boundary::owned_text;
use super::signal::ignore_default_sigpipe;
use super::status::factory_status;
use crate::client::Client;
use crate::wire::{CustomerRecord, RobotInfo};

/// The I/O timeout of `factory_client_connect` in milliseconds, as the
/// `client` binary's.
const DEFAULT_TIMEOUT_MS: u32 = 30_000;

/// One client session with a server. Opaque.
///
/// Ownership: made by `factory_client_connect`, closed and freed by
/// `factory_client_close`.
/// Thread-safety: used by one thread at a time (it may move between
/// threads); run sessions in parallel by connecting one client per thread.
/// Calls block until the server answers or the timeout expires.
pub struct factory_client {
    client: Client,
}

/// The reply to an order (a write): the first three fields echo the
/// request; `engineer_id` numbers the server connection that served it and
/// `admin_id` is 0. A plain value, owned by the caller.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct factory_robot_info {
    /// The customer the order was for.
    pub customer_id: i32,
    /// The order's number, now the customer's last order.
    pub order_number: i32,
    /// Always 1 (a write).
    pub request_type: i32,
    /// The number of the server connection that served the order.
    pub engineer_id: i32,
    /// Always 0.
    pub admin_id: i32,
}

/// A customer's committed record. A plain value, owned by the caller.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct factory_customer_record {
    /// The customer read.
    pub customer_id: i32,
    /// The customer's last committed order, or -1 if there is none.
    pub last_order: i32,
}

impl From<RobotInfo> for factory_robot_info {
    fn from(i: RobotInfo) -> Self {
        factory_robot_info {
            customer_id: i.customer_id,
            order_number: i.order_number,
            request_type: i.request_type,
            engineer_id: i.engineer_id,
            admin_id: i.admin_id,
        }
    }
}

impl From<CustomerRecord> for factory_customer_record {
    fn from(r: CustomerRecord) -> Self {
        factory_customer_record {
            customer_id: r.customer_id,
            last_order: r.last_order,
        }
    }
}

/// Connects to the server at `host:port` (a name or an IP address, copied)
/// and opens a client session, with a 30-second timeout for connecting and
/// for every later call. Blocks until connected. On success stores the
/// session in `*out`, which the caller owns and must pass to
/// `factory_client_close`; on failure leaves `*out` untouched. Ignores
/// SIGPIPE if its action is SIG_DFL (see the header's preamble).
///
/// Returns `FACTORY_ERR_CONNECT` if the host does not resolve or refuses,
/// `FACTORY_ERR_INVALID_ARGUMENT` for an empty or non-UTF-8 host,
/// `FACTORY_ERR_NULL_POINTER` if an argument is NULL.
#[no_mangle]
pub extern "C" fn factory_client_connect(
    host: *const c_char,
    port: u16,
    out: *mut *mut factory_client,
) -> factory_status {
    ffi_boundary! {
        factory_client_connect_timeout(host, port, DEFAULT_TIMEOUT_MS, out)
    }
}

/// `factory_client_connect` with a timeout of `timeout_ms` milliseconds for
/// connecting and for every later call; 0 waits forever.
#[no_mangle]
pub extern "C" fn factory_client_connect_timeout(
    host: *const c_char,
    port: u16,
    timeout_ms: u32,
    out: *mut *mut factory_client,
) -> factory_status {
    ffi_boundary! {
        let host = match owned_text(ptr_arg!(cstr host)) {
            Ok(host) => host,
            Err(status) => return status,
        };
        let out = ptr_arg!(out out);
        ignore_default_sigpipe();
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into()));
        match Client::connect(&host, port, timeout) {
            Ok(client) => {
                out.write(Box::into_raw(Box::new(factory_client { client })));
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// Places order `order_number` for `customer_id` (a write) and blocks until
/// the server has committed it, then stores the reply in `*out`; on failure
/// leaves `*out` untouched. After any error but `FACTORY_ERR_NULL_POINTER`
/// and `FACTORY_ERR_INVALID_ARGUMENT` the session is unusable: close it.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` for customer id -1 (which ends a
/// session on the wire), `FACTORY_ERR_CLOSED` or `FACTORY_ERR_IO` if the
/// server went away, `FACTORY_ERR_TIMEOUT`, `FACTORY_ERR_PROTOCOL` if the
/// reply does not echo the request, `FACTORY_ERR_NULL_POINTER`.
#[no_mangle]
pub extern "C" fn factory_client_order(
    client: *mut factory_client,
    customer_id: i32,
    order_number: i32,
    out: *mut factory_robot_info,
) -> factory_status {
    ffi_boundary! {
        let client = ptr_arg!(mut client);
        let out = ptr_arg!(out out);
        if customer_id == -1 {
            return factory_status::ERR_INVALID_ARGUMENT;
        }
        match client.client.order(customer_id, order_number) {
            Ok(info) => {
                out.write(info.into());
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// Reads the committed record of `customer_id` from the server this client
/// is connected to (a backup may lag its primary by the last write), blocks
/// until it answers, and stores it in `*out`; `last_order` is -1 for a
/// customer with no order. On failure leaves `*out` untouched; errors are
/// those of `factory_client_order`.
#[no_mangle]
pub extern "C" fn factory_client_read(
    client: *mut factory_client,
    customer_id: i32,
    out: *mut factory_customer_record,
) -> factory_status {
    ffi_boundary! {
        let client = ptr_arg!(mut client);
        let out = ptr_arg!(out out);
        if customer_id == -1 {
            return factory_status::ERR_INVALID_ARGUMENT;
        }
        match client.client.read(customer_id) {
            Ok(record) => {
                out.write(record.into());
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// Ends the session (telling the server, if it is still there), closes the
/// connection and frees the client. NULL is a no-op. Does not wait for the
/// server beyond one write.
#[no_mangle]
pub extern "C" fn factory_client_close(client: *mut factory_client) {
    ffi_boundary! {
        ptr_arg!(owned client).client.close();
    }
}

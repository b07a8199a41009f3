//! The cluster client of the C ABI: `factory_cluster`, a client of a list
//! of servers that finds the primary and resends a request to the next
//! server when one fails ([`crate::client::Cluster`]), with the same order
//! and read calls, reply structs and status codes as `factory_client`.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::time::Duration;

use super::boundary::owned_text;
use super::client::{factory_customer_record, factory_robot_info};
use super::signal::ignore_default_sigpipe;
use super::status::factory_status;
use crate::client::{Cluster, ClusterOptions};

/// Most addresses one cluster client takes.
const MAX_SERVERS: usize = 1024;

/// A client of a cluster. Opaque.
///
/// Ownership: made by `factory_cluster_connect`, closed and freed by
/// `factory_cluster_close`.
/// Thread-safety: used by one thread at a time (it may move between
/// threads); connect one per thread to run requests in parallel.
/// Unlike a `factory_client`, it stays usable after a failed call: the
/// next call looks for a server again.
pub struct factory_cluster {
    cluster: Cluster,
}

/// Connects to a cluster: `servers` points to `count` NUL-terminated
/// addresses "host:port" (each copied). The client asks the servers for
/// their status, opens a session with the primary (else with any server
/// that answers), and later sends every order and read there; when that
/// server fails, times out or closes the session, the request is sent again
/// to the next server, with backoff, until `deadline_ms` milliseconds have
/// passed since the call began (0: the default, 30000). Each attempt on one
/// server waits at most 5 s (or the deadline, if shorter). Resending is safe:
/// an order sets the customer's last order, so sending the same order again
/// leaves the same record. Blocks until a session is open. On success
/// stores the client in `*out`, which the caller owns and must pass to
/// `factory_cluster_close`; on failure leaves `*out` untouched. Ignores
/// SIGPIPE if its action is SIG_DFL.
///
/// Returns `FACTORY_ERR_UNAVAILABLE` if no server could be reached before
/// the deadline, `FACTORY_ERR_INVALID_ARGUMENT` for a count of 0 or over
/// 1024 (checked first, so an empty list may be NULL), or an address that is empty, not UTF-8 or not "host:port",
/// `FACTORY_ERR_NULL_POINTER` if `servers`, one of its entries or `out` is
/// NULL.
#[no_mangle]
pub extern "C" fn factory_cluster_connect(
    servers: *const *const c_char,
    count: usize,
    deadline_ms: u32,
    out: *mut *mut factory_cluster,
) -> factory_status {
    ffi_boundary! {
        let list = match server_list(servers, count) {
            Ok(list) => list,
            Err(status) => return status,
        };
        let out = ptr_arg!(out out);
        ignore_default_sigpipe();
        let deadline = if deadline_ms == 0 {
            ClusterOptions::default().deadline
        } else {
            Duration::from_millis(deadline_ms.into())
        };
        let options = ClusterOptions {
            deadline,
            attempt_timeout: ClusterOptions::default().attempt_timeout.min(deadline),
        };
        let cluster = match Cluster::new(list, options) {
            Ok(c) => c,
            Err(_) => return factory_status::ERR_INVALID_ARGUMENT,
        };
        let mut handle = factory_cluster { cluster };
        match handle.cluster.connect_now() {
            Ok(()) => {
                out.write(Box::into_raw(Box::new(handle)));
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// The `count` addresses at `servers`, copied, for the connect calls that
/// take a server list (this one and `factory_kv_connect_cluster`): the
/// count checked first (so an empty list may be NULL), then each entry.
pub(super) fn server_list(
    servers: *const *const c_char,
    count: usize,
) -> Result<Vec<String>, factory_status> {
    if count == 0 || count > MAX_SERVERS {
        return Err(factory_status::ERR_INVALID_ARGUMENT);
    }
    if servers.is_null() {
        return Err(factory_status::ERR_NULL_POINTER);
    }
    // SAFETY: `servers` is non-NULL and points to `count` pointers
    // (documented contract), which live for the call.
    let entries = unsafe { std::slice::from_raw_parts(servers, count) };
    let mut list = Vec::with_capacity(count);
    for &entry in entries {
        if entry.is_null() {
            return Err(factory_status::ERR_NULL_POINTER);
        }
        // SAFETY: non-NULL entries are NUL-terminated strings that live
        // for the call (documented contract); the text is copied.
        let text = unsafe { CStr::from_ptr(entry) };
        list.push(owned_text(text)?);
    }
    Ok(list)
}

/// Places order `order_number` for `customer_id` on the cluster and blocks
/// until a server has committed it (resending it to the next server after
/// a failure, within the deadline), then stores the reply in `*out`; on
/// failure leaves `*out` untouched.
///
/// Returns `FACTORY_ERR_UNAVAILABLE` if no server served it before the
/// deadline, `FACTORY_ERR_PROTOCOL` if a reply does not echo the request,
/// `FACTORY_ERR_INVALID_ARGUMENT` for customer id -1,
/// `FACTORY_ERR_NULL_POINTER`.
#[no_mangle]
pub extern "C" fn factory_cluster_order(
    cluster: *mut factory_cluster,
    customer_id: i32,
    order_number: i32,
    out: *mut factory_robot_info,
) -> factory_status {
    ffi_boundary! {
        let cluster = ptr_arg!(mut cluster);
        let out = ptr_arg!(out out);
        if customer_id == -1 {
            return factory_status::ERR_INVALID_ARGUMENT;
        }
        match cluster.cluster.order(customer_id, order_number) {
            Ok(info) => {
                out.write(info.into());
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// Reads the committed record of `customer_id` from the server the client
/// uses (the primary when it could be found), and stores it in `*out`;
/// `last_order` is -1 for a customer with no order. On failure leaves
/// `*out` untouched; errors are those of `factory_cluster_order`.
#[no_mangle]
pub extern "C" fn factory_cluster_read(
    cluster: *mut factory_cluster,
    customer_id: i32,
    out: *mut factory_customer_record,
) -> factory_status {
    ffi_boundary! {
        let cluster = ptr_arg!(mut cluster);
        let out = ptr_arg!(out out);
        if customer_id == -1 {
            return factory_status::ERR_INVALID_ARGUMENT;
        }
        match cluster.cluster.read(customer_id) {
            Ok(record) => {
                out.write(record.into());
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// Ends the open session, closes the connection and frees the client. NULL
/// is a no-op.
#[no_mangle]
pub extern "C" fn factory_cluster_close(cluster: *mut factory_cluster) {
    ffi_boundary! {
        ptr_arg!(owned cluster).cluster.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Server, ServerConfig};
    use std::ffi::CString;
    use std::ptr;

    #[test]
    fn connect_order_read_close() {
        let server = Server::start(ServerConfig::loopback(0, 0)).expect("server");
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused_port = refused.local_addr().unwrap().port();
        drop(refused);
        let addresses = [
            CString::new(format!("127.0.0.1:{refused_port}")).unwrap(),
            CString::new(server.local_addr().to_string()).unwrap(),
        ];
        let pointers: Vec<*const c_char> = addresses.iter().map(|a| a.as_ptr()).collect();
        let mut cluster: *mut factory_cluster = ptr::null_mut();
        assert_eq!(
            factory_cluster_connect(pointers.as_ptr(), 2, 5_000, &mut cluster),
            factory_status::OK
        );
        let mut info = factory_robot_info {
            customer_id: 0,
            order_number: 0,
            request_type: 0,
            engineer_id: 0,
            admin_id: 0,
        };
        assert_eq!(
            factory_cluster_order(cluster, 7, 42, &mut info),
            factory_status::OK
        );
        assert_eq!((info.customer_id, info.order_number), (7, 42));
        let mut record = factory_customer_record {
            customer_id: 0,
            last_order: 0,
        };
        assert_eq!(
            factory_cluster_read(cluster, 7, &mut record),
            factory_status::OK
        );
        assert_eq!(record.last_order, 42);
        assert_eq!(
            factory_cluster_read(cluster, -1, &mut record),
            factory_status::ERR_INVALID_ARGUMENT
        );
        factory_cluster_close(cluster);
        server.stop();
    }

    #[test]
    fn bad_arguments() {
        let mut cluster: *mut factory_cluster = ptr::null_mut();
        assert_eq!(
            factory_cluster_connect(ptr::null(), 1, 0, &mut cluster),
            factory_status::ERR_NULL_POINTER
        );
        let bad = CString::new("no-port").unwrap();
        let list = [bad.as_ptr()];
        assert_eq!(
            factory_cluster_connect(list.as_ptr(), 0, 0, &mut cluster),
            factory_status::ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            factory_cluster_connect(list.as_ptr(), 1, 0, &mut cluster),
            factory_status::ERR_INVALID_ARGUMENT
        );
        let nulls = [ptr::null::<c_char>()];
        assert_eq!(
            factory_cluster_connect(nulls.as_ptr(), 1, 0, &mut cluster),
            factory_status::ERR_NULL_POINTER
        );
        assert!(cluster.is_null(), "untouched on failure");
        factory_cluster_close(ptr::null_mut());
    }

    #[test]
    fn nothing_reachable_is_unavailable_at_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let address = CString::new(format!("127.0.0.1:{port}")).unwrap();
        let list = [address.as_ptr()];
        let mut cluster: *mut factory_cluster = ptr::null_mut();
        assert_eq!(
            factory_cluster_connect(list.as_ptr(), 1, 300, &mut cluster),
            factory_status::ERR_UNAVAILABLE
        );
        assert!(cluster.is_null());
    }
}

//! The server half of the C ABI: `factory_server_config`, built up by C and
//! then handed to `factory_server_start`, and `factory_server`, a running
//! [`Server`] that `factory_server_stop` stops, joins and frees.

use std::net::IpAddr;
use std::os::raw::c_char;

use super::boundary::owned_text;
use super::signal::ignore_default_sigpipe;
use super::status::factory_status;
use crate::server::{PeerConfig, Server, ServerConfig};

/// The settings of a server not yet started: its id, listening address and
/// peers. Opaque.
///
/// Ownership: made by `factory_server_config_new`, freed by
/// `factory_server_config_free`; starting a server copies it, so it may be
/// freed (or reused for another server) right after `factory_server_start`.
/// Thread-safety: no locking; one thread at a time. Calls do not block.
pub struct factory_server_config {
    config: ServerConfig,
}

/// A running server: a listening socket and its threads. Opaque.
///
/// Ownership: made by `factory_server_start`, stopped and freed by
/// `factory_server_stop` (there is no other free).
/// Thread-safety: `factory_server_port`, `factory_server_add_peer` and
/// `factory_server_last_order` may be called from several threads at once;
/// `factory_server_stop` may be called from any thread, once, when no other
/// call on the same server is running.
pub struct factory_server {
    server: Server,
}

/// A new configuration for a server with id `factory_id`, listening on
/// `port` on every IPv4 interface (as the original server does) and with no
/// peers. Port 0 lets the system pick a free port when the server starts;
/// see `factory_server_port`.
///
/// Returns NULL only if allocation fails. The caller owns the result and
/// frees it with `factory_server_config_free`.
#[no_mangle]
pub extern "C" fn factory_server_config_new(
    port: u16,
    factory_id: i32,
) -> *mut factory_server_config {
    ffi_boundary! {
        let config = ServerConfig::new(port, factory_id);
        Box::into_raw(Box::new(factory_server_config { config }))
    }
}

/// Listens on the IPv4 or IPv6 address `ip` (e.g. "127.0.0.1") instead of
/// every IPv4 interface; the port stays the one given to
/// `factory_server_config_new`. The string is copied.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` if `ip` is not an IP address
/// (host names are not accepted here), `FACTORY_ERR_NULL_POINTER` if an
/// argument is NULL.
#[no_mangle]
pub extern "C" fn factory_server_config_set_bind(
    config: *mut factory_server_config,
    ip: *const c_char,
) -> factory_status {
    ffi_boundary! {
        let config = ptr_arg!(mut config);
        let ip = ptr_arg!(cstr ip);
        let Some(addr) = ip.to_str().ok().and_then(|s| s.parse::<IpAddr>().ok()) else {
            return factory_status::ERR_INVALID_ARGUMENT;
        };
        config.config.bind.set_ip(addr);
        factory_status::OK
    }
}

/// Adds a backup, `peer_id` at `host:port`, that the server replicates to
/// once it becomes primary (on its first write). `host` is a name or an IP
/// address, copied; it is resolved only when the server connects.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` for an empty or non-UTF-8 host,
/// `FACTORY_ERR_NULL_POINTER` if an argument is NULL.
#[no_mangle]
pub extern "C" fn factory_server_config_add_peer(
    config: *mut factory_server_config,
    peer_id: i32,
    host: *const c_char,
    port: u16,
) -> factory_status {
    ffi_boundary! {
        let config = ptr_arg!(mut config);
        let host = match owned_text(ptr_arg!(cstr host)) {
            Ok(host) => host,
            Err(status) => return status,
        };
        config.config.peers.push(PeerConfig { id: peer_id, host, port });
        factory_status::OK
    }
}

/// Frees a configuration. NULL is a no-op.
#[no_mangle]
pub extern "C" fn factory_server_config_free(config: *mut factory_server_config) {
    ffi_boundary! {
        drop(ptr_arg!(owned config));
    }
}

/// Starts a server with a copy of `config`: binds its socket and starts its
/// threads, then returns without waiting for clients. On success stores the
/// new server in `*out`, which the caller owns and must pass to
/// `factory_server_stop`; on failure leaves `*out` untouched. Ignores
/// SIGPIPE if its action is SIG_DFL (see the header's preamble).
///
/// Returns `FACTORY_ERR_ADDRESS_IN_USE` if the port is taken,
/// `FACTORY_ERR_IO` if the socket or a thread cannot be created,
/// `FACTORY_ERR_NULL_POINTER` if an argument is NULL.
#[no_mangle]
pub extern "C" fn factory_server_start(
    config: *const factory_server_config,
    out: *mut *mut factory_server,
) -> factory_status {
    ffi_boundary! {
        let config = ptr_arg!(ref config);
        let out = ptr_arg!(out out);
        ignore_default_sigpipe();
        match Server::start(config.config.clone()) {
            Ok(server) => {
                out.write(Box::into_raw(Box::new(factory_server { server })));
                factory_status::OK
            }
            Err(e) => factory_status::from(&e),
        }
    }
}

/// The port the server listens on: the one configured, or the one the
/// system picked for port 0. Returns 0 if `server` is NULL. Does not block.
#[no_mangle]
pub extern "C" fn factory_server_port(server: *const factory_server) -> u16 {
    ffi_boundary! {
        ptr_arg!(ref server).server.local_addr().port()
    }
}

/// Adds a backup to a running server, for clusters whose ports are known
/// only after their servers started (port 0). A primary connects to a peer
/// added while it runs before it replicates its next write. `host` is
/// copied. Does not block.
///
/// Returns `FACTORY_ERR_INVALID_ARGUMENT` for an empty or non-UTF-8 host,
/// `FACTORY_ERR_NULL_POINTER` if an argument is NULL.
#[no_mangle]
pub extern "C" fn factory_server_add_peer(
    server: *mut factory_server,
    peer_id: i32,
    host: *const c_char,
    port: u16,
) -> factory_status {
    ffi_boundary! {
        let server = ptr_arg!(ref server);
        let host = match owned_text(ptr_arg!(cstr host)) {
            Ok(host) => host,
            Err(status) => return status,
        };
        server.server.add_peer(PeerConfig { id: peer_id, host, port });
        factory_status::OK
    }
}

/// Stores in `*out` the last order of `customer_id` that this server has
/// committed and applied (-1: none), read locally without the network.
/// A backup applies an entry when the next one arrives, so it may lag its
/// primary by the last write. Does not block on the network.
///
/// Returns `FACTORY_ERR_NULL_POINTER` if an argument is NULL.
#[no_mangle]
pub extern "C" fn factory_server_last_order(
    server: *const factory_server,
    customer_id: i32,
    out: *mut i32,
) -> factory_status {
    ffi_boundary! {
        let server = ptr_arg!(ref server);
        let out = ptr_arg!(out out);
        out.write(server.server.last_order(customer_id));
        factory_status::OK
    }
}

/// Stops a server and frees it: closes its listening socket and every
/// connection (clients blocked in a call get `FACTORY_ERR_CLOSED` or
/// `FACTORY_ERR_IO`), fails writes still waiting, and returns only when all
/// of its threads have ended; this may block for up to a few seconds while
/// a peer connection times out. Callable from any thread, once.
///
/// Returns `FACTORY_ERR_NULL_POINTER` (and does nothing) if `server` is
/// NULL, otherwise `FACTORY_OK`; the handle is invalid afterwards either way.
#[no_mangle]
pub extern "C" fn factory_server_stop(server: *mut factory_server) -> factory_status {
    ffi_boundary! {
        ptr_arg!(owned server).server.stop();
        factory_status::OK
    }
}

//! Errors that stop a server from starting.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why [`super::Server::start`] failed.
#[derive(Debug)]
pub enum ServerError {
    /// Another socket already listens on the address.
    AddressInUse(SocketAddr),
    /// The listening socket could not be created for another reason.
    Bind(SocketAddr, io::Error),
    /// A thread or socket operation failed.
    Io(io::Error),
    /// The data directory cannot be used (the message names file and offset).
    Storage(crate::storage::StorageError),
}

impl ServerError {
    pub(crate) fn bind(addr: SocketAddr, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::AddrInUse {
            ServerError::AddressInUse(addr)
        } else {
            ServerError::Bind(addr, e)
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::AddressInUse(addr) => write!(
                f,
                "port {} is already in use (cannot listen on {addr})",
                addr.port()
            ),
            ServerError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServerError::Io(e) => write!(f, "cannot start the server: {e}"),
            ServerError::Storage(e) => write!(f, "cannot use the data directory: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind(_, e) | ServerError::Io(e) => Some(e),
            ServerError::Storage(e) => Some(e),
            ServerError::AddressInUse(_) => None,
        }
    }
}

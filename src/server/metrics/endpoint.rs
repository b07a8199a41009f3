//! `server --metrics ADDR`: the shared `/metrics` endpoint
//! ([`crate::exposition::Endpoint`]) rendering this server's text, started
//! by `Server::start` and stopped by `Server::stop`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::text::render;
use crate::server::{ServerError, Shared};

/// The server's `/metrics` endpoint.
pub(crate) struct Endpoint(crate::exposition::Endpoint);

impl Endpoint {
    /// Listens on `addr` and answers scrapes from one thread.
    pub(crate) fn start(shared: Arc<Shared>, addr: SocketAddr) -> Result<Endpoint, ServerError> {
        let name = format!("metrics-{}", shared.factory_id);
        crate::exposition::Endpoint::start(addr, name, Box::new(move || render(&shared)))
            .map(Endpoint)
            .map_err(ServerError::Io)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// Stops answering and joins the thread (dropping it does the same, so
    /// a server that fails to start after its endpoint did leaves no
    /// thread behind).
    pub(crate) fn stop(&mut self) {
        self.0.stop();
    }
}

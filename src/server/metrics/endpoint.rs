//! `server --metrics ADDR`: a tiny_http server whose requests one
//! blocking thread answers (`GET /metrics`, anything else 404 or 405),
//! started by `Server::start` and stopped by `Server::stop`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::text::render;
use crate::server::{ServerError, Shared};

/// The `/metrics` endpoint: its HTTP server and the thread answering it.
pub(crate) struct Endpoint {
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Endpoint {
    /// Listens on `addr` and answers scrapes from one thread.
    pub(crate) fn start(shared: Arc<Shared>, addr: SocketAddr) -> Result<Endpoint, ServerError> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            ServerError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot serve --metrics on {addr}: {e}"),
            ))
        })?;
        let addr = listener.local_addr().map_err(ServerError::Io)?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))?;
        let http = Arc::new(http);
        let thread = {
            let http = Arc::clone(&http);
            std::thread::Builder::new()
                .name(format!("metrics-{}", shared.factory_id))
                .spawn(move || serve(&shared, &http))
                .map_err(ServerError::Io)?
        };
        log::info!("metrics on http://{addr}/metrics");
        Ok(Endpoint {
            http,
            thread: Some(thread),
            addr,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and joins the thread.
    pub(crate) fn stop(&mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Endpoint {
    /// A server that fails to start after its endpoint did leaves no
    /// thread behind.
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(shared: &Shared, http: &tiny_http::Server) {
    // recv fails once unblock() is called (server stopping).
    while let Ok(request) = http.recv() {
        let response = answer(shared, request.method(), request.url());
        if let Err(e) = request.respond(response) {
            log::debug!("metrics scrape: could not send the reply: {e}");
        }
    }
}

fn answer(
    shared: &Shared,
    method: &tiny_http::Method,
    url: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let (status, body, kind) = match (method, path) {
        (tiny_http::Method::Get, "/metrics") => (
            200,
            render(shared),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (tiny_http::Method::Get, _) => (404, "not found: try /metrics\n".into(), "text/plain"),
        _ => (405, "only GET is served\n".into(), "text/plain"),
    };
    let header =
        tiny_http::Header::from_bytes("Content-Type", kind).expect("a constant header is valid");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

//! The Prometheus text exposition (format 0.0.4) and the blocking
//! `GET /metrics` endpoint that serves it, shared by `server --metrics`
//! (`server::metrics`) and `load --metrics` (`balancer::metrics`). Each
//! caller owns its counters and renders them with [`Text`]; the endpoint
//! calls the caller's render function once per scrape.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The exposition text, one family after another.
#[derive(Default)]
pub(crate) struct Text(String);

impl Text {
    pub(crate) fn with_capacity(n: usize) -> Text {
        Text(String::with_capacity(n))
    }

    /// The `# HELP` and `# TYPE` lines of a family.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` is `k="v",…` or empty.
    pub(crate) fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    /// A family of one unlabelled sample.
    pub(crate) fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    /// A histogram from per-bucket counts (not cumulative; one per bound,
    /// then the overflow), their sum, and the divisor that turns the
    /// observed unit into the exposed one.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[u64],
        counts: &[u64],
        sum: u64,
        divisor: f64,
    ) {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, count) in bounds.iter().zip(counts) {
            cumulative += count;
            let le = *bound as f64 / divisor;
            self.sample(
                &format!("{name}_bucket"),
                &format!("le=\"{le}\""),
                cumulative,
            );
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        self.sample(&format!("{name}_bucket"), "le=\"+Inf\"", cumulative);
        self.sample(&format!("{name}_sum"), "", sum as f64 / divisor);
        self.sample(&format!("{name}_count"), "", cumulative);
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub(crate) fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What a scrape renders.
pub(crate) type Render = Box<dyn Fn() -> String + Send>;

/// The `/metrics` endpoint: a tiny_http server whose requests one thread
/// answers (`GET /metrics`, anything else 404 or 405). Dropping it stops
/// it and joins the thread.
pub(crate) struct Endpoint {
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Endpoint {
    /// Listens on `addr` and answers scrapes from one thread named
    /// `thread_name`.
    ///
    /// # Errors
    /// The address cannot be bound (the message names it), or the thread
    /// cannot start.
    pub(crate) fn start(
        addr: SocketAddr,
        thread_name: String,
        render: Render,
    ) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot serve --metrics on {addr}: {e}"))
        })?;
        let addr = listener.local_addr()?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let http = Arc::new(http);
        let thread = {
            let http = Arc::clone(&http);
            std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || serve(&render, &http))?
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
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(render: &Render, http: &tiny_http::Server) {
    // recv fails once unblock() is called (stopping).
    while let Ok(request) = http.recv() {
        let response = answer(render, request.method(), request.url());
        if let Err(e) = request.respond(response) {
            log::debug!("metrics scrape: could not send the reply: {e}");
        }
    }
}

fn answer(
    render: &Render,
    method: &tiny_http::Method,
    url: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let (status, body, kind) = match (method, path) {
        (tiny_http::Method::Get, "/metrics") => {
            (200, render(), "text/plain; version=0.0.4; charset=utf-8")
        }
        (tiny_http::Method::Get, _) => (404, "not found: try /metrics\n".into(), "text/plain"),
        _ => (405, "only GET is served\n".into(), "text/plain"),
    };
    let header =
        tiny_http::Header::from_bytes("Content-Type", kind).expect("a constant header is valid");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut t = Text::default();
        t.histogram("b", "help", &[1, 4], &[2, 1, 3], 20, 1.0);
        let text = t.into_string();
        assert!(text.contains("b_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("b_bucket{le=\"4\"} 3\n"), "{text}");
        assert!(text.contains("b_bucket{le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("b_sum 20\n"), "{text}");
        assert!(text.contains("b_count 6\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

//! What a connection does with the bytes it receives, as plain code with no
//! sockets, threads or clocks (sans-IO): fed bytes and a view of the
//! server's state, it returns the next action.
//!
//! The server's connection threads (`server::session::v1`) run exactly this
//! code over their sockets, and so do the property tests (`tests/`) and the
//! fuzz targets (`fuzz/`) over arbitrary bytes; what they check is therefore
//! what the server does.
//!
//! - [`session`]: a client session after its `CLIENT` tag: reassembling
//!   12-byte requests, telling writes, reads, the end of a session and
//!   hostile input apart, the replies' bytes, and where a request is served.

pub mod session;

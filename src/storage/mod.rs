//! The durable log (being written; see issue 4).

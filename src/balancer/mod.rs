//! The load balancer (`load`, issue 16): one address for a whole cluster.
//!
//! - [`cache`]: the LRU a read cache keeps its records in (pure).

pub mod cache;

//! The replicated state as plain data and rules, with no sockets or threads:
//! the state-machine log, the customer record table, the string store
//! ([`kv`], protocol v2's keys and values), and the indexes
//! (`last_index`, `committed_index`, `primary_id`) with the original's rules
//! for appending, committing, applying and acknowledging.
//!
//! The server's admin thread (primary) and replication handlers (backups)
//! drive a [`Replica`] under one lock; client threads read the
//! [`RecordTable`] directly, so reads never wait behind replication.

pub mod kv;
mod log;
mod records;
mod replica;
mod versioned;

pub use self::log::Log;
pub use records::RecordTable;
pub use replica::{next_epoch, LogChange, Replica, StateError, NO_INDEX, NO_PRIMARY, V1_EPOCH};

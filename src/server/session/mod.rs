//! What a client connection meets on any server. [`v1`] is the original's
//! 12-byte request session (its "engineer" thread), [`kv`] the pipelined
//! protocol v2 session of string keys and values. Both read by the rule of
//! G6 ([`reads`]) and place writes through [`write`]: to this server's
//! admin when it is primary, else [`forward`]ed to the primary. Custom
//! orders go to the [`experts`].

pub(crate) mod experts;
pub(crate) mod forward;
pub(crate) mod kv;
pub(crate) mod reads;
pub(crate) mod v1;
pub(crate) mod write;

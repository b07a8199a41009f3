//! The backup's roles: [`follower`] handles a native connection from a
//! primary (its stream of appends, snapshots and heartbeats, each
//! acknowledged once durable) or from a candidate (a probe of where our log
//! ends); [`original`] handles an original primary's `PFA` stream.

pub(crate) mod follower;
pub(crate) mod original;

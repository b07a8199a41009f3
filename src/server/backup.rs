//! A backup's handler for one `PFA` replication stream (the original's
//! `HandleReplication`): store each entry, apply what the primary says is
//! committed, acknowledge.
//!
//! Acks are buffered and flushed whenever no further frame is already
//! waiting, so a primary that pipelines a batch gets its acks in one packet.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};

use super::Shared;
use crate::conn::{read_frame, write_frame, ConnError};
use crate::state::StateError;
use crate::wire::{ReplicationAck, ReplicationRequest};

enum StreamEnd {
    Conn(ConnError),
    Refused(StateError),
}

pub(super) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    // The primary may stay quiet for as long as no client writes.
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(shared.limits.peer_timeout));
    log::info!("replication stream (v1) opened by {peer}");
    shared
        .followed_v1
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut primary = None;
    let end = follow(shared, &stream, &mut primary);
    shared.replica().on_stream_closed();
    let who = primary.map_or_else(|| "unknown".to_string(), |id: i32| id.to_string());
    match end {
        StreamEnd::Conn(ConnError::Closed) => {
            log::info!("lost primary {who} at {peer}: stream closed")
        }
        StreamEnd::Conn(e) => log::warn!("lost primary {who} at {peer}: {e}"),
        StreamEnd::Refused(e) => {
            log::warn!("replication stream from {peer} (primary {who}): {e}; closing")
        }
    }
}

fn follow(shared: &Shared, stream: &TcpStream, primary: &mut Option<i32>) -> StreamEnd {
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(stream);
    loop {
        let request: ReplicationRequest = match read_frame(&mut reader) {
            Ok(r) => r,
            Err(e) => return StreamEnd::Conn(e),
        };
        let ack = match apply(shared, &request) {
            Ok(ack) => ack,
            Err(e) => return StreamEnd::Refused(e),
        };
        if *primary != Some(request.primary_id) {
            log::info!("following primary {}", request.primary_id);
            *primary = Some(request.primary_id);
        }
        if let Err(e) = write_frame(&mut writer, &ack) {
            return StreamEnd::Conn(e);
        }
        if reader.buffer().is_empty() {
            if let Err(e) = writer.flush() {
                return StreamEnd::Conn(e.into());
            }
        }
    }
}

fn apply(shared: &Shared, request: &ReplicationRequest) -> Result<ReplicationAck, StateError> {
    let mut replica = shared.replica();
    let (ack, committed) = replica.on_replicate(request)?;
    shared.records.apply(committed);
    Ok(ack)
}

//! A backup's handler for one `PFA` replication stream (the original's
//! `HandleReplication`): store each entry, apply what the primary says is
//! committed, acknowledge.
//!
//! Acks are buffered and flushed whenever no further frame is already
//! waiting, so a primary that pipelines a batch gets its acks in one packet.
//!
//! Hostile or broken input never makes the log grow by more than one entry
//! per frame (see [`crate::state::Replica::on_replicate`]): a frame with a
//! negative index, an index past the next one expected, or a commit index
//! past its own entry is refused and the stream closed with a warning. The
//! primary may stay quiet between frames as long as it likes, but a frame
//! it began must keep coming: nothing for the peer timeout in the middle of
//! one closes the stream (a client that dialled a backup's port with `PFA`
//! and sent a 12-byte request would otherwise hold it for ever).

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::conn::{write_frame, ConnError};
use crate::server::election::elected;
use crate::server::metrics::Fault;
use crate::server::Shared;
use crate::state::StateError;
use crate::wire::{Frame, ReplicationAck, ReplicationRequest};

enum StreamEnd {
    Conn(ConnError),
    Stalled { got: usize },
    Refused(StateError),
}

pub(crate) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    // Reads wake up every peer timeout: between frames only to wait on,
    // inside one to give up (see `read_request`).
    let _ = stream.set_read_timeout(Some(shared.limits.peer_timeout));
    let _ = stream.set_write_timeout(Some(shared.limits.peer_timeout));
    log::info!("replication stream (v1) opened by {peer}");
    shared
        .followed_v1
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut primary = None;
    // An original primary streams to us: the cluster is mixed.
    elected::found_original(shared, crate::state::NO_PRIMARY);
    let end = follow(shared, &stream, &mut primary);
    shared.replica().on_stream_closed();
    // The original's frames name the primary; its configured address is
    // what an operator knows it by, not the stream's source port.
    let who = primary.map_or_else(
        || format!("(unknown id) connected from {peer}"),
        |id: i32| shared.peer_called(id, peer),
    );
    if matches!(end, StreamEnd::Stalled { .. } | StreamEnd::Refused(_)) {
        shared.metrics.error(Fault::ReplicationStream);
    }
    match end {
        StreamEnd::Conn(ConnError::Closed) => {
            log::info!("lost primary {who}: stream closed")
        }
        StreamEnd::Conn(e @ ConnError::Truncated { .. }) => {
            log::debug!("replication stream from {peer}: {e}");
            log::info!("lost primary {who}: stream closed")
        }
        StreamEnd::Stalled { got } => log::warn!(
            "replication stream from primary {who}: sent {got} of {} bytes of a frame, then nothing for {:?}; closing",
            ReplicationRequest::SIZE,
            shared.limits.peer_timeout
        ),
        StreamEnd::Conn(e) => log::warn!("lost primary {who}: {e}"),
        StreamEnd::Refused(e) => {
            log::warn!("replication stream from primary {who}: {e}; closing")
        }
    }
}

fn follow(shared: &Shared, stream: &TcpStream, primary: &mut Option<i32>) -> StreamEnd {
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(stream);
    loop {
        let request = match read_request(shared, &mut reader) {
            Ok(r) => r,
            Err(end) => return end,
        };
        let ack = match apply(shared, &request) {
            Ok(ack) => ack,
            Err(e) => return StreamEnd::Refused(e),
        };
        if *primary != Some(request.primary_id) {
            log::info!(
                "following primary {} (an original server)",
                stream.peer_addr().map_or_else(
                    |_| request.primary_id.to_string(),
                    |from| shared.peer_called(request.primary_id, from)
                )
            );
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

/// Reads one frame. A read timeout between frames is only an idle primary;
/// inside a frame it ends the stream.
fn read_request(shared: &Shared, reader: &mut impl Read) -> Result<ReplicationRequest, StreamEnd> {
    let mut buf = [0u8; ReplicationRequest::SIZE];
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(StreamEnd::Conn(ConnError::Closed)),
            Ok(0) => {
                return Err(StreamEnd::Conn(ConnError::Truncated {
                    got,
                    want: buf.len(),
                }))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if got > 0 {
                    return Err(StreamEnd::Stalled { got });
                }
                if shared.stopping() {
                    return Err(StreamEnd::Conn(ConnError::Closed));
                }
            }
            Err(e) => return Err(StreamEnd::Conn(e.into())),
        }
    }
    Ok(ReplicationRequest::decode(&buf))
}

fn apply(shared: &Shared, request: &ReplicationRequest) -> Result<ReplicationAck, StateError> {
    let mut replica = shared.replica();
    let (ack, first, committed) = replica.on_replicate_indexed(request)?;
    shared.records.apply(first, committed);
    Ok(ack)
}

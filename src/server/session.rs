//! A client session (the original's "engineer" thread): reads 12-byte
//! requests and answers each. Writes go through the admin thread and are
//! answered once committed; reads are answered from the committed records
//! at once, without waiting for the admin.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::admin::{Completion, WriteError};
use super::Shared;
use crate::conn::{read_frame, write_frame, ConnError};
use crate::state::V1_EPOCH;
use crate::wire::{CustomerRecord, Entry, RequestType, RobotInfo, RobotOrder};

/// Why a session ended early (a clean close is not an error).
enum SessionEnd {
    Conn(ConnError),
    Write(WriteError),
    UnknownRequest(i32),
}

pub(super) fn run(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, engineer_id: i32) {
    // A client may stay idle as long as it likes, but must take its replies.
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(Some(shared.limits.client_write_timeout));
    let done = Arc::new(Completion::new());
    match serve(shared, &mut stream, &done, engineer_id) {
        Ok(()) | Err(SessionEnd::Conn(ConnError::Closed)) => {
            log::debug!("client {peer} (engineer {engineer_id}) ended its session")
        }
        Err(SessionEnd::Conn(e @ ConnError::Truncated { .. })) => {
            log::debug!("client {peer}: {e}")
        }
        Err(SessionEnd::Conn(e)) => log::warn!("client {peer}: {e}; closing"),
        Err(SessionEnd::Write(e)) => log::warn!("client {peer}: write failed: {e}; closing"),
        Err(SessionEnd::UnknownRequest(t)) => log::warn!(
            "client {peer}: unknown request type {t}, expected 1 (write) or 2 (read); closing"
        ),
    }
}

fn serve(
    shared: &Shared,
    stream: &mut TcpStream,
    done: &Arc<Completion>,
    engineer_id: i32,
) -> Result<(), SessionEnd> {
    loop {
        let order: RobotOrder = read_frame(stream).map_err(SessionEnd::Conn)?;
        if order.ends_session() {
            return Ok(());
        }
        match order.kind() {
            Some(RequestType::Write) => {
                let entry = Entry::set(V1_EPOCH, order.customer_id, order.order_number);
                shared
                    .admin_queue
                    .submit_and_wait(entry, done)
                    .map_err(SessionEnd::Write)?;
                write_frame(stream, &RobotInfo::for_order(&order, engineer_id))
            }
            Some(RequestType::Read) => {
                let record = CustomerRecord {
                    customer_id: order.customer_id,
                    last_order: shared.records.last_order(order.customer_id),
                };
                write_frame(stream, &record)
            }
            None => return Err(SessionEnd::UnknownRequest(order.request_type)),
        }
        .map_err(SessionEnd::Conn)?;
    }
}

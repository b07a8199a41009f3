//! A client session (the original's "engineer" thread): reads 12-byte
//! requests and answers each. Writes go through the admin thread and are
//! answered once committed; on a backup they are forwarded to the primary
//! (G2), never applied here first. Reads are answered from the committed
//! records at once, without waiting for the admin.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use std::thread;
use std::time::Duration;

use super::admin::{Completion, WriteError};
use super::forward::Forwarder;
use super::Shared;
use crate::conn::{read_frame, write_frame, ConnError};
use crate::state::{NO_PRIMARY, V1_EPOCH};
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
    let mut forwarder = Forwarder::default();
    match serve(shared, &mut stream, &done, &mut forwarder, engineer_id) {
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
    forwarder: &mut Forwarder,
    engineer_id: i32,
) -> Result<(), SessionEnd> {
    loop {
        let order: RobotOrder = read_frame(stream).map_err(SessionEnd::Conn)?;
        if order.ends_session() {
            return Ok(());
        }
        match order.kind() {
            Some(RequestType::Write) => {
                write(shared, &order, done, forwarder).map_err(SessionEnd::Write)?;
                write_frame(stream, &RobotInfo::for_order(&order, engineer_id))
            }
            Some(RequestType::Read) => {
                let record = read(shared, order.customer_id, forwarder);
                write_frame(stream, &record)
            }
            None => return Err(SessionEnd::UnknownRequest(order.request_type)),
        }
        .map_err(SessionEnd::Conn)?;
    }
}

/// Most attempts to place one write while a primary is being found.
const WRITE_ATTEMPTS: u32 = 60;

/// Places a write: through our admin when we are (or may become) primary,
/// else by forwarding it to the primary; retried while a takeover settles.
fn write(
    shared: &Shared,
    order: &RobotOrder,
    done: &Arc<Completion>,
    forwarder: &mut Forwarder,
) -> Result<(), WriteError> {
    let entry = Entry::set(V1_EPOCH, order.customer_id, order.order_number);
    let mut last_error = WriteError::NoPrimary;
    for attempt in 0..WRITE_ATTEMPTS {
        let target = match route(shared) {
            None => match super::admin::submit_write(shared, entry, done) {
                Ok(()) => return Ok(()),
                Err(WriteError::NotPrimary(p) | WriteError::Defer(p))
                    if p != NO_PRIMARY && p != shared.factory_id =>
                {
                    p
                }
                Err(
                    e @ (WriteError::NoPrimary | WriteError::NotPrimary(_) | WriteError::Defer(_)),
                ) => {
                    last_error = e;
                    pause(attempt);
                    continue;
                }
                Err(e) => return Err(e),
            },
            Some(primary) => primary,
        };
        match forwarder.order(shared, target, order.customer_id, order.order_number) {
            Ok(_) => return Ok(()),
            Err(e) => {
                log::debug!("forwarding a write to server {target} failed: {e}");
                last_error = WriteError::NotPrimary(target);
                pause(attempt);
            }
        }
    }
    Err(last_error)
}

/// The live primary to forward to, or `None` to go through our admin.
fn route(shared: &Shared) -> Option<i32> {
    let replica = shared.replica();
    let primary = replica.primary_id();
    (primary != NO_PRIMARY && primary != shared.factory_id).then_some(primary)
}

/// Backs off between attempts while a primary is being found.
fn pause(attempt: u32) {
    thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 10));
}

/// Answers a read from our committed records, unless this server is a
/// backup still catching up (not trusted) while a primary is alive: its
/// records may be older than what the client saw elsewhere, so the read goes
/// to the primary. Should that fail, our own records are the answer.
fn read(shared: &Shared, customer_id: i32, forwarder: &mut Forwarder) -> CustomerRecord {
    let primary = {
        let replica = shared.replica();
        let behind = !replica.trusted() && !replica.is_primary();
        let primary = replica.primary_id();
        (behind && primary != NO_PRIMARY).then_some(primary)
    };
    if let Some(primary) = primary {
        match forwarder.read(shared, primary, customer_id) {
            Ok(record) => return record,
            Err(e) => log::debug!("forwarding a read to server {primary} failed: {e}"),
        }
    }
    CustomerRecord {
        customer_id,
        last_order: shared.records.last_order(customer_id),
    }
}

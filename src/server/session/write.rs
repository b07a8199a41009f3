//! Placing a write from any session: through this server's admin when it
//! is (or may become) primary, else forwarded to the primary (G2), tried
//! again while a takeover settles. The v1 sessions and the experts place
//! their writes here.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::forward::Forwarder;
use crate::protocol::session::{Route, ServerView};
use crate::server::metrics::Fault;
use crate::server::primary::admin::{self, Completion};
use crate::server::primary::WriteError;
use crate::server::Shared;
use crate::state::{NO_PRIMARY, V1_EPOCH};
use crate::wire::Entry;

/// What the session needs of the replica to route a request.
pub(crate) fn view(shared: &Shared) -> ServerView {
    // Lock-free: a read must not wait for a thread that holds the replica
    // lock (a backup storing an append).
    let (primary_id, trusted) = shared.role.load(&shared.elected);
    ServerView {
        factory_id: shared.factory_id,
        primary_id,
        trusted,
    }
}

/// Most attempts to place one write while a primary is being found.
const WRITE_ATTEMPTS: u32 = 60;

/// Places a write: through our admin when we are (or may become) primary,
/// else by forwarding it to the primary; retried while a takeover settles.
/// Experts place their custom orders through it too.
pub(crate) fn place(
    shared: &Shared,
    customer_id: i32,
    order_number: i32,
    done: &Arc<Completion>,
    forwarder: &mut Forwarder,
) -> Result<(), WriteError> {
    place_while(shared, customer_id, order_number, done, forwarder, &|| true)
}

/// As [`place`], for a client that may give up: with the election on, a
/// write is forwarded or tried again only while `wanted()` (its client
/// still waits). A client that gave up on a server that was paused, then
/// sent newer writes elsewhere, must not see this old one applied on top
/// of them when the paused server resumes and forwards it.
pub(crate) fn place_while(
    shared: &Shared,
    customer_id: i32,
    order_number: i32,
    done: &Arc<Completion>,
    forwarder: &mut Forwarder,
    wanted: &dyn Fn() -> bool,
) -> Result<(), WriteError> {
    let entry = Entry::set(V1_EPOCH, customer_id, order_number);
    let mut last_error = WriteError::NoPrimary;
    let elected = shared.elected.on();
    for attempt in 0..WRITE_ATTEMPTS {
        let abandoned = || elected && !wanted();
        if attempt > 0 && abandoned() {
            return Err(WriteError::Abandoned);
        }
        let target = match view(shared).write_route() {
            Route::Local => match admin::submit_write(shared, entry.clone(), done) {
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
            Route::Forward(primary) => primary,
        };
        if abandoned() {
            return Err(WriteError::Abandoned);
        }
        match forwarder.order(shared, target, customer_id, order_number) {
            Ok(_) => {
                shared.metrics.forwarded_writes.inc();
                return Ok(());
            }
            Err(e) => {
                shared.metrics.error(Fault::ForwardFailed);
                log::debug!("forwarding a write to server {target} failed: {e}");
                last_error = WriteError::NotPrimary(target);
                pause(attempt);
            }
        }
    }
    Err(last_error)
}

/// Backs off between attempts while a primary is being found.
fn pause(attempt: u32) {
    thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) * 10));
}

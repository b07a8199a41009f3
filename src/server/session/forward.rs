//! Forwarding a write from a backup to the primary (G2): the backup opens
//! an ordinary client session to the primary, so this works with any
//! primary, original or ours, and the write is applied there first.

use std::time::Duration;

use crate::client::{Client, ClientError};
use crate::server::Shared;
use crate::wire::{CustomerRecord, RobotInfo};

/// How long a forwarded request waits for an elected primary.
const ELECTED_FORWARD_TIMEOUT: Duration = Duration::from_secs(1);

/// A session's cached connection to the server it forwards to.
#[derive(Default)]
pub(crate) struct Forwarder {
    target: Option<(i32, Client)>,
}

impl Forwarder {
    /// Sends the write to server `to` and returns its reply.
    pub(crate) fn order(
        &mut self,
        shared: &Shared,
        to: i32,
        customer_id: i32,
        order_number: i32,
    ) -> Result<RobotInfo, ClientError> {
        self.call(shared, to, |c| c.order(customer_id, order_number))
    }

    /// Reads `customer_id` on server `to`.
    pub(crate) fn read(
        &mut self,
        shared: &Shared,
        to: i32,
        customer_id: i32,
    ) -> Result<CustomerRecord, ClientError> {
        self.call(shared, to, |c| c.read(customer_id))
    }

    fn call<T>(
        &mut self,
        shared: &Shared,
        to: i32,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut client = match self.target.take() {
            Some((id, client)) if id == to => client,
            _ => connect(shared, to)?,
        };
        let reply = f(&mut client)?;
        self.target = Some((to, client));
        Ok(reply)
    }
}

fn connect(shared: &Shared, to: i32) -> Result<Client, ClientError> {
    let peer = shared
        .peer_list()
        .into_iter()
        .find(|p| p.id == to)
        .ok_or_else(|| ClientError::Resolve {
            server: format!("factory {to}"),
            reason: "not a configured peer".into(),
        })?;
    // With the election on, a primary that does not answer within a
    // second is likely paused or cut off, and a new one is elected within
    // half a second: the session then sends the write there (resending a
    // write is safe: it sets the customer's last order).
    let timeout = if shared.elected.on() {
        ELECTED_FORWARD_TIMEOUT
    } else {
        shared.limits.peer_timeout.max(Duration::from_secs(5))
    };
    Client::connect(&peer.host, peer.port, Some(timeout))
}

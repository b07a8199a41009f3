//! The typed calls (`get`, `put`, ... `scan`) of [`KvClient`](super::KvClient)
//! and [`KvCluster`](super::KvCluster), written once over [`Caller`]: each
//! sends one op and turns its answer into the call's result.

use super::{reply_of, KvClientError, KvReply};
use crate::wire::kv::{KvBody, KvItem, KvOp, KvResponse, KvStatus, Version};

/// What sends one op and names the server(s) for errors.
pub(crate) trait Caller {
    fn call_op(&mut self, op: KvOp) -> Result<KvResponse, KvClientError>;
    fn name(&self) -> String;
}

/// The error for an answer whose status is no outcome of its op.
pub(crate) fn refusal(server: String, answer: KvResponse) -> KvClientError {
    let text = match answer.body {
        KvBody::Text(t) => String::from_utf8_lossy(&t).into_owned(),
        _ => String::new(),
    };
    KvClientError::Status {
        server,
        status: answer.status,
        text,
    }
}

pub(crate) fn get(
    c: &mut impl Caller,
    key: &[u8],
) -> Result<Option<(Version, Vec<u8>)>, KvClientError> {
    let answer = c.call_op(KvOp::Get { key: key.to_vec() })?;
    match answer {
        KvResponse {
            status: KvStatus::Ok,
            body: KvBody::Value { version, value },
            ..
        } => Ok(Some((version, value))),
        KvResponse {
            status: KvStatus::NotFound,
            ..
        } => Ok(None),
        other => Err(refusal(c.name(), other)),
    }
}

pub(crate) fn put(c: &mut impl Caller, key: &[u8], value: &[u8]) -> Result<Version, KvClientError> {
    let op = KvOp::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    };
    match write(c, op)? {
        KvReply::Ok(v) => Ok(v),
        other => Err(KvClientError::Protocol {
            server: c.name(),
            detail: format!("put answered {other:?}"),
        }),
    }
}

pub(crate) fn create(
    c: &mut impl Caller,
    key: &[u8],
    value: &[u8],
) -> Result<KvReply, KvClientError> {
    let (key, value) = (key.to_vec(), value.to_vec());
    write(c, KvOp::Create { key, value })
}

pub(crate) fn update(
    c: &mut impl Caller,
    key: &[u8],
    value: &[u8],
) -> Result<KvReply, KvClientError> {
    let (key, value) = (key.to_vec(), value.to_vec());
    write(c, KvOp::Update { key, value })
}

pub(crate) fn delete(c: &mut impl Caller, key: &[u8]) -> Result<KvReply, KvClientError> {
    write(c, KvOp::Delete { key: key.to_vec() })
}

pub(crate) fn cas(
    c: &mut impl Caller,
    key: &[u8],
    expected: Version,
    value: &[u8],
) -> Result<KvReply, KvClientError> {
    let (key, value) = (key.to_vec(), value.to_vec());
    write(
        c,
        KvOp::Cas {
            key,
            expected,
            value,
        },
    )
}

pub(crate) fn scan(
    c: &mut impl Caller,
    start: &[u8],
    limit: u32,
) -> Result<(Vec<KvItem>, bool), KvClientError> {
    let answer = c.call_op(KvOp::Scan {
        start: start.to_vec(),
        limit,
    })?;
    match answer.body {
        KvBody::Items { items, more } if answer.status == KvStatus::Ok => Ok((items, more)),
        _ => Err(refusal(c.name(), answer)),
    }
}

fn write(c: &mut impl Caller, op: KvOp) -> Result<KvReply, KvClientError> {
    let answer = c.call_op(op)?;
    reply_of(&answer).ok_or_else(|| refusal(c.name(), answer))
}

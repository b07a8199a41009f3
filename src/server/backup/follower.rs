//! A backup's handler for a native connection: either a primary's stream
//! (`Hello`, then appends, snapshots and heartbeats, each acknowledged once
//! durable) or a candidate's `Probe` (answered with where our log ends).
//!
//! Every frame's epoch is checked: a frame from an epoch older than ours
//! is rejected with our epoch, which makes a stale primary step down.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};

use crate::conn::{data_waiting, read_native, write_native, yield_until, ConnError, NativeError};
use crate::logging::epoch as epoch_name;
use crate::server::election::elected;
use crate::server::metrics::Fault;
use crate::server::peer::HEARTBEAT;
use crate::server::Shared;
use crate::server::{compaction, read_index};
use crate::state::kv::{KvStore, Versioned};
use crate::state::{Replica, StateError, NO_PRIMARY};
use crate::storage::Snapshot;
use crate::wire::native::{Body, NativeFrame, RejectCode};
use crate::wire::{Entry, Epoch, MemberSet};

/// How long a backup looks for the next frame before sleeping on it.
const FRAME_SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// Most records a snapshot may carry in all its chunks together.
const MAX_SNAPSHOT_RECORDS: usize = 64 << 20;

/// Why a native connection ended.
enum End {
    Conn(ConnError),
    Frame(String),
    Refused(RejectCode, String),
}

impl From<NativeError> for End {
    fn from(e: NativeError) -> Self {
        match e {
            NativeError::Conn(c) => End::Conn(c),
            NativeError::Frame(f) => End::Frame(f.to_string()),
        }
    }
}

impl From<ConnError> for End {
    fn from(e: ConnError) -> Self {
        End::Conn(e)
    }
}

struct Conn<'s> {
    reader: BufReader<&'s TcpStream>,
    writer: BufWriter<&'s TcpStream>,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

impl Conn<'_> {
    fn send(&mut self, frame: NativeFrame) -> Result<(), End> {
        write_native(&mut self.writer, &frame, &mut self.out)?;
        self.writer.flush().map_err(|e| End::Conn(e.into()))
    }

    /// Looks for the next frame for a moment before sleeping on it: a busy
    /// primary sends the next batch within microseconds.
    fn await_frame_briefly(&mut self) {
        let reader = &self.reader;
        yield_until(FRAME_SPIN, || {
            !reader.buffer().is_empty() || data_waiting(reader.get_ref())
        });
    }

    fn receive(&mut self) -> Result<NativeFrame, End> {
        Ok(read_native(&mut self.reader, &mut self.scratch)?)
    }

    fn reject(&mut self, epoch: Epoch, code: RejectCode, reason: String) -> End {
        let _ = self.send(NativeFrame::new(
            epoch,
            Body::Reject {
                code,
                reason: reason.clone(),
            },
        ));
        End::Refused(code, reason)
    }
}

pub(crate) fn run(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_read_timeout(Some(shared.limits.peer_timeout.max(HEARTBEAT * 20)));
    let _ = stream.set_write_timeout(Some(shared.limits.peer_timeout));
    let mut conn = Conn {
        reader: BufReader::new(&stream),
        writer: BufWriter::new(&stream),
        scratch: Vec::new(),
        out: Vec::new(),
    };
    let end = match conn.receive() {
        Ok(NativeFrame {
            epoch,
            body: Body::Probe { candidate_id },
        }) => answer_probe(shared, &mut conn, epoch, candidate_id),
        Ok(NativeFrame {
            epoch,
            body: Body::Hello { primary_id, .. },
        }) => follow(shared, &mut conn, epoch, primary_id, peer),
        Ok(NativeFrame {
            body: Body::ReadIndex { replica_id },
            ..
        }) => answer_read_index(shared, &mut conn, &stream, replica_id),
        Ok(other) => {
            let mine = shared.replica().epoch();
            Err(conn.reject(
                mine,
                RejectCode::Protocol,
                format!("expected hello or probe, got {}", other.body.name()),
            ))
        }
        Err(e) => Err(e),
    };
    match end {
        Ok(()) | Err(End::Conn(ConnError::Closed)) => {
            log::debug!("replication connection from {peer} ended")
        }
        Err(End::Conn(e)) => log::info!("replication connection from {peer}: {e}"),
        Err(End::Frame(e)) => {
            shared.metrics.error(Fault::ReplicationStream);
            log::warn!("replication connection from {peer}: {e}; closing")
        }
        Err(End::Refused(code, why)) => {
            shared.metrics.error(Fault::ReplicationStream);
            log::warn!("refused replication connection from {peer} ({code:?}): {why}; closing")
        }
    }
}

/// Adopts `epoch` (durably) unless ours is newer, which it returns.
fn adopt(shared: &Shared, replica: &mut Replica, epoch: Epoch) -> Result<(), Epoch> {
    if epoch < replica.epoch() {
        return Err(replica.epoch());
    }
    if replica.adopt_epoch(epoch) {
        shared.persist_epoch(epoch);
    }
    Ok(())
}

/// Refuses a frame from an epoch older than ours.
fn stale(conn: &mut Conn<'_>, theirs: Epoch, mine: Epoch) -> End {
    conn.reject(
        mine,
        RejectCode::StaleEpoch,
        format!(
            "epoch {} is older than this server's epoch {}",
            epoch_name(theirs),
            epoch_name(mine)
        ),
    )
}

/// Tells a candidate where our log ends, or why it must not take over.
fn answer_probe(
    shared: &Shared,
    conn: &mut Conn<'_>,
    epoch: Epoch,
    candidate: i32,
) -> Result<(), End> {
    // With the election on nobody probes: the prober keeps the original's
    // rule, and so must this server for the cluster to choose one primary.
    elected::found_takeover_rule(shared, candidate);
    let reply = {
        let mut replica = shared.replica();
        if replica.primary_id() != NO_PRIMARY {
            let primary = replica.primary_id();
            let mine = replica.epoch();
            drop(replica);
            return Err(conn.reject(mine, RejectCode::HasPrimary, format!("{primary}")));
        }
        if let Err(mine) = adopt(shared, &mut replica, epoch) {
            drop(replica);
            return Err(stale(conn, epoch, mine));
        }
        Body::ProbeReply {
            replica_id: replica.id(),
            last_index: replica.last_index(),
            last_epoch: replica.last_epoch(),
            trusted: replica.trusted(),
            in_sync: replica.in_sync().unwrap_or_default(),
            primary_id: NO_PRIMARY,
        }
    };
    log::info!(
        "server {candidate} asked whether it may take over in epoch {}; told it where this log ends",
        epoch_name(epoch)
    );
    conn.send(NativeFrame::new(epoch, reply))
}

/// Gives a backup our commit point for each of its reads (G6), for as long
/// as it asks; between requests it may stay idle, as a client may.
fn answer_read_index(
    shared: &Shared,
    conn: &mut Conn<'_>,
    stream: &TcpStream,
    backup: i32,
) -> Result<(), End> {
    let _ = stream.set_read_timeout(None);
    loop {
        let mine = shared.replica().epoch();
        match read_index::answer(shared) {
            Ok(commit_index) => conn.send(NativeFrame::new(
                mine,
                Body::ReadIndexReply { commit_index },
            ))?,
            Err(primary) => {
                // Routine after a failover: logged at debug, not as a refusal.
                log::debug!("no commit point for backup {backup}: primary is {primary}");
                let _ = conn.reject(mine, RejectCode::HasPrimary, primary);
                return Ok(());
            }
        }
        match conn.receive()?.body {
            Body::ReadIndex { .. } => {}
            other => {
                return Err(conn.reject(
                    mine,
                    RejectCode::Protocol,
                    format!("expected a read-index request, got {}", other.name()),
                ))
            }
        }
    }
}

/// Follows the primary that sent `Hello` in `epoch`.
fn follow(
    shared: &Shared,
    conn: &mut Conn<'_>,
    epoch: Epoch,
    primary: i32,
    peer: SocketAddr,
) -> Result<(), End> {
    let catch_up = {
        let mut replica = shared.replica();
        if let Err(mine) = adopt(shared, &mut replica, epoch) {
            drop(replica);
            return Err(stale(conn, epoch, mine));
        }
        if replica.is_primary() {
            drop(replica);
            shared.step_down(epoch, primary);
            replica = shared.replica();
        }
        replica.follow_stream(primary, epoch);
        Body::CatchUp {
            replica_id: replica.id(),
            last_index: replica.last_index(),
            last_epoch: replica.last_epoch(),
        }
    };
    let who = shared.peer_called(primary, peer);
    log::info!("following primary {who} in epoch {}", epoch_name(epoch));
    // Every stream counted open is counted closed, however it ends.
    let result = conn
        .send(NativeFrame::new(epoch, catch_up))
        .and_then(|()| stream(shared, conn, epoch));
    let mut replica = shared.replica();
    if replica.on_stream_of_closed(primary, epoch) {
        log::info!("lost primary {who} (epoch {})", epoch_name(epoch));
    }
    result
}

fn stream(shared: &Shared, conn: &mut Conn<'_>, epoch: Epoch) -> Result<(), End> {
    let mut snapshot: Vec<(i32, i32)> = Vec::new();
    let mut snapshot_kv = KvStore::new();
    loop {
        conn.await_frame_briefly();
        let frame = conn.receive()?;
        let mine = shared.replica().epoch();
        if frame.epoch != epoch || mine > epoch {
            return Err(conn.reject(
                mine,
                RejectCode::StaleEpoch,
                format!(
                    "the stream is in epoch {}, this server is in epoch {}",
                    epoch_name(epoch),
                    epoch_name(mine)
                ),
            ));
        }
        let appended = matches!(frame.body, Body::Append { .. });
        let ack = match frame.body {
            Body::Append {
                prev_index,
                prev_epoch,
                commit_index,
                entries,
            } => append(shared, prev_index, prev_epoch, commit_index, &entries)
                .map_err(|(code, why)| conn.reject(mine, code, why))?,
            Body::Heartbeat { commit_index } => commit(shared, commit_index),
            Body::Snapshot {
                last_index,
                last_epoch,
                in_sync,
                records,
                kv,
                done,
            } => {
                if snapshot.len() + records.len() > MAX_SNAPSHOT_RECORDS
                    || snapshot_kv.len() + kv.len() > MAX_SNAPSHOT_RECORDS
                {
                    return Err(conn.reject(
                        mine,
                        RejectCode::Protocol,
                        "snapshot too large".into(),
                    ));
                }
                snapshot.extend_from_slice(&records);
                for item in kv {
                    snapshot_kv.restore(Versioned::new(item.version, &item.key, &item.value));
                }
                if !done {
                    continue;
                }
                let records = std::mem::take(&mut snapshot);
                let kv = std::mem::take(&mut snapshot_kv);
                install(shared, last_index, last_epoch, in_sync, records, kv)
                    .map_err(|(code, why)| conn.reject(mine, code, why))?
            }
            other => {
                return Err(conn.reject(
                    mine,
                    RejectCode::Protocol,
                    format!("unexpected {} on a stream", other.name()),
                ))
            }
        };
        conn.send(NativeFrame::new(
            epoch,
            Body::Ack {
                replica_id: shared.factory_id,
                last_index: ack,
            },
        ))?;
        // A backup bounds its log as the primary does, after the ack so that
        // the primary never waits for it. This thread is the only writer of
        // a backup's log, so the disk holds what the replica holds.
        if appended {
            compaction::compact(shared);
        }
    }
}

type Refusal = (RejectCode, String);

/// Stores an append durably, applies what it commits; returns our last
/// index. The sync runs outside the replica lock, so that nobody waits for
/// the disk; this thread is the only writer of the log on a backup, and the
/// entries are acknowledged and applied only once they are durable.
fn append(
    shared: &Shared,
    prev_index: i32,
    prev_epoch: Epoch,
    commit_index: i32,
    entries: &[Entry],
) -> Result<i32, Refusal> {
    let (change, commit, last) = {
        let mut replica = shared.replica();
        let change = replica
            .on_append(prev_index, prev_epoch, entries)
            .map_err(|e: StateError| (RejectCode::LogMismatch, e.to_string()))?;
        let last = replica.last_index();
        let commit = commit_index.min(last).max(replica.committed_index());
        (change, commit, last)
    };
    let appended = &entries[entries.len() - change.appended..];
    shared
        .durable
        .apply_change(&change, appended, commit)
        .map_err(|e| (RejectCode::Storage, e.to_string()))?;
    let mut replica = shared.replica();
    let (first, committed) = replica.commit_through_indexed(commit);
    shared.records.apply(first, committed);
    let me_in_sync = replica
        .in_sync()
        .is_some_and(|s| s.contains(shared.factory_id));
    replica.set_trusted(me_in_sync);
    Ok(last)
}

fn commit(shared: &Shared, commit_index: i32) -> i32 {
    let mut replica = shared.replica();
    let last = replica.last_index();
    let (first, committed) = replica.commit_through_indexed(commit_index.min(last));
    shared.records.apply(first, committed);
    // A heartbeat means the primary is idle: make the commit point durable.
    let _ = shared.durable.note_commit(replica.committed_index());
    if let Err(e) = shared.durable.flush_commit() {
        log::error!("cannot sync the commit point: {e}");
    }
    last
}

/// Replaces our state with a snapshot received from the primary.
fn install(
    shared: &Shared,
    last_index: i32,
    last_epoch: Epoch,
    in_sync: MemberSet,
    records: Vec<(i32, i32)>,
    kv: KvStore,
) -> Result<i32, Refusal> {
    let mut replica = shared.replica();
    let mut snapshot = Snapshot {
        last_index,
        last_epoch,
        in_sync,
        records,
        kv,
    };
    shared
        .durable
        .install_snapshot(&snapshot, &[])
        .map_err(|e| (RejectCode::Storage, e.to_string()))?;
    shared.records.replace_all(&snapshot.records);
    let keys = snapshot.kv.len();
    shared.records.replace_kv(std::mem::take(&mut snapshot.kv));
    replica.install_snapshot(
        last_index,
        last_epoch,
        Some(in_sync).filter(|s| !s.is_empty()),
    );
    replica.set_trusted(false);
    log::info!(
        "installed a snapshot of {} records and {keys} string keys through index {last_index}",
        snapshot.records.len()
    );
    Ok(last_index)
}

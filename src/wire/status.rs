//! The cluster status request: a connection opened with [`STATUS_TAG`]
//! instead of `CLIENT` asks the server for its own view of the cluster, and
//! gets one [`StatusReport`] frame before the server closes the connection.
//!
//! Original clients never send the tag, and an original server closes the
//! connection on it without a byte (it matches neither the `CLIENT` nor the
//! `PFA` prefix), which is how `client --status` tells an original server.
//! The client side (`client::status`) decodes the frame with
//! [`StatusReport::decode`], which reads a bounded length first and never
//! allocates from a wire count beyond [`MAX_MEMBERS`].
//!
//! ```text
//! offset  field          type  order
//! 0       length         u32   BE    bytes after this field: 46 ..= 1024
//! 4       version        u8          1
//! 5       role           u8          0 unknown, 1 primary, 2 backup, 3 candidate, 4 witness
//! 6       lease          u8          0 none, 1 held (as primary), 2 honoured (as backup)
//! 7       flags          u8          bit 0: trusted (holds every committed entry)
//! 8       factory_id     i32   BE
//! 12      epoch          u64   BE
//! 20      primary_id     i32   BE    the primary it follows, itself, or -1
//! 24      last_index     i32   BE    -1: empty log
//! 28      commit_index   i32   BE    -1: nothing committed
//! 32      lease_ms       u32   BE    time left on the lease (0 with lease none)
//! 36      clients        u32   BE    open client sessions
//! 40      uptime_ms      u64   BE
//! 48      in-sync set    u8 count (≤ 16), then that many ids (i32 BE)
//! ..      peers          u8 count (≤ 16), then per peer: id i32, matched i32, state u8
//!                        (state bit 0: link live, bit 1: an original (v1) server)
//! ..      kind           u8          optional: 1 a balancer's section follows
//!                                    (absent: a server; other codes are skipped)
//! ..      balancer       see below   with kind 1 only
//! ..      (later versions may append fields; a decoder skips what follows)
//! ```
//!
//! A balancer (`load`) answers the status request too. It has no log, so
//! its role byte is 0 (unknown, which every decoder of version 1 reads),
//! `factory_id`, `last_index` and `commit_index` are -1, `primary_id` is
//! the server it sends writes to (-1: none found), and its own figures
//! follow the peers, where decoders that predate them stop reading:
//!
//! ```text
//! 0       flags          u8          bit 0: the read cache is in use
//! 1       cache_capacity u32   BE    CACHE_SIZE
//! 5       cache_entries  u32   BE
//! 9       cache_hits     u64   BE
//! 17      cache_misses   u64   BE
//! 25      invalidations  u64   BE
//! 33      requests       u64   BE    client requests received
//! 41      retries        u64   BE    failed attempts sent again
//! 49      failovers      u64   BE    times the primary changed
//! 57      servers        u8 count (≤ 16), then per server: id i32,
//!                        answered u64 (requests it answered), state u8
//!                        (bit 0: the primary writes go to now)
//! ```

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use super::entry::{Epoch, MAX_MEMBERS};
use super::HANDSHAKE_LEN;

/// The handshake tag of a status request: `FSTA`, three zero bytes, the
/// version. Neither `CLIENT` nor `PFA` is a prefix of it.
pub const STATUS_TAG: [u8; HANDSHAKE_LEN] = *b"FSTA\0\0\0\x01";

/// The report format version this build speaks.
pub const STATUS_VERSION: u8 = 1;

/// Bytes after the length field of a report with no members and no peers.
pub const MIN_STATUS_LEN: usize = 46;

/// Largest length a report may declare; a longer one is refused unread.
pub const MAX_STATUS_LEN: usize = 1024;

/// Bytes of one peer's entry.
const PEER_LEN: usize = 9;

/// The kind byte after the peers that starts a balancer's section.
const KIND_BALANCER: u8 = 1;

/// Bytes of a balancer's section with no servers (kind byte excluded).
const BALANCER_LEN: usize = 58;

/// Bytes of one server's entry in a balancer's section.
const SERVER_LEN: usize = 13;

/// A server's role, as it sees itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No primary known (a fresh server, or one between primaries).
    Unknown = 0,
    /// It accepts writes as primary.
    Primary = 1,
    /// It follows the primary named in the report.
    Backup = 2,
    /// It asks for votes to become primary (not used by this version).
    Candidate = 3,
    /// A vote-only member (not used by this version).
    Witness = 4,
}

impl Role {
    fn from_u8(v: u8) -> Option<Role> {
        Some(match v {
            0 => Role::Unknown,
            1 => Role::Primary,
            2 => Role::Backup,
            3 => Role::Candidate,
            4 => Role::Witness,
            _ => return None,
        })
    }

    /// The lower-case name used in tables and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Candidate => "candidate",
            Role::Witness => "witness",
        }
    }
}

/// The state of the server's lease. Servers of this version hold no
/// leases and always report [`Lease::None`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// No lease.
    None = 0,
    /// It holds a primary lease granted by a majority.
    Held = 1,
    /// It honours a primary's lease (and will not vote against it).
    Honoured = 2,
}

impl Lease {
    fn from_u8(v: u8) -> Option<Lease> {
        Some(match v {
            0 => Lease::None,
            1 => Lease::Held,
            2 => Lease::Honoured,
            _ => return None,
        })
    }

    /// The lower-case name used in tables and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Lease::None => "none",
            Lease::Held => "held",
            Lease::Honoured => "honoured",
        }
    }
}

/// What a primary knows of one backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLag {
    /// The backup's id.
    pub id: i32,
    /// Highest index it acknowledged as durable (-1: none).
    pub matched: i32,
    /// Its replication link is up.
    pub live: bool,
    /// It is an original (v1) server.
    pub v1: bool,
}

/// What a balancer reports of one server behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancedServer {
    /// The id given for it on the balancer's command line.
    pub id: i32,
    /// Requests it answered for this balancer.
    pub answered: u64,
    /// The balancer sends writes to it now.
    pub primary: bool,
}

/// A balancer's own figures (see the module notes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerView {
    /// Reads are answered from the cache (false: every read goes to a
    /// server).
    pub cache_enabled: bool,
    pub cache_capacity: u32,
    pub cache_entries: u32,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub invalidations: u64,
    /// Client requests received.
    pub requests: u64,
    /// Failed attempts sent again.
    pub retries: u64,
    /// Times the primary changed.
    pub failovers: u64,
    /// The servers behind it, in command-line order.
    pub servers: Vec<BalancedServer>,
}

/// One server's (or balancer's) view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    pub factory_id: i32,
    pub role: Role,
    pub epoch: Epoch,
    pub primary_id: i32,
    pub lease: Lease,
    pub lease_ms: u32,
    pub trusted: bool,
    pub in_sync: Vec<i32>,
    pub last_index: i32,
    pub commit_index: i32,
    /// The backups a primary replicates to (empty on a backup).
    pub peers: Vec<PeerLag>,
    pub clients: u32,
    pub uptime_ms: u64,
    /// Present when a balancer answered.
    pub balancer: Option<BalancerView>,
}

impl StatusReport {
    /// The role as tables print it: "balancer" for a balancer, the role
    /// byte's name otherwise.
    pub fn role_name(&self) -> &'static str {
        if self.balancer.is_some() {
            "balancer"
        } else {
            self.role.name()
        }
    }

    /// How far `peer` is behind this server's last index (0 when level).
    pub fn lag(&self, peer: &PeerLag) -> i64 {
        (i64::from(self.last_index) - i64::from(peer.matched)).max(0)
    }

    /// Appends the frame, length prefix included, to `out`. In-sync
    /// members and peers beyond [`MAX_MEMBERS`] are left out.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let in_sync = &self.in_sync[..self.in_sync.len().min(MAX_MEMBERS)];
        let peers = &self.peers[..self.peers.len().min(MAX_MEMBERS)];
        let servers = self
            .balancer
            .as_ref()
            .map(|b| &b.servers[..b.servers.len().min(MAX_MEMBERS)]);
        let len = MIN_STATUS_LEN
            + 4 * in_sync.len()
            + PEER_LEN * peers.len()
            + servers.map_or(0, |s| 1 + BALANCER_LEN + SERVER_LEN * s.len());
        put_u32(out, len as u32);
        out.extend([
            STATUS_VERSION,
            self.role as u8,
            self.lease as u8,
            u8::from(self.trusted),
        ]);
        put_u32(out, self.factory_id as u32);
        out.extend(self.epoch.to_be_bytes());
        for v in [self.primary_id, self.last_index, self.commit_index] {
            put_u32(out, v as u32);
        }
        put_u32(out, self.lease_ms);
        put_u32(out, self.clients);
        out.extend(self.uptime_ms.to_be_bytes());
        out.push(in_sync.len() as u8);
        for id in in_sync {
            put_u32(out, *id as u32);
        }
        out.push(peers.len() as u8);
        for p in peers {
            put_u32(out, p.id as u32);
            put_u32(out, p.matched as u32);
            out.push(u8::from(p.live) | u8::from(p.v1) << 1);
        }
        if let (Some(b), Some(servers)) = (&self.balancer, servers) {
            out.extend([KIND_BALANCER, u8::from(b.cache_enabled)]);
            put_u32(out, b.cache_capacity);
            put_u32(out, b.cache_entries);
            for v in [
                b.cache_hits,
                b.cache_misses,
                b.invalidations,
                b.requests,
                b.retries,
                b.failovers,
            ] {
                out.extend(v.to_be_bytes());
            }
            out.push(servers.len() as u8);
            for s in servers {
                put_u32(out, s.id as u32);
                out.extend(s.answered.to_be_bytes());
                out.push(u8::from(s.primary));
            }
        }
    }

    /// Decodes a frame's body: the `length` bytes after its length field
    /// (see [`check_status_length`]).
    ///
    /// # Errors
    /// [`StatusError`] for anything that is not a version-1 report.
    pub fn decode(body: &[u8]) -> Result<StatusReport, StatusError> {
        if !(MIN_STATUS_LEN..=MAX_STATUS_LEN).contains(&body.len()) {
            return Err(StatusError::BadLength(body.len() as u32));
        }
        if body[0] != STATUS_VERSION {
            return Err(StatusError::Version(body[0]));
        }
        let role = Role::from_u8(body[1]).ok_or(StatusError::UnknownRole(body[1]))?;
        let lease = Lease::from_u8(body[2]).ok_or(StatusError::UnknownLease(body[2]))?;
        let i32_at = |at: usize| BigEndian::read_i32(&body[at..at + 4]);
        let u32_at = |at: usize| BigEndian::read_u32(&body[at..at + 4]);
        let mut at = 44;
        let in_sync_count = usize::from(body[at]);
        if in_sync_count > MAX_MEMBERS {
            return Err(StatusError::TooMany("in-sync members", in_sync_count));
        }
        at += 1;
        let peers_at = at + 4 * in_sync_count;
        // The peer count byte must lie inside the body too.
        if peers_at >= body.len() {
            return Err(StatusError::Short);
        }
        let in_sync = (0..in_sync_count).map(|i| i32_at(at + 4 * i)).collect();
        at = peers_at;
        let peer_count = usize::from(body[at]);
        if peer_count > MAX_MEMBERS {
            return Err(StatusError::TooMany("peers", peer_count));
        }
        at += 1;
        if at + PEER_LEN * peer_count > body.len() {
            return Err(StatusError::Short);
        }
        let peers = (0..peer_count)
            .map(|i| {
                let p = at + PEER_LEN * i;
                PeerLag {
                    id: i32_at(p),
                    matched: i32_at(p + 4),
                    live: body[p + 8] & 1 != 0,
                    v1: body[p + 8] & 2 != 0,
                }
            })
            .collect();
        at += PEER_LEN * peer_count;
        let balancer = match body.get(at) {
            Some(&KIND_BALANCER) => Some(decode_balancer(&body[at + 1..])?),
            _ => None,
        };
        Ok(StatusReport {
            factory_id: i32_at(4),
            role,
            epoch: BigEndian::read_u64(&body[8..16]),
            primary_id: i32_at(16),
            lease,
            lease_ms: u32_at(28),
            trusted: body[3] & 1 != 0,
            in_sync,
            last_index: i32_at(20),
            commit_index: i32_at(24),
            peers,
            clients: u32_at(32),
            uptime_ms: BigEndian::read_u64(&body[36..44]),
            balancer,
        })
    }
}

/// A balancer's section (after its kind byte); bytes after it are skipped.
fn decode_balancer(b: &[u8]) -> Result<BalancerView, StatusError> {
    if b.len() < BALANCER_LEN {
        return Err(StatusError::Short);
    }
    let count = usize::from(b[BALANCER_LEN - 1]);
    if count > MAX_MEMBERS {
        return Err(StatusError::TooMany("balanced servers", count));
    }
    if b.len() < BALANCER_LEN + SERVER_LEN * count {
        return Err(StatusError::Short);
    }
    let u64_at = |at: usize| BigEndian::read_u64(&b[at..at + 8]);
    let servers = (0..count)
        .map(|i| {
            let p = BALANCER_LEN + SERVER_LEN * i;
            BalancedServer {
                id: BigEndian::read_i32(&b[p..p + 4]),
                answered: u64_at(p + 4),
                primary: b[p + 12] & 1 != 0,
            }
        })
        .collect();
    Ok(BalancerView {
        cache_enabled: b[0] & 1 != 0,
        cache_capacity: BigEndian::read_u32(&b[1..5]),
        cache_entries: BigEndian::read_u32(&b[5..9]),
        cache_hits: u64_at(9),
        cache_misses: u64_at(17),
        invalidations: u64_at(25),
        requests: u64_at(33),
        retries: u64_at(41),
        failovers: u64_at(49),
        servers,
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend(v.to_be_bytes());
}

/// The body length a report's 4-byte prefix declares, if within bounds.
///
/// # Errors
/// [`StatusError::BadLength`] below [`MIN_STATUS_LEN`] or over
/// [`MAX_STATUS_LEN`], before anything is allocated.
pub fn check_status_length(prefix: [u8; 4]) -> Result<usize, StatusError> {
    let len = u32::from_be_bytes(prefix);
    let ok = (MIN_STATUS_LEN as u32..=MAX_STATUS_LEN as u32).contains(&len);
    if ok {
        Ok(len as usize)
    } else {
        Err(StatusError::BadLength(len))
    }
}

/// Why bytes are not a status report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusError {
    /// The declared length is outside `MIN_STATUS_LEN..=MAX_STATUS_LEN`.
    BadLength(u32),
    /// A report version this build does not read.
    Version(u8),
    /// A role code this version does not define.
    UnknownRole(u8),
    /// A lease code this version does not define.
    UnknownLease(u8),
    /// A count beyond its bound.
    TooMany(&'static str, usize),
    /// The counts need more bytes than the length declares.
    Short,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::BadLength(n) => write!(
                f,
                "status length {n} is outside {MIN_STATUS_LEN}..={MAX_STATUS_LEN}"
            ),
            StatusError::Version(v) => {
                write!(f, "status version {v}, expected {STATUS_VERSION}")
            }
            StatusError::UnknownRole(r) => write!(f, "unknown role code {r}"),
            StatusError::UnknownLease(l) => write!(f, "unknown lease code {l}"),
            StatusError::TooMany(what, n) => {
                write!(f, "{n} {what}, at most {MAX_MEMBERS}")
            }
            StatusError::Short => write!(f, "status counts run past its length"),
        }
    }
}

impl std::error::Error for StatusError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::hex;
    use crate::wire::Tag;

    fn sample() -> StatusReport {
        StatusReport {
            factory_id: 1,
            role: Role::Primary,
            epoch: 0x0002_0001,
            primary_id: 1,
            lease: Lease::None,
            lease_ms: 0,
            trusted: true,
            in_sync: vec![0, 1],
            last_index: 9,
            commit_index: 8,
            peers: vec![PeerLag {
                id: 0,
                matched: 7,
                live: true,
                v1: false,
            }],
            clients: 3,
            uptime_ms: 1500,
            balancer: None,
        }
    }

    fn balancer_sample() -> StatusReport {
        StatusReport {
            factory_id: -1,
            role: Role::Unknown,
            primary_id: 2,
            in_sync: vec![],
            peers: vec![],
            balancer: Some(BalancerView {
                cache_enabled: false,
                cache_capacity: 100,
                cache_entries: 0,
                cache_hits: 1,
                cache_misses: 2,
                invalidations: 3,
                requests: 10,
                retries: 4,
                failovers: 5,
                servers: vec![
                    BalancedServer {
                        id: 0,
                        answered: 6,
                        primary: false,
                    },
                    BalancedServer {
                        id: 2,
                        answered: 4,
                        primary: true,
                    },
                ],
            }),
            ..sample()
        }
    }

    #[test]
    fn a_balancers_report_round_trips_and_old_decoders_read_its_head() {
        let report = balancer_sample();
        let mut out = Vec::new();
        report.encode(&mut out);
        assert_eq!(
            out.len(),
            4 + MIN_STATUS_LEN + 1 + BALANCER_LEN + 2 * SERVER_LEN
        );
        assert_eq!(StatusReport::decode(&out[4..]), Ok(report.clone()));
        assert_eq!(report.role_name(), "balancer");
        assert_eq!(sample().role_name(), "primary");
        // A decoder of the first version stops after the peers: what it
        // reads there is a valid report (role unknown) by itself.
        let head = &out[4..4 + MIN_STATUS_LEN];
        let old = StatusReport::decode(head).unwrap();
        assert_eq!(old.role, Role::Unknown);
        assert_eq!(old.balancer, None);
        assert_eq!(old.primary_id, 2);
        // Cut anywhere inside the section, it is refused.
        for cut in MIN_STATUS_LEN + 1..out.len() - 4 {
            assert!(
                StatusReport::decode(&out[4..4 + cut]).is_err(),
                "cut at {cut}"
            );
        }
        // Too many servers.
        let mut b = out[4..].to_vec();
        b[MIN_STATUS_LEN + BALANCER_LEN] = 17;
        assert_eq!(
            StatusReport::decode(&b),
            Err(StatusError::TooMany("balanced servers", 17))
        );
    }

    const GOLDEN: &str = "00 00 00 3f  01 01 00 01  00 00 00 01  00 00 00 00 00 02 00 01
        00 00 00 01  00 00 00 09  00 00 00 08  00 00 00 00  00 00 00 03
        00 00 00 00 00 00 05 dc  02 00 00 00 00 00 00 00 01
        01 00 00 00 00 00 00 00 07 01";

    #[test]
    fn golden_tag() {
        assert_eq!(STATUS_TAG.to_vec(), hex("46 53 54 41 00 00 00 01"));
        assert_eq!(Tag::decode(&STATUS_TAG), Some(Tag::Status));
        assert!(!STATUS_TAG.starts_with(b"PFA") && !STATUS_TAG.starts_with(b"CLIENT"));
    }

    #[test]
    fn golden_report() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(out, hex(GOLDEN));
        assert_eq!(
            check_status_length([out[0], out[1], out[2], out[3]]),
            Ok(63)
        );
        assert_eq!(StatusReport::decode(&out[4..]), Ok(sample()));
        assert_eq!(sample().lag(&sample().peers[0]), 2);
    }

    #[test]
    fn every_role_and_lease_round_trips() {
        let roles = [
            Role::Unknown,
            Role::Primary,
            Role::Backup,
            Role::Candidate,
            Role::Witness,
        ];
        for role in roles {
            for lease in [Lease::None, Lease::Held, Lease::Honoured] {
                let report = StatusReport {
                    role,
                    lease,
                    in_sync: vec![],
                    peers: vec![],
                    ..sample()
                };
                let mut out = Vec::new();
                report.encode(&mut out);
                assert_eq!(out.len(), 4 + MIN_STATUS_LEN);
                assert_eq!(StatusReport::decode(&out[4..]), Ok(report));
            }
        }
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_unread() {
        for len in [0u32, 45, 1025, u32::MAX] {
            assert_eq!(
                check_status_length(len.to_be_bytes()),
                Err(StatusError::BadLength(len))
            );
        }
        assert!(StatusReport::decode(&[1; 10]).is_err());
        assert!(StatusReport::decode(&vec![1; MAX_STATUS_LEN + 1]).is_err());
    }

    #[test]
    fn hostile_bodies_are_errors() {
        let mut good = Vec::new();
        sample().encode(&mut good);
        let body = &good[4..];
        let with = |at: usize, v: u8| {
            let mut b = body.to_vec();
            b[at] = v;
            StatusReport::decode(&b)
        };
        assert_eq!(with(0, 2), Err(StatusError::Version(2)));
        assert_eq!(with(1, 5), Err(StatusError::UnknownRole(5)));
        assert_eq!(with(2, 3), Err(StatusError::UnknownLease(3)));
        assert_eq!(
            with(44, 17),
            Err(StatusError::TooMany("in-sync members", 17))
        );
        // Counts that run past the body: 11 members need 44 bytes.
        assert_eq!(with(44, 11), Err(StatusError::Short));
        assert_eq!(with(53, 16), Err(StatusError::Short));
        assert_eq!(with(53, 200), Err(StatusError::TooMany("peers", 200)));
        // A body cut short anywhere is refused.
        for cut in 0..body.len() {
            assert!(StatusReport::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        // Bytes a later version appends are skipped.
        let mut longer = body.to_vec();
        longer.extend([9; 20]);
        assert_eq!(StatusReport::decode(&longer), Ok(sample()));
    }

    #[test]
    fn any_bytes_decode_without_panic() {
        // A cheap sweep: every single-byte value at every offset of a
        // minimal body.
        let mut out = Vec::new();
        StatusReport {
            in_sync: vec![],
            peers: vec![],
            ..balancer_sample()
        }
        .encode(&mut out);
        for at in 4..out.len() {
            for v in 0..=255u8 {
                let mut b = out[4..].to_vec();
                b[at - 4] = v;
                let _ = StatusReport::decode(&b);
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "proptest-regressions/wire_status.txt",
            ))),
            ..ProptestConfig::default()
        }
    }

    fn any_report() -> impl Strategy<Value = StatusReport> {
        let role = prop_oneof![
            Just(Role::Unknown),
            Just(Role::Primary),
            Just(Role::Backup),
            Just(Role::Candidate),
            Just(Role::Witness)
        ];
        let lease = prop_oneof![Just(Lease::None), Just(Lease::Held), Just(Lease::Honoured)];
        let peer = (any::<i32>(), any::<i32>(), any::<bool>(), any::<bool>()).prop_map(
            |(id, matched, live, v1)| PeerLag {
                id,
                matched,
                live,
                v1,
            },
        );
        (
            (
                any::<i32>(),
                role,
                any::<u64>(),
                any::<i32>(),
                lease,
                any::<u32>(),
            ),
            (
                any::<bool>(),
                prop::collection::vec(any::<i32>(), 0..=MAX_MEMBERS),
            ),
            (
                any::<i32>(),
                any::<i32>(),
                prop::collection::vec(peer, 0..=MAX_MEMBERS),
            ),
            (any::<u32>(), any::<u64>(), prop::option::of(any_balancer())),
        )
            .prop_map(|(a, b, c, d)| StatusReport {
                factory_id: a.0,
                role: a.1,
                epoch: a.2,
                primary_id: a.3,
                lease: a.4,
                lease_ms: a.5,
                trusted: b.0,
                in_sync: b.1,
                last_index: c.0,
                commit_index: c.1,
                peers: c.2,
                clients: d.0,
                uptime_ms: d.1,
                balancer: d.2,
            })
    }

    fn any_balancer() -> impl Strategy<Value = BalancerView> {
        let server =
            (any::<i32>(), any::<u64>(), any::<bool>()).prop_map(|(id, answered, primary)| {
                BalancedServer {
                    id,
                    answered,
                    primary,
                }
            });
        (
            (any::<bool>(), any::<u32>(), any::<u32>()),
            prop::array::uniform6(any::<u64>()),
            prop::collection::vec(server, 0..=MAX_MEMBERS),
        )
            .prop_map(|(a, v, servers)| BalancerView {
                cache_enabled: a.0,
                cache_capacity: a.1,
                cache_entries: a.2,
                cache_hits: v[0],
                cache_misses: v[1],
                invalidations: v[2],
                requests: v[3],
                retries: v[4],
                failovers: v[5],
                servers,
            })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn every_report_round_trips(report in any_report()) {
            let mut out = Vec::new();
            report.encode(&mut out);
            let len = check_status_length([out[0], out[1], out[2], out[3]]).unwrap();
            prop_assert_eq!(len, out.len() - 4);
            prop_assert_eq!(StatusReport::decode(&out[4..]), Ok(report));
        }

        #[test]
        fn mutated_reports_never_panic_and_decode_to_what_they_re_encode_to(
            report in any_report(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let mut out = Vec::new();
            report.encode(&mut out);
            let mut body = out[4..].to_vec();
            for (at, v) in edits {
                let at = at % body.len();
                body[at] = v;
            }
            body.truncate(MIN_STATUS_LEN.saturating_sub(8) + cut % (body.len() + 9));
            if let Ok(decoded) = StatusReport::decode(&body) {
                let mut again = Vec::new();
                decoded.encode(&mut again);
                prop_assert!(again.len() - 4 <= body.len());
                prop_assert_eq!(StatusReport::decode(&again[4..]), Ok(decoded));
            }
        }
    }
}

//! A load client for a Redis-protocol (RESP) store, shaped like our own
//! `client`, so that the load benchmark can put a well-known store doing
//! synchronous replication beside the factory under the same load.
//!
//! ```text
//! resp_load HOST PORT CUSTOMERS REQUESTS MODE REPLICAS
//! ```
//!
//! One thread and one connection per customer (ids `0..CUSTOMERS`), each
//! making REQUESTS requests one at a time and timing each round trip, as
//! `client` and `benches/echo_floor.rs` do. MODE 1 writes: request `n` of
//! customer `c` is `SET customer:<c> <n>` followed by `WAIT <REPLICAS> 0`,
//! both sent in one write; it counts as acknowledged only when the SET
//! answers `+OK` and the WAIT an integer of at least REPLICAS (with REPLICAS
//! 0 only the SET is sent). MODE 2 reads: `GET customer:<c>` (a value or
//! nil). It prints the same stats line as `client --percentiles`: mean,
//! min, max µs, throughput ops/s, p50 and p99 µs, tab-separated. Replies
//! are parsed as RESP2 (simple string, error, integer, bulk string, nil) in
//! a fixed buffer per connection. Exit status 0; 1 when a connection fails
//! or the store answers with an error or anything unexpected (with a message
//! on stderr); 2 for a bad command line.
//!
//! `scripts/loadbench.py --redis` runs it against clusters of 1 to 3
//! `redis-server` processes (a primary and its replicas) for the rows
//! "redis N servers".

#[path = "join.rs"]
mod join;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use factory::client::Stats;

const USAGE: &str = "usage: resp_load HOST PORT CUSTOMERS REQUESTS MODE REPLICAS
  MODE 1: SET customer:<id> <n>, then WAIT REPLICAS 0 (pipelined; no WAIT when REPLICAS is 0)
  MODE 2: GET customer:<id>";

/// Stack of a connection thread: a request and a reply buffer live on the heap.
const STACK: usize = 128 * 1024;

/// Bounds every wait, so that a dead or stuck store fails the run.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Size of a connection's reply buffer: the largest reply it accepts
/// (line and payload together). Our replies are a few dozen bytes.
const REPLY_BUFFER: usize = 16 * 1024;

/// Most threads a run may start, as for `client`.
const MAX_CUSTOMERS: u32 = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let load = match parse(&args) {
        Ok(load) => load,
        Err(e) => {
            eprintln!("resp_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&load) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resp_load: {e}");
            ExitCode::from(1)
        }
    }
}

/// The command line.
struct Load {
    host: String,
    port: u16,
    customers: u32,
    requests: u32,
    writes: bool,
    replicas: u32,
}

fn parse(args: &[String]) -> Result<Load, String> {
    let [host, port, customers, requests, mode, replicas] = args else {
        return Err(format!("expected 6 arguments, got {}", args.len()));
    };
    let load = Load {
        host: host.clone(),
        port: number(port)?,
        customers: number(customers)?,
        requests: number(requests)?,
        writes: match mode.as_str() {
            "1" => true,
            "2" => false,
            other => return Err(format!("MODE must be 1 or 2, not '{other}'")),
        },
        replicas: number(replicas)?,
    };
    if load.customers > MAX_CUSTOMERS {
        return Err(format!("CUSTOMERS must be at most {MAX_CUSTOMERS}"));
    }
    Ok(load)
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a valid number here"))
}

/// Runs every connection on its own thread and prints the stats line; the
/// first failure (by customer id) is the error.
fn run(load: &Load) -> io::Result<()> {
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<io::Result<Stats>> = thread::scope(|scope| {
        let mut handles = Vec::new();
        for customer in 0..load.customers {
            let failed = &failed;
            let handle = thread::Builder::new()
                .name(format!("customer-{customer}"))
                .stack_size(STACK)
                .spawn_scoped(scope, move || {
                    let result = connection(load, customer, failed)
                        .map_err(|e| io::Error::new(e.kind(), format!("customer {customer}: {e}")));
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match handle {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return vec![Err(e)];
                }
            }
        }
        join::join_all(handles)
    });
    let wall = start.elapsed();
    let mut stats = Stats::with_percentiles();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(s) => stats.merge(&s),
            // A customer that stopped because another failed is not news.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    println!("{}", stats.line(wall));
    Ok(())
}

/// One customer: `requests` timed round trips on one connection.
fn connection(load: &Load, customer: u32, failed: &AtomicBool) -> io::Result<Stats> {
    let stream = TcpStream::connect((load.host.as_str(), load.port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut replies = Replies::new(stream.try_clone()?);
    let mut stream = stream;
    let key = format!("customer:{customer}");
    let wait = load.writes && load.replicas > 0;
    let mut replicas = [0u8; 10];
    let replicas = decimal(load.replicas, &mut replicas);
    // Filled before the first request; cleared and refilled, never grown, after.
    let mut request = Vec::with_capacity(256);
    let mut digits = [0u8; 10];
    let mut stats = Stats::with_percentiles();
    for n in 0..load.requests {
        if failed.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        // Timed from before encoding, as the client's load loop is.
        let started = Instant::now();
        request.clear();
        if load.writes {
            command(
                &mut request,
                &[b"SET", key.as_bytes(), decimal(n, &mut digits)],
            );
            if wait {
                command(&mut request, &[b"WAIT", replicas, b"0"]);
            }
        } else {
            command(&mut request, &[b"GET", key.as_bytes()]);
        }
        stream.write_all(&request)?;
        if load.writes {
            expect_ok(&mut replies, "SET")?;
            if wait {
                expect_replicas(&mut replies, load.replicas)?;
            }
        } else {
            expect_value(&mut replies)?;
        }
        stats.record(started.elapsed());
    }
    Ok(stats)
}

/// `n` in decimal, in `digits`.
fn decimal(n: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut n = n;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// Appends one command as a RESP array of bulk strings.
fn command(out: &mut Vec<u8>, words: &[&[u8]]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", words.len());
    for word in words {
        let _ = write!(out, "${}\r\n", word.len());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
}

fn expect_ok(replies: &mut Replies, what: &str) -> io::Result<()> {
    match replies.next()? {
        Reply::Simple(span) if replies.bytes(&span) == b"OK" => Ok(()),
        other => Err(replies.unexpected(what, other)),
    }
}

fn expect_replicas(replies: &mut Replies, replicas: u32) -> io::Result<()> {
    match replies.next()? {
        Reply::Integer(n) if n >= i64::from(replicas) => Ok(()),
        Reply::Integer(n) => Err(invalid(format!(
            "WAIT: only {n} of {replicas} replicas acknowledged"
        ))),
        other => Err(replies.unexpected("WAIT", other)),
    }
}

fn expect_value(replies: &mut Replies) -> io::Result<()> {
    match replies.next()? {
        Reply::Bulk(_) => Ok(()),
        other => Err(replies.unexpected("GET", other)),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// --- RESP replies --------------------------------------------------------------

/// One parsed reply. Spans index the reader's buffer and stay valid until
/// the next call to [`Replies::next`].
#[derive(Debug)]
enum Reply {
    /// `+text`
    Simple(Range<usize>),
    /// `-text`
    Error(Range<usize>),
    /// `:n`
    Integer(i64),
    /// `$len` and its payload; `None` for nil (`$-1`).
    Bulk(Option<Range<usize>>),
}

/// Reads replies from a connection through one fixed buffer: a reply
/// (type line and payload) longer than the buffer is an error rather than
/// a reason to grow it.
struct Replies {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Replies {
    fn new(stream: TcpStream) -> Self {
        Replies {
            stream,
            buf: vec![0; REPLY_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn bytes(&self, span: &Range<usize>) -> &[u8] {
        &self.buf[span.clone()]
    }

    /// The next reply.
    fn next(&mut self) -> io::Result<Reply> {
        if self.start == self.end {
            // Nothing left over: start the buffer afresh (the common case).
            self.start = 0;
            self.end = 0;
        }
        let line_len = self.line()?;
        let s = self.start;
        let text = s + 1..s + line_len;
        // Where the line's CRLF ends, relative to `start`.
        let after = line_len + 2;
        let reply = match self.buf[s] {
            b'+' => Reply::Simple(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Integer(self.integer(text)?),
            b'$' => match self.integer(text)? {
                -1 => Reply::Bulk(None),
                len => return self.bulk(after, len),
            },
            other => {
                return Err(invalid(format!(
                    "unexpected reply type {:?}",
                    char::from(other)
                )))
            }
        };
        self.start = s + after;
        Ok(reply)
    }

    /// A bulk string of `len` bytes whose payload starts `after` bytes past
    /// `start`, followed by CRLF.
    fn bulk(&mut self, after: usize, len: i64) -> io::Result<Reply> {
        let len =
            usize::try_from(len).map_err(|_| invalid(format!("bad bulk string length {len}")))?;
        let need = after
            .checked_add(len)
            .and_then(|n| n.checked_add(2))
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| {
                invalid(format!(
                    "a {len}-byte bulk string does not fit the {REPLY_BUFFER}-byte reply buffer"
                ))
            })?;
        self.fill(need)?;
        let s = self.start;
        if &self.buf[s + need - 2..s + need] != b"\r\n" {
            return Err(invalid("bulk string not followed by CRLF".into()));
        }
        self.start = s + need;
        Ok(Reply::Bulk(Some(s + after..s + after + len)))
    }

    /// The length of the next line without its CRLF (at least one byte:
    /// the type), reading as needed; the line stays in the buffer at `start`.
    fn line(&mut self) -> io::Result<usize> {
        let mut searched = 0;
        loop {
            let have = self.end - self.start;
            if let Some(at) = self.buf[self.start + searched..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let len = searched + at;
                if len == 0 {
                    return Err(invalid("empty reply line".into()));
                }
                return Ok(len);
            }
            if have == self.buf.len() {
                return Err(invalid(format!(
                    "a reply line longer than the {REPLY_BUFFER}-byte reply buffer"
                )));
            }
            // A CR at the end may be the first half of the CRLF.
            searched = have.saturating_sub(1);
            self.fill(have + 1)?;
        }
    }

    /// Reads until at least `need` (at most the buffer's size) unparsed
    /// bytes are at hand, first moving them to the front when they would
    /// not fit behind `start`.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < need {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the store",
                    ))
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reply within {} s", TIMEOUT.as_secs()),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn integer(&self, span: Range<usize>) -> io::Result<i64> {
        let bytes = &self.buf[span];
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad integer {:?}", String::from_utf8_lossy(bytes))))
    }

    /// The error for a reply that is not the one expected.
    fn unexpected(&self, what: &str, reply: Reply) -> io::Error {
        // At most 200 bytes of what the store said.
        let text = |span: Range<usize>| {
            let end = span.end.min(span.start + 200);
            String::from_utf8_lossy(&self.buf[span.start..end]).into_owned()
        };
        let message = match reply {
            Reply::Error(span) => format!("{what}: the store answered -{}", text(span)),
            Reply::Simple(span) => format!("{what}: unexpected reply +{}", text(span)),
            Reply::Integer(n) => format!("{what}: unexpected reply :{n}"),
            Reply::Bulk(Some(span)) => format!("{what}: unexpected bulk reply {:?}", text(span)),
            Reply::Bulk(None) => format!("{what}: unexpected nil reply"),
        };
        invalid(message)
    }
}

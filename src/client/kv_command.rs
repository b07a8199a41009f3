//! Runs one `client kv` command ([`crate::cli::kv::KvArgs`]): connects to
//! the server or the cluster, sends the request (the pages of a scan),
//! prints the outcome and returns the exit status documented in
//! `client kv --help`. The `client` binary calls [`run`]; the rendering
//! functions are pure and tested here.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::output::json_string;
use crate::cli::kv::{KvArgs, KvTarget, KvVerb, KV_USAGE};
use crate::cli::{print_err, print_out, Output};
use crate::kv::{KvClient, KvClientError, KvCluster, KvClusterOptions};
use crate::wire::kv::{
    KvBody, KvItem, KvOp, KvResponse, KvStatus, Version, MAX_SCAN_LIMIT, NO_VERSION,
};

/// Exit status when the operation's condition did not hold.
const CONDITION_FAILED: u8 = 3;

/// Most pages one scan reads (a bound on the loop even if a server kept
/// answering "more" with nothing in it).
const MAX_PAGES: u32 = 1 + crate::cli::kv::MAX_SCAN_KEYS / MAX_SCAN_LIMIT;

enum Conn {
    One(KvClient),
    Many(KvCluster),
}

impl Conn {
    fn open(args: &KvArgs) -> Result<Conn, KvClientError> {
        Ok(match &args.target {
            KvTarget::Server(address) => {
                Conn::One(KvClient::connect(address.as_str(), args.timeout)?)
            }
            KvTarget::Cluster(list) => {
                let deadline = args.timeout.unwrap_or(Duration::from_secs(30));
                let options = KvClusterOptions {
                    deadline,
                    attempt_timeout: KvClusterOptions::default().attempt_timeout.min(deadline),
                };
                let mut cluster = KvCluster::new(list.clone(), options)?;
                cluster.connect_now()?;
                Conn::Many(cluster)
            }
        })
    }

    fn call(&mut self, op: KvOp) -> Result<KvResponse, KvClientError> {
        match self {
            Conn::One(c) => c.call(op),
            Conn::Many(c) => c.call(op),
        }
    }

    fn server(&self) -> String {
        match self {
            Conn::One(c) => c.server().to_owned(),
            Conn::Many(c) => c.server().unwrap_or("the cluster").to_owned(),
        }
    }
}

/// Runs the command and returns its exit status.
pub fn run(args: &KvArgs) -> ExitCode {
    if args.verb == KvVerb::Help {
        print_out(KV_USAGE);
        return ExitCode::SUCCESS;
    }
    let mut conn = match Conn::open(args) {
        Ok(c) => c,
        Err(e) => return failed(&e.to_string()),
    };
    let code = match &args.verb {
        KvVerb::Scan { start, limit } => scan(&mut conn, args, start, *limit),
        verb => single(&mut conn, args, verb),
    };
    ExitCode::from(code)
}

fn failed(text: &str) -> ExitCode {
    print_err(&format!("client: kv: {text}"));
    ExitCode::from(1)
}

/// The op of a verb other than scan and help.
fn op_of(verb: &KvVerb) -> KvOp {
    match verb.clone() {
        KvVerb::Get { key } => KvOp::Get { key },
        KvVerb::Put { key, value } => KvOp::Put { key, value },
        KvVerb::Create { key, value } => KvOp::Create { key, value },
        KvVerb::Update { key, value } => KvOp::Update { key, value },
        KvVerb::Delete { key } => KvOp::Delete { key },
        KvVerb::Cas {
            key,
            expected,
            value,
        } => KvOp::Cas {
            key,
            expected,
            value,
        },
        KvVerb::Scan { start, limit } => KvOp::Scan { start, limit },
        KvVerb::Help => unreachable!("help is answered before connecting"),
    }
}

fn single(conn: &mut Conn, args: &KvArgs, verb: &KvVerb) -> u8 {
    let op = op_of(verb);
    let (name, key) = (op.name(), op_key(&op).to_vec());
    let answer = match conn.call(op) {
        Ok(a) => a,
        Err(e) => {
            print_err(&format!("client: kv {name}: {e}"));
            return 1;
        }
    };
    let render = Render {
        op: name,
        key: &key,
        hex: args.hex,
        output: args.output,
    };
    match render.answer(&answer) {
        Ok((line, code)) => {
            if let Some(line) = line {
                print_out(&format!("{line}\n"));
            }
            if code == CONDITION_FAILED && args.output != Output::Json {
                print_err(&format!("client: kv {name}: {}", render.condition(&answer)));
            }
            code
        }
        Err(refusal) => {
            print_err(&format!(
                "client: kv {name}: server {} {refusal}",
                conn.server()
            ));
            1
        }
    }
}

fn op_key(op: &KvOp) -> &[u8] {
    match op {
        KvOp::Get { key }
        | KvOp::Delete { key }
        | KvOp::Put { key, .. }
        | KvOp::Create { key, .. }
        | KvOp::Update { key, .. }
        | KvOp::Cas { key, .. } => key,
        KvOp::Scan { start, .. } => start,
    }
}

fn scan(conn: &mut Conn, args: &KvArgs, start: &[u8], limit: u32) -> u8 {
    let mut start = start.to_vec();
    let mut left = limit;
    let mut count = 0u64;
    let mut more = false;
    for _ in 0..MAX_PAGES {
        let page = left.min(MAX_SCAN_LIMIT);
        let answer = match conn.call(KvOp::Scan {
            start: start.clone(),
            limit: page,
        }) {
            Ok(a) => a,
            Err(e) => {
                print_err(&format!("client: kv scan: {e}"));
                return 1;
            }
        };
        let (items, page_more) = match answer.body {
            KvBody::Items { items, more } if answer.status == KvStatus::Ok => (items, more),
            _ => {
                print_err(&format!(
                    "client: kv scan: server {} {}",
                    conn.server(),
                    refusal_text(&answer)
                ));
                return 1;
            }
        };
        let mut text = String::new();
        for item in &items {
            let _ = writeln!(text, "{}", item_line(item, args.hex, args.output));
        }
        if !print_out(&text) {
            return 0;
        }
        count += items.len() as u64;
        left -= (items.len() as u32).min(left);
        more = page_more;
        let Some(last) = items.last() else { break };
        if !page_more || left == 0 {
            break;
        }
        start = last.key.clone();
        start.push(0);
    }
    match args.output {
        Output::Json => {
            print_out(&format!(
                "{{\"scan\":{{\"count\":{count},\"more\":{more}}}}}\n"
            ));
        }
        Output::Human => {
            let tail = if more { "; more follow" } else { "" };
            print_out(&format!("{count} key(s){tail}\n"));
        }
        Output::Plain => {}
    }
    0
}

/// How keys and values are shown: hex, or escaped text.
pub fn show(bytes: &[u8], hex: bool) -> String {
    if hex {
        return bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    }
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// One scanned key as a line.
pub fn item_line(item: &KvItem, hex: bool, output: Output) -> String {
    let (key, value) = (show(&item.key, hex), show(&item.value, hex));
    match output {
        Output::Plain => format!("{key}\t{}\t{value}", item.version),
        Output::Human => format!(
            "key {key}: version {}, {} byte(s): {value}",
            item.version,
            item.value.len()
        ),
        Output::Json => format!(
            "{{\"key\":{},\"version\":{},\"value\":{}}}",
            json_string(&key),
            item.version,
            json_string(&value)
        ),
    }
}

/// Renders the answer of one request.
struct Render<'a> {
    op: &'static str,
    key: &'a [u8],
    hex: bool,
    output: Output,
}

impl Render<'_> {
    /// The line to print (if any) and the exit status, or, for a status
    /// that is no outcome of the op, the text of the refusal.
    fn answer(&self, answer: &KvResponse) -> Result<(Option<String>, u8), String> {
        let (status, version, value) = match (answer.status, &answer.body) {
            (KvStatus::Ok, KvBody::Value { version, value }) => ("ok", Some(*version), Some(value)),
            (KvStatus::Ok, KvBody::Version(v)) => ("ok", Some(*v), None),
            (KvStatus::NotFound, _) => ("not_found", None, None),
            (KvStatus::Exists, KvBody::Version(v)) => ("exists", Some(*v), None),
            (KvStatus::VersionMismatch, KvBody::Version(v)) => ("version_mismatch", Some(*v), None),
            _ => return Err(refusal_text(answer)),
        };
        let code = if status == "ok" { 0 } else { CONDITION_FAILED };
        let line = match self.output {
            Output::Json => Some(self.json(status, version, value.map(Vec::as_slice))),
            _ if code != 0 => None,
            Output::Plain => Some(match value {
                Some(v) => format!("{}\t{}", version.unwrap_or(0), show(v, self.hex)),
                None => version.unwrap_or(0).to_string(),
            }),
            Output::Human => Some(self.human(version.unwrap_or(0), value.map(Vec::as_slice))),
        };
        Ok((line, code))
    }

    fn json(&self, status: &str, version: Option<Version>, value: Option<&[u8]>) -> String {
        let mut s = format!(
            "{{\"op\":\"{}\",\"key\":{},\"status\":\"{status}\"",
            self.op,
            json_string(&show(self.key, self.hex))
        );
        match version {
            Some(NO_VERSION) => s.push_str(",\"version\":null"),
            Some(v) => {
                let _ = write!(s, ",\"version\":{v}");
            }
            None => {}
        }
        if let Some(v) = value {
            let _ = write!(s, ",\"value\":{}", json_string(&show(v, self.hex)));
        }
        s.push('}');
        s
    }

    fn human(&self, version: Version, value: Option<&[u8]>) -> String {
        let key = show(self.key, self.hex);
        match value {
            Some(v) => format!(
                "key {key}: version {version}, {} byte(s): {}",
                v.len(),
                show(v, self.hex)
            ),
            None if self.op == "delete" => format!("key {key}: deleted at index {version}"),
            None => format!("key {key}: {}, version {version}", self.op),
        }
    }

    /// What a condition that did not hold says on stderr.
    fn condition(&self, answer: &KvResponse) -> String {
        let key = show(self.key, self.hex);
        let version = match answer.body {
            KvBody::Version(NO_VERSION) => "absent".to_owned(),
            KvBody::Version(v) => format!("version {v}"),
            _ => String::new(),
        };
        match answer.status {
            KvStatus::NotFound => format!("key {key} not found"),
            KvStatus::Exists => format!("key {key} exists ({version})"),
            _ => format!("key {key}: version mismatch (it is {version})"),
        }
    }
}

/// A refusal as text: the status and what the server said with it.
fn refusal_text(answer: &KvResponse) -> String {
    let what = match answer.status {
        KvStatus::TooLarge => "refused it: key or value too large",
        KvStatus::NotPrimary => "is not the primary",
        KvStatus::Busy => "is busy",
        KvStatus::NoMemory => "refused it: out of memory (--max-memory)",
        KvStatus::Unavailable => "cannot commit now (no majority?)",
        KvStatus::BadRequest => "refused the request as malformed",
        _ => "answered with a body that does not match its status",
    };
    match &answer.body {
        KvBody::Text(t) if answer.status == KvStatus::NotPrimary && !t.is_empty() => format!(
            "{what}; the primary is {} (use --servers to follow it)",
            show(t, false)
        ),
        KvBody::Text(t) if !t.is_empty() => format!("{what}: {}", show(t, false)),
        _ => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(op: u8, status: KvStatus, body: KvBody) -> KvResponse {
        KvResponse {
            id: 1,
            op,
            status,
            body,
        }
    }

    fn render(output: Output) -> Render<'static> {
        Render {
            op: "get",
            key: b"k\x00\\",
            hex: false,
            output,
        }
    }

    #[test]
    fn bytes_are_escaped_or_hex() {
        assert_eq!(show(b"a b\\\x00\xff\n", false), "a b\\\\\\x00\\xff\\x0a");
        assert_eq!(show(b"\x00\xffA", true), "00ff41");
        assert_eq!(show(b"", true), "");
    }

    #[test]
    fn answers_render_with_their_exit_status() {
        let got = response(
            1,
            KvStatus::Ok,
            KvBody::Value {
                version: 7,
                value: b"v\x01".to_vec(),
            },
        );
        assert_eq!(
            render(Output::Plain).answer(&got),
            Ok((Some("7\tv\\x01".into()), 0))
        );
        assert_eq!(
            render(Output::Json).answer(&got),
            Ok((
                Some(
                    r#"{"op":"get","key":"k\\x00\\\\","status":"ok","version":7,"value":"v\\x01"}"#
                        .into()
                ),
                0
            ))
        );
        let missing = response(1, KvStatus::NotFound, KvBody::Empty);
        assert_eq!(render(Output::Plain).answer(&missing), Ok((None, 3)));
        assert_eq!(
            render(Output::Json).answer(&missing),
            Ok((
                Some(r#"{"op":"get","key":"k\\x00\\\\","status":"not_found"}"#.into()),
                3
            ))
        );
        let mismatch = response(6, KvStatus::VersionMismatch, KvBody::Version(NO_VERSION));
        let r = Render {
            op: "cas",
            key: b"k",
            hex: true,
            output: Output::Json,
        };
        assert_eq!(
            r.answer(&mismatch),
            Ok((
                Some(
                    r#"{"op":"cas","key":"6b","status":"version_mismatch","version":null}"#.into()
                ),
                3
            ))
        );
        assert_eq!(
            r.condition(&mismatch),
            "key 6b: version mismatch (it is absent)"
        );
        let too_large = response(2, KvStatus::TooLarge, KvBody::Empty);
        assert!(render(Output::Plain)
            .answer(&too_large)
            .unwrap_err()
            .contains("too large"));
        let elsewhere = response(2, KvStatus::NotPrimary, KvBody::Text(b"h:9".to_vec()));
        assert!(refusal_text(&elsewhere).contains("the primary is h:9"));
    }

    #[test]
    fn scanned_items() {
        let item = KvItem {
            key: b"a\tb".to_vec(),
            version: 3,
            value: b"x".to_vec(),
        };
        assert_eq!(item_line(&item, false, Output::Plain), "a\\x09b\t3\tx");
        assert_eq!(
            item_line(&item, true, Output::Json),
            r#"{"key":"610962","version":3,"value":"78"}"#
        );
    }
}

//! The grammar of `client kv VERB ...`: one protocol v2 request (or, for
//! `scan`, as many pages as the limit needs) against one server or a
//! cluster (`--servers`). `client.rs` hands every command line that starts
//! with `kv` here; running it is [`crate::client::kv_command`].
//!
//! The verb `load` is not claimed here (the kv load mode parses its own).

use std::time::Duration;

use super::client::{ClientArgs, ClientCommand, Output};
use super::{number, split_args, usage_error, Command, UsageError};
use crate::client::connect::split_host_port;
use crate::wire::kv::{Version, NO_VERSION};

/// Usage text of `client kv` (also printed by `client kv --help`).
pub const KV_USAGE: &str = "\
usage: client kv get H:P KEY
       client kv put H:P KEY VALUE
       client kv create H:P KEY VALUE
       client kv update H:P KEY VALUE
       client kv delete H:P KEY
       client kv cas H:P KEY VERSION VALUE
       client kv scan H:P START [LIMIT]
       (each also as --servers H:P,H:P,... in place of H:P; options may
       come anywhere after 'kv')

Protocol v2: string keys and values with a version each (the log index
that wrote it). get reads; put sets; create sets only an absent key;
update only a present one; delete removes; cas sets only if the key's
version is VERSION ('none': only if absent); scan lists up to LIMIT keys
(default 100) from START (inclusive, in byte order; '' is the first key),
reading as many pages of up to 1000 as it needs.

Bytes: KEY, VALUE and START are taken as given (their UTF-8 bytes), or as
hex with --hex (e.g. 00ff41: three bytes, the first a NUL). Keys and
values are printed escaped: printable ASCII as is, a backslash as \\\\,
every other byte as \\xHH; with --hex, as hex.

Output (plain): get prints VERSION<TAB>VALUE; put, create, update, cas
and delete print the new VERSION (for delete the delete's log index);
scan prints KEY<TAB>VERSION<TAB>VALUE per key. --human labels them;
--json prints one object per line: {\"op\",\"key\",\"status\",\"version\",
\"value\"} (scan: one {\"key\",\"version\",\"value\"} per key, then
{\"scan\":{\"count\",\"more\"}}).

With --servers, a request goes to the primary: a server answering \"not
primary\" sends it to the primary it names, else to the next server; one
that is down, fails, is busy or has no majority, to the next one, with
backoff, until the --timeout deadline. A write whose connection failed
after it was sent is sent again: a put may then commit twice (same value,
newer version), a create, update, delete or cas may report the outcome of
its own first commit (exists, not found, mismatch).

Exit status: 0 done; 3 the operation's condition did not hold (get,
update or delete of an absent key, create of a present one, cas on another
version); 1 any other failure (a server cannot be reached, times out, or
refuses: too large, no memory, not primary without --servers, no
majority); 2 a bad command line.

options:
  --servers LIST  the cluster's servers, comma-separated H:P, in place of H:P
  --timeout SECS  the deadline of each request (default 30; 0: forever
                  for H:P, 30 for --servers)
  --hex           KEY, VALUE and START in hex, keys and values printed in hex
  --human         labelled output
  --json          JSON output
  -h, --help      print this help and exit
";

/// Where a kv command is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvTarget {
    /// One server, `host:port`.
    Server(String),
    /// A cluster whose primary is followed.
    Cluster(Vec<String>),
}

/// One kv operation with its arguments, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvVerb {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Create {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Cas {
        key: Vec<u8>,
        expected: Version,
        value: Vec<u8>,
    },
    Scan {
        start: Vec<u8>,
        limit: u32,
    },
    /// `client kv --help`: print [`KV_USAGE`].
    Help,
}

/// A parsed `client kv` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvArgs {
    /// Where to send it.
    pub target: KvTarget,
    /// What to do.
    pub verb: KvVerb,
    /// Deadline of each request (`None`: wait forever, one server only).
    pub timeout: Option<Duration>,
    /// Keys and values in hex, in and out.
    pub hex: bool,
    /// How to print it.
    pub output: Output,
}

/// Most keys one `scan` lists.
pub const MAX_SCAN_KEYS: u32 = 1_000_000;

const DEFAULT_SCAN_KEYS: u32 = 100;

/// Parses the arguments after `kv`.
///
/// # Errors
/// A [`UsageError`] naming the first argument that is wrong.
pub fn parse_kv(args: &[String]) -> Result<Command<ClientArgs>, UsageError> {
    let valued = ["--servers", "--timeout"];
    let flags = ["--hex", "--json", "--human"];
    let (pos, options) = match split_args(args, &valued, &flags)? {
        Command::Run(split) => split,
        Command::Version => return Ok(Command::Version),
        Command::Help => {
            return Ok(Command::Run(ClientArgs {
                command: ClientCommand::Kv(KvArgs {
                    target: KvTarget::Server(String::new()),
                    verb: KvVerb::Help,
                    timeout: None,
                    hex: false,
                    output: Output::Plain,
                }),
                output: Output::Plain,
            }))
        }
    };
    let mut servers = None;
    let mut timeout = None;
    let mut hex = false;
    let mut output = Output::Plain;
    for (name, value) in options {
        match name.as_str() {
            "--hex" => hex = true,
            "--json" | "--human" => {
                output = super::output_option(output, &name)?;
            }
            "--servers" => servers = Some(super::server_list("--servers", &value)?),
            _ => {
                let secs: u64 = number("--timeout", &value, 0, 86_400)?;
                timeout = Some(secs);
            }
        }
    }
    let Some((verb, rest)) = pos.split_first() else {
        return Err(usage_error(
            "kv needs a command: get, put, create, update, delete, cas or scan",
        ));
    };
    let (target, rest) = match servers {
        Some(list) => (KvTarget::Cluster(list), rest),
        None => {
            let Some((address, rest)) = rest.split_first() else {
                return Err(usage_error(format!("kv {verb} needs H:P (or --servers)")));
            };
            split_host_port(address).map_err(|e| usage_error(format!("H:P: {e}")))?;
            (KvTarget::Server(address.clone()), rest)
        }
    };
    let verb = parse_verb(verb, rest, hex)?;
    let timeout = match (timeout, &target) {
        (None, _) => Some(Duration::from_secs(30)),
        (Some(0), KvTarget::Server(_)) => None,
        (Some(0), KvTarget::Cluster(_)) => Some(Duration::from_secs(30)),
        (Some(s), _) => Some(Duration::from_secs(s)),
    };
    Ok(Command::Run(ClientArgs {
        command: ClientCommand::Kv(KvArgs {
            target,
            verb,
            timeout,
            hex,
            output,
        }),
        output,
    }))
}

fn parse_verb(verb: &str, rest: &[String], hex: bool) -> Result<KvVerb, UsageError> {
    let shape = match verb {
        "get" | "delete" => "KEY",
        "put" | "create" | "update" => "KEY VALUE",
        "cas" => "KEY VERSION VALUE",
        "scan" => "START [LIMIT]",
        other => {
            return Err(usage_error(format!(
                "unknown kv command '{other}' (get, put, create, update, delete, cas, scan)"
            )))
        }
    };
    let want = shape.split(' ').filter(|w| !w.starts_with('[')).count();
    let most = shape.split(' ').count();
    if rest.len() < want || rest.len() > most {
        return Err(usage_error(format!(
            "expected kv {verb} H:P {shape}: got {} argument(s) after the server",
            rest.len()
        )));
    }
    let bytes = |name: &str, i: usize| decode_arg(name, &rest[i], hex);
    Ok(match verb {
        "get" => KvVerb::Get {
            key: bytes("KEY", 0)?,
        },
        "delete" => KvVerb::Delete {
            key: bytes("KEY", 0)?,
        },
        "put" => KvVerb::Put {
            key: bytes("KEY", 0)?,
            value: bytes("VALUE", 1)?,
        },
        "create" => KvVerb::Create {
            key: bytes("KEY", 0)?,
            value: bytes("VALUE", 1)?,
        },
        "update" => KvVerb::Update {
            key: bytes("KEY", 0)?,
            value: bytes("VALUE", 1)?,
        },
        "cas" => KvVerb::Cas {
            key: bytes("KEY", 0)?,
            expected: version_arg(&rest[1])?,
            value: bytes("VALUE", 2)?,
        },
        _ => KvVerb::Scan {
            start: bytes("START", 0)?,
            limit: match rest.get(1) {
                Some(l) => number("LIMIT", l, 1, MAX_SCAN_KEYS)?,
                None => DEFAULT_SCAN_KEYS,
            },
        },
    })
}

fn version_arg(value: &str) -> Result<Version, UsageError> {
    if value == "none" {
        return Ok(NO_VERSION);
    }
    number("VERSION", value, 0, NO_VERSION - 1)
}

/// An argument's bytes: as given, or decoded from hex.
fn decode_arg(name: &str, value: &str, hex: bool) -> Result<Vec<u8>, UsageError> {
    if !hex {
        return Ok(value.as_bytes().to_vec());
    }
    from_hex(value).ok_or_else(|| {
        usage_error(format!(
            "{name} must be hex (an even number of 0-9a-f digits) with --hex, got '{value}'"
        ))
    })
}

/// Bytes from hex digits (either case); `None` if not an even run of them.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn kv(s: &str) -> KvArgs {
        match parse_kv(&args(s)) {
            Ok(Command::Run(ClientArgs {
                command: ClientCommand::Kv(a),
                ..
            })) => a,
            other => panic!("expected a kv command, got {other:?}"),
        }
    }

    fn kv_err(s: &str) -> String {
        parse_kv(&args(s)).unwrap_err().0
    }

    #[test]
    fn every_verb_parses() {
        let a = kv("get h:1 k");
        assert_eq!(a.target, KvTarget::Server("h:1".into()));
        assert_eq!(a.verb, KvVerb::Get { key: b"k".to_vec() });
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            kv("put h:1 k v --json").verb,
            KvVerb::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec()
            }
        );
        assert_eq!(kv("create h:1 k v --human").output, Output::Human);
        assert!(matches!(kv("update h:1 k v").verb, KvVerb::Update { .. }));
        assert!(matches!(kv("delete h:1 k").verb, KvVerb::Delete { .. }));
        assert_eq!(
            kv("cas h:1 k 7 v").verb,
            KvVerb::Cas {
                key: b"k".to_vec(),
                expected: 7,
                value: b"v".to_vec()
            }
        );
        assert!(matches!(
            kv("cas h:1 k none v").verb,
            KvVerb::Cas {
                expected: NO_VERSION,
                ..
            }
        ));
        assert_eq!(
            kv("scan h:1 a").verb,
            KvVerb::Scan {
                start: b"a".to_vec(),
                limit: 100
            }
        );
        assert!(matches!(
            kv("scan h:1 a 5000").verb,
            KvVerb::Scan { limit: 5000, .. }
        ));
        let c = kv("--servers a:1,b:2 get k --timeout 0");
        assert_eq!(
            c.target,
            KvTarget::Cluster(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(c.timeout, Some(Duration::from_secs(30)));
        assert_eq!(kv("get h:1 k --timeout 0").timeout, None);
    }

    #[test]
    fn hex_arguments() {
        let a = kv("put h:1 00ff 41Ab --hex");
        assert_eq!(
            a.verb,
            KvVerb::Put {
                key: vec![0, 0xff],
                value: vec![0x41, 0xab]
            }
        );
        assert!(a.hex);
        assert!(kv_err("get h:1 0 --hex").contains("must be hex"));
        assert!(kv_err("get h:1 zz --hex").contains("must be hex"));
        assert_eq!(from_hex(""), Some(vec![]));
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(kv_err("").contains("kv needs a command"));
        assert!(kv_err("load h:1 x").contains("unknown kv command 'load'"));
        assert!(kv_err("get").contains("needs H:P"));
        assert!(kv_err("get h k").contains("H:P"));
        assert!(kv_err("get h:1").contains("expected kv get H:P KEY"));
        assert!(kv_err("put h:1 k").contains("KEY VALUE"));
        assert!(kv_err("put h:1 k v x").contains("KEY VALUE"));
        assert!(kv_err("cas h:1 k x v").contains("VERSION"));
        assert!(kv_err("scan h:1 a 0").contains("LIMIT"));
        assert!(kv_err("scan h:1 a 1000001").contains("LIMIT"));
        assert!(kv_err("get h:1 k --json --human").contains("exclude"));
        assert!(kv_err("--servers , get k").contains("at least one"));
        assert!(kv_err("get h:1 k --percentiles").contains("unknown option"));
        assert!(matches!(
            parse_kv(&args("get --help")),
            Ok(Command::Run(ClientArgs {
                command: ClientCommand::Kv(KvArgs {
                    verb: KvVerb::Help,
                    ..
                }),
                ..
            }))
        ));
    }
}

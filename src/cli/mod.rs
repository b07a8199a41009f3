//! Command-line parsing for the `server` and `client` binaries: the shared
//! pieces (options, numbers, errors) here, each binary's grammar in its own
//! file (`server.rs`, `client.rs`).
//!
//! The positional arguments are exactly the original's; options (`--help`,
//! `--version`, `--bind`, `--timeout`, `--percentiles`) may appear anywhere. Unlike the
//! original, which exits 0 after a terse usage line, every mistake yields a
//! [`UsageError`] naming the argument; the binaries print it on one line
//! with [`usage_failure`] and exit with status 2.
//!
//! Output helpers for both binaries: [`print_out`] and [`print_err`] never
//! panic on a closed stdout or stderr (`server --help | true`), where
//! `print!` would.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command<T> {
    /// Run with these arguments.
    Run(T),
    /// Print the help text and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A command line that cannot be run; the message says which argument and why.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn usage_error(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Writes `text` to stdout. A reader that went away (a broken pipe) or a
/// closed stdout ends the output quietly, as Unix tools do; returns false
/// then, so the caller can stop producing more.
pub fn print_out(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Writes `text` and a newline to stderr in one write, ignoring a closed
/// or broken stderr (there is nowhere left to report it).
pub fn print_err(text: &str) {
    let line = format!("{text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Reports a command-line mistake as `PROGRAM: MESSAGE; try 'PROGRAM
/// --help'` (one line; `--help` has the full text) and returns exit status 2.
pub fn usage_failure(program: &str, error: &UsageError) -> ExitCode {
    print_err(&format!("{program}: {error}; try '{program} --help'"));
    ExitCode::from(2)
}

/// `1st`, `2nd`, `3rd`, `4th`, ... `11th`, `12th`, `13th`, `21st`.
pub(crate) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

mod client;
pub mod kv;
pub mod kv_load;
pub mod load;
mod server;

pub use client::{
    parse_client, ClientArgs, ClientCommand, Mode, Output, CLIENT_USAGE, MAX_CUSTOMERS,
};
pub use server::{parse_server, ServerArgs, SERVER_USAGE};

/// Positional arguments, and `(name, value)` options in order.
pub(crate) type SplitArgs = (Vec<String>, Vec<(String, String)>);

/// Splits options from positional arguments. Returns the positionals and
/// the `--name value` / `--name=value` options in order; a `flags` option
/// takes no value and comes back with an empty one.
pub(crate) fn split_args(
    args: &[String],
    valued: &[&str],
    flags: &[&str],
) -> Result<Command<SplitArgs>, UsageError> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--" => {
                positional.extend(iter.by_ref().cloned());
            }
            a if flags.contains(&a) => options.push((a.to_string(), String::new())),
            a if a.starts_with("--") => {
                let (name, inline) = match a.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (a, None),
                };
                if !valued.contains(&name) {
                    return Err(usage_error(format!("unknown option '{name}'")));
                }
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| usage_error(format!("option '{name}' needs a value")))?,
                };
                options.push((name.to_string(), value));
            }
            _ => positional.push(arg.clone()),
        }
    }
    Ok(Command::Run((positional, options)))
}

/// Parses `value` as a whole number within `min..=max`; a number too large
/// for any integer type is reported as out of range, not as "not a number".
pub(crate) fn number<T>(name: &str, value: &str, min: T, max: T) -> Result<T, UsageError>
where
    T: Into<i128> + TryFrom<i128> + fmt::Display + Copy,
{
    let out_of_range = || {
        usage_error(format!(
            "{name} must be between {min} and {max}, got {value}"
        ))
    };
    let digits = value.strip_prefix('-').unwrap_or(value);
    let n: i128 = match value.parse() {
        Ok(n) => n,
        Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(out_of_range())
        }
        Err(_) => {
            return Err(usage_error(format!(
                "{name} must be a whole number, got '{value}'"
            )))
        }
    };
    if n < min.into() || n > max.into() {
        return Err(out_of_range());
    }
    T::try_from(n).map_err(|_| out_of_range())
}

pub(crate) fn port(name: &str, value: &str) -> Result<u16, UsageError> {
    number(name, value, 1, u16::MAX)
}

pub(crate) fn host(name: &str, value: &str) -> Result<String, UsageError> {
    if value.is_empty() {
        return Err(usage_error(format!("{name} must not be empty")));
    }
    Ok(value.to_string())
}

/// The output a `--json` or `--human` option (`name`) asks for, given the
/// one chosen so far: the two exclude each other.
pub(crate) fn output_option(current: Output, name: &str) -> Result<Output, UsageError> {
    let want = if name == "--json" {
        Output::Json
    } else {
        Output::Human
    };
    if current != Output::Plain && current != want {
        return Err(usage_error("--json and --human exclude each other"));
    }
    Ok(want)
}

/// The comma-separated `host:port` list given to option `name`
/// (`--servers`, `--status`): at least one, each well formed.
pub(crate) fn server_list(name: &str, value: &str) -> Result<Vec<String>, UsageError> {
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err(usage_error(format!("{name} needs at least one HOST:PORT")));
    }
    for s in &list {
        crate::client::connect::split_host_port(s)
            .map_err(|e| usage_error(format!("{name}: {e}")))?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(super::ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}

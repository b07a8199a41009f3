//! The binaries' `log` backend: `env_logger`, one line per record on
//! stderr with an RFC 3339 UTC timestamp, the level and the module, and
//! `RUST_LOG` in env_logger's syntax (`info`, `factory::server=debug`,
//! `warn,factory::server::primary::term=trace`).
//!
//! env_logger takes a directive naming a module that does not exist (a
//! typo, or `RUST_LOG=bogus`) as a filter that matches nothing, and drops
//! a malformed one silently; [`check_spec`] finds both first so that the
//! binary can say so once. Also here: [`epoch`], how log lines print an
//! epoch.

use std::fmt;
use std::io::Write;

use log::LevelFilter;

use crate::wire::Epoch;

/// The level used when `RUST_LOG` is unset or names nothing usable.
pub const DEFAULT_FILTER: &str = "info";

/// Module roots whose log lines a binary can emit (the library, the
/// binary's own crate and the HTTP crate behind `--metrics`).
const KNOWN_ROOTS: &[&str] = &["factory", "server", "client", "tiny_http"];

/// A `RUST_LOG` value split into what env_logger should get and what was
/// wrong with the rest.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckedSpec {
    /// The directives that are valid (or [`DEFAULT_FILTER`] if none is).
    pub filter: String,
    /// One phrase per ignored directive, for a single warning line.
    pub problems: Vec<String>,
}

/// The level named by `value`, or `None` if it names none.
pub fn parse_level(value: &str) -> Option<LevelFilter> {
    value.trim().parse().ok()
}

/// Checks a `RUST_LOG` value directive by directive: a level, a module
/// path of this program, or `path=level`; an optional `/text` suffix
/// (lines must contain the text) is kept as it is.
pub fn check_spec(spec: &str) -> CheckedSpec {
    let (directives, text) = match spec.split_once('/') {
        Some((d, t)) => (d, Some(t)),
        None => (spec, None),
    };
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    for directive in directives.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        match check_directive(directive) {
            Ok(()) => valid.push(directive),
            Err(why) => problems.push(format!("'{directive}' {why}")),
        }
    }
    if text.is_some_and(|t| t.contains('/')) {
        problems.push("more than one '/' (the text filter must be last)".into());
    }
    let mut filter = if valid.is_empty() {
        DEFAULT_FILTER.to_string()
    } else {
        valid.join(",")
    };
    if let Some(t) = text.filter(|t| !t.contains('/')) {
        filter = format!("{filter}/{t}");
    }
    CheckedSpec { filter, problems }
}

fn check_directive(directive: &str) -> Result<(), String> {
    let (path, level) = match directive.split_once('=') {
        Some((p, l)) => (p.trim(), Some(l.trim())),
        None if parse_level(directive).is_some() => return Ok(()),
        None => (directive, None),
    };
    if let Some(level) = level {
        if parse_level(level).is_none() {
            return Err(format!(
                "has no valid level ('{level}' is not error, warn, info, debug, trace or off)"
            ));
        }
    }
    if !is_module_path(path) {
        return Err(
            "is neither a level (error, warn, info, debug, trace, off) nor a module path".into(),
        );
    }
    let root = path.split("::").next().unwrap_or(path);
    if !KNOWN_ROOTS.contains(&root) {
        return Err(format!(
            "names no module of this program (they start with {})",
            KNOWN_ROOTS.join(", ")
        ));
    }
    Ok(())
}

fn is_module_path(path: &str) -> bool {
    !path.is_empty()
        && path.split("::").all(|segment| {
            let mut chars = segment.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Installs the logger with the filter from `RUST_LOG` (default `info`);
/// invalid directives are ignored with one warning line on stderr, naming
/// `program`. Calling it again, or after another logger was installed,
/// does nothing.
pub fn init_from_env(program: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let checked = check_spec(&spec);
    if !checked.problems.is_empty() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "{program}: warning: ignoring part of RUST_LOG={spec:?}: {}; logging at {}",
            checked.problems.join("; "),
            checked.filter
        );
    }
    let _ = env_logger::Builder::new()
        .parse_filters(&checked.filter)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .try_init();
}

/// An epoch as an operator reads it: epochs are `(counter << 16) | id`
/// (see [`crate::wire::Epoch`]), and the counter is what goes up by one at
/// each takeover. `{}` prints the counter; `{:#}` adds the server that
/// began it. Epoch 0 (entries from an original primary) prints `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochName(pub Epoch);

/// See [`EpochName`].
pub fn epoch(epoch: Epoch) -> EpochName {
    EpochName(epoch)
}

impl fmt::Display for EpochName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        write!(f, "{}", self.0 >> 16)?;
        if f.alternate() {
            write!(f, " (begun by server {})", self.0 & 0xffff)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn valid_specs_pass_through() {
        for spec in [
            "debug",
            "factory::server=debug",
            "warn,factory::server::primary::term=trace",
            "server=info,tiny_http=off",
            "info/became primary",
        ] {
            let c = check_spec(spec);
            assert_eq!(c.filter, spec);
            assert!(c.problems.is_empty(), "{spec}: {:?}", c.problems);
        }
    }

    #[test]
    fn empty_spec_is_the_default() {
        assert_eq!(check_spec("").filter, "info");
        assert!(check_spec(" , ").problems.is_empty());
    }

    #[test]
    fn invalid_directives_are_named_and_dropped() {
        let c = check_spec("bogus");
        assert_eq!(c.filter, "info");
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].contains("'bogus' names no module"), "{c:?}");

        let c = check_spec("factory=loud,debug");
        assert_eq!(c.filter, "debug");
        assert!(c.problems[0].contains("'loud' is not"), "{c:?}");

        let c = check_spec("factory::serv er=debug,warn");
        assert_eq!(c.filter, "warn");
        assert!(c.problems[0].contains("nor a module path"), "{c:?}");

        assert_eq!(check_spec("info/a/b").problems.len(), 1);
    }

    #[test]
    fn epochs_print_their_counter() {
        assert_eq!(epoch(65536).to_string(), "1");
        assert_eq!(epoch((3 << 16) | 2).to_string(), "3");
        assert_eq!(
            format!("{:#}", epoch((3 << 16) | 2)),
            "3 (begun by server 2)"
        );
        assert_eq!(epoch(0).to_string(), "none");
    }
}

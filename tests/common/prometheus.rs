//! A strict parser of the Prometheus text format (0.0.4) and a plain
//! HTTP GET, shared by the tests that scrape `/metrics` (the server's in
//! tests/metrics.rs, the balancer's in tests/balancer_obs.rs): every line a
//! HELP/TYPE comment or `name{labels} value`, every family declared before
//! its samples, counters ending in `_total`, histograms cumulative and
//! ending at their count.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample line.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed exposition.
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The value of `name` with exactly `labels` (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }

    pub fn sum_of(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `k="v",k2="v2"` (escapes \\, \" and \n in values).
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("bad labels {s:?}"))?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err(format!("bad escape in {s:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice in {s:?}"));
        }
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(format!("trailing comma in {s:?}")),
            None if rest.is_empty() => rest,
            None => return Err(format!("expected ',' in {s:?}")),
        };
    }
    Ok(labels)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (head, value) = match line.find('{') {
        Some(open) => {
            let close = line
                .rfind('}')
                .ok_or_else(|| format!("no '}}': {line:?}"))?;
            let rest = line[close + 1..]
                .strip_prefix(' ')
                .ok_or_else(|| format!("no space before the value: {line:?}"))?;
            ((&line[..open], Some(&line[open + 1..close])), rest)
        }
        None => {
            let (name, rest) = line
                .split_once(' ')
                .ok_or_else(|| format!("no value: {line:?}"))?;
            ((name, None), rest)
        }
    };
    let (name, labels) = head;
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut parts = value.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp: {line:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("extra fields: {line:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels: labels.map(parse_labels).transpose()?.unwrap_or_default(),
        value,
    })
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

/// Parses the Prometheus text format strictly.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let body = text
        .strip_suffix('\n')
        .ok_or("the text does not end with a newline")?;
    for line in body.split('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            match (keyword, name) {
                (Some("HELP"), Some(name)) if is_name(name, true) => {
                    let help = rest.ok_or(format!("empty HELP: {line:?}"))?;
                    if helps.insert(name.into(), help.into()).is_some() {
                        return Err(format!("HELP twice for {name}"));
                    }
                }
                (Some("TYPE"), Some(name)) if is_name(name, true) => {
                    let kind = rest.ok_or(format!("no type: {line:?}"))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("bad type: {line:?}"));
                    }
                    let of_it = |s: &Sample| {
                        s.name == name
                            || ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|x| s.name.strip_suffix(x) == Some(name))
                    };
                    if samples.iter().any(of_it) {
                        return Err(format!("TYPE after samples of {name}"));
                    }
                    if types.insert(name.into(), kind.into()).is_some() {
                        return Err(format!("TYPE twice for {name}"));
                    }
                }
                _ => return Err(format!("bad comment line {line:?}")),
            }
            continue;
        }
        let sample = parse_sample(line)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| format!("{} has no TYPE before it", sample.name))?;
        if !helps.contains_key(family) {
            return Err(format!("{family} has no HELP before its samples"));
        }
        if types[family] == "counter" && !family.ends_with("_total") {
            return Err(format!("counter {family} does not end in _total"));
        }
        samples.push(sample);
    }
    check_histograms(&types, &samples)?;
    Ok(Scrape { samples })
}

fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) -> Result<(), String> {
    for (name, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket_name = format!("{name}_bucket");
        let buckets: Vec<&Sample> = samples.iter().filter(|s| s.name == bucket_name).collect();
        let mut last = (f64::NEG_INFINITY, 0.0);
        for b in &buckets {
            let le = b
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or(format!("{name}: a bucket without le"))?;
            let le = parse_value(&le.1)?;
            if le <= last.0 || b.value < last.1 {
                return Err(format!("{name}: buckets not increasing at le={le}"));
            }
            last = (le, b.value);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}: no +Inf bucket"));
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{name}_count"))
            .ok_or(format!("{name}: no _count"))?;
        if count.value != last.1 {
            return Err(format!(
                "{name}: +Inf bucket {} != count {}",
                last.1, count.value
            ));
        }
        if !samples.iter().any(|s| s.name == format!("{name}_sum")) {
            return Err(format!("{name}: no _sum"));
        }
    }
    Ok(())
}

/// `GET /metrics` over plain HTTP/1.1; returns the parsed body.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let text = get(addr, "/metrics", 200);
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// GETs `path` and checks the status; returns the body.
pub fn get(addr: SocketAddr, path: &str, status: u16) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header");
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status_line}"
    );
    if status == 200 {
        assert!(
            head.lines().any(|l| l
                .to_ascii_lowercase()
                .starts_with("content-type: text/plain; version=0.0.4")),
            "{head}"
        );
    }
    body.to_string()
}

//! Just enough of etcd v3's JSON gateway (HTTP/1.1, keys and values in
//! base64) for `client kv load --etcd`: a put or a range request, and its
//! answer. Bounded: a header line, the headers and a body each have a
//! ceiling, and a connection that exceeds one fails.

use std::io::{self, BufRead, Read};

/// Longest header line, and most header lines, of an answer.
const LINE: u64 = 8192;
const HEADERS: usize = 64;

/// Longest answer body (a range answer carries one value, in base64).
const BODY: usize = 4 << 20;

/// Appends `POST /v3/kv/put` (with a value) or `/v3/kv/range` (without).
pub(super) fn request(out: &mut Vec<u8>, host: &str, key: &[u8], value: Option<&[u8]>) {
    let body = match value {
        Some(v) => format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key),
            base64(v)
        ),
        None => format!("{{\"key\":\"{}\"}}", base64(key)),
    };
    let path = if value.is_some() { "put" } else { "range" };
    out.extend_from_slice(
        format!(
            "POST /v3/kv/{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

/// Reads one answer: its body when the status is 200, else `Err` with the
/// status line (the connection stays usable either way).
///
/// # Errors
/// When the connection fails or the answer is not HTTP/1.1 as expected.
pub(super) fn response(reader: &mut impl BufRead) -> io::Result<Result<Vec<u8>, String>> {
    let status = line(reader)?;
    let mut length = None;
    let mut chunked = false;
    for _ in 0..HEADERS {
        let header = line(reader)?;
        if header.is_empty() {
            let body = if chunked {
                chunks(reader)?
            } else {
                let n = length.ok_or_else(|| bad("answer without Content-Length".into()))?;
                let mut body = vec![0; n];
                reader.read_exact(&mut body)?;
                body
            };
            return Ok(if status.split(' ').nth(1) == Some("200") {
                Ok(body)
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
            });
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            let n: usize = v.trim().parse().map_err(|_| bad(header.clone()))?;
            if n > BODY {
                return Err(bad(format!("answer of {n} bytes")));
            }
            length = Some(n);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    Err(bad(format!("more than {HEADERS} header lines")))
}

fn chunks(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = line(reader)?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(format!("chunk size {size:?}")))?;
        if body.len() + n > BODY {
            return Err(bad("answer too long".into()));
        }
        let start = body.len();
        body.resize(start + n, 0);
        reader.read_exact(&mut body[start..])?;
        line(reader)?;
        if n == 0 {
            return Ok(body);
        }
    }
}

fn line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    reader.take(LINE).read_until(b'\n', &mut buf)?;
    match buf.strip_suffix(b"\r\n") {
        Some(l) => Ok(String::from_utf8_lossy(l).into_owned()),
        None if buf.is_empty() => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
        None => Err(bad(format!(
            "HTTP line {:?}",
            String::from_utf8_lossy(&buf)
        ))),
    }
}

/// The value of the first key in a range answer; `None` when it has none.
pub(super) fn range_value(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let kvs = text.find("\"kvs\"")?;
    let after = &text[kvs..];
    let start = after.find("\"value\":\"")? + "\"value\":\"".len();
    let end = after[start..].find('"')?;
    Some(unbase64(&after[start..start + end]).unwrap_or_default())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn bad(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64(b"key0"), "a2V5MA==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        for n in 0..20u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&data)).unwrap(), data);
        }
    }

    #[test]
    fn answers_are_read() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n{\"kvs\":[{\"key\":\"YQ==\",\"value\":\"YWI=\"}]}";
        let body = response(&mut &text[..]).unwrap().unwrap();
        assert_eq!(range_value(&body), Some(b"ab".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n0\r\n\r\n";
        assert!(response(&mut &chunked[..])
            .unwrap()
            .unwrap_err()
            .contains("404"));
        assert_eq!(range_value(b"{\"header\":{}}"), None);
    }
}

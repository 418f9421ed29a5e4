//! A minimal HTTP/1.1 client for the tests: one request per connection,
//! every read bounded by `LIMIT`. Enough for the node's own servers and
//! for chromedriver's WebDriver endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::LIMIT;

/// An answer: the status code, the headers (names in lower case) and the
/// body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `method path` on `addr` (`HOST:PORT`), with a JSON body when given.
pub fn request(addr: &str, method: &str, path: &str, json: Option<&serde_json::Value>) -> Answer {
    request_as(addr, addr, method, path, json)
}

/// `GET path` on `addr` with the `Host` header `host` (as a browser sends
/// for a name that resolves to `addr`).
pub fn get_as(addr: &str, host: &str, path: &str) -> Answer {
    request_as(addr, host, "GET", path, None)
}

fn request_as(addr: &str, host: &str, method: &str, path: &str, json: Option<&serde_json::Value>) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let kind = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{kind}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read to the end of the body as its headers give it: a server may keep
    // the connection open whatever the request asked.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = s.read(&mut buf).expect("read the answer");
        assert!(n > 0, "the connection closed before the headers ended");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let done = |raw: &[u8]| match length {
        Some(n) => raw.len() >= split + 4 + n,
        None if head.contains("transfer-encoding: chunked") => raw.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    while !done(&raw) {
        let n = s.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET path` on `addr`.
pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, None)
}

/// The body of a chunked transfer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            return out;
        };
        let start = end + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

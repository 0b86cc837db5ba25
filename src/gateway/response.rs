//! The script's answer (RFC 3875 §6): header block → status, headers and the kind of
//! response. Shared by CGI and FastCGI; pure.

use std::fmt;

use crate::http::head::{is_token, parse_decimal, trim};

/// Headers the server owns on the client connection; a script's copies are dropped.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "trailer",
    "upgrade",
    "te",
    "proxy-connection",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Document,
    /// `Location: /path` without Status: the server answers for that path itself.
    LocalRedirect(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiResponse {
    pub status: u16,
    /// The script's own reason phrase, relayed as given.
    pub reason: Option<String>,
    /// Headers to send on, in the script's order (Status and hop-by-hop removed).
    pub headers: Vec<(String, Vec<u8>)>,
    pub content_length: Option<u64>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The script wrote nothing at all.
    NoOutput,
    /// Output ended before the blank line that ends the headers.
    NoHeaderEnd,
    /// Output ended this many bytes short of the script's Content-Length.
    ShortBody(u64),
    NoHeaders,
    TooLarge,
    BadLine(String),
    BadStatus(String),
    Duplicate(&'static str),
    BadContentLength,
    BadLocation,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::NoOutput => f.write_str("script wrote no output"),
            ResponseError::NoHeaderEnd => f.write_str("output ended before the end of headers"),
            ResponseError::ShortBody(n) => {
                write!(f, "output ended {n} bytes short of Content-Length")
            }
            ResponseError::NoHeaders => f.write_str("output has no header lines"),
            ResponseError::TooLarge => f.write_str("header block too large"),
            ResponseError::BadLine(l) => write!(f, "malformed header line {l:?}"),
            ResponseError::BadStatus(s) => write!(f, "invalid Status {s:?}"),
            ResponseError::Duplicate(name) => write!(f, "{name} given more than once"),
            ResponseError::BadContentLength => f.write_str("invalid Content-Length"),
            ResponseError::BadLocation => f.write_str("invalid Location"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Parses the header block at the start of `buf`. `Ok(None)`: incomplete so far.
/// On success also returns where the body starts.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(CgiResponse, usize)>, ResponseError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let body_start = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > max {
                Err(ResponseError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if pos > max {
            return Err(ResponseError::TooLarge);
        }
        if line.is_empty() {
            break pos;
        }
        lines.push(line);
    };
    if lines.is_empty() {
        return Err(ResponseError::NoHeaders);
    }
    build(&lines).map(|r| Some((r, body_start)))
}

fn build(lines: &[&[u8]]) -> Result<CgiResponse, ResponseError> {
    let mut status = None;
    let mut location: Option<String> = None;
    let mut content_type = false;
    let mut content_length = None;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = split_field(line)?;
        if value.is_empty() {
            // A script printing `Location:` meant a redirect and built it wrong (an
            // unset variable); answering its empty 200 would hide the bug.
            if name.eq_ignore_ascii_case("location") {
                return Err(ResponseError::BadLocation);
            }
            continue; // RFC 3875 §6.3: any other empty field counts as absent.
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "status" => {
                if status.replace(parse_status(value)?).is_some() {
                    return Err(ResponseError::Duplicate("Status"));
                }
                continue;
            }
            "location" => {
                let text = std::str::from_utf8(value).map_err(|_| ResponseError::BadLocation)?;
                if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(ResponseError::BadLocation);
                }
                if location.replace(text.to_owned()).is_some() {
                    return Err(ResponseError::Duplicate("Location"));
                }
            }
            "content-type" => {
                if content_type {
                    return Err(ResponseError::Duplicate("Content-Type"));
                }
                content_type = true;
            }
            "content-length" => {
                let n = parse_decimal(value).ok_or(ResponseError::BadContentLength)?;
                if content_length.replace(n).is_some_and(|m| m != n) {
                    return Err(ResponseError::BadContentLength);
                }
                continue; // framing is ours; we re-emit it from `content_length`
            }
            _ if HOP_BY_HOP.contains(&lower.as_str()) => continue,
            _ => {}
        }
        headers.push((name.to_owned(), value.to_vec()));
    }
    let local = location
        .as_deref()
        .filter(|l| l.starts_with('/') && !l.starts_with("//"));
    let (kind, (status, reason)) = match (status, local, &location) {
        (None, Some(path), _) => (Kind::LocalRedirect(path.to_owned()), (200, None)),
        // RFC 3875 §6.2.3: a client redirect without its own Status is a 302 Found.
        (None, None, Some(_)) => (Kind::Document, (302, None)),
        (status, _, _) => (Kind::Document, status.unwrap_or((200, None))),
    };
    Ok(CgiResponse {
        status,
        reason,
        headers,
        content_length,
        kind,
    })
}

fn split_field(line: &[u8]) -> Result<(&str, &[u8]), ResponseError> {
    let bad = || ResponseError::BadLine(String::from_utf8_lossy(line).into_owned());
    let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(bad());
    }
    let value = trim(&line[colon + 1..]);
    // Bare CR or other controls would let a script split or forge headers downstream.
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(bad());
    }
    let name = std::str::from_utf8(name).map_err(|_| bad())?;
    Ok((name, value))
}

fn parse_status(value: &[u8]) -> Result<(u16, Option<String>), ResponseError> {
    let bad = || ResponseError::BadStatus(String::from_utf8_lossy(value).into_owned());
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (code, reason) = match text.split_once([' ', '\t']) {
        Some((c, r)) => (c, r.trim()),
        None => (text, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = code.parse().map_err(|_| bad())?;
    // 1xx would need a second, final response the script cannot give through CGI.
    if !(200..=599).contains(&code) {
        return Err(bad());
    }
    let reason = (!reason.is_empty()).then(|| reason.to_owned());
    Ok((code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (CgiResponse, usize) {
        parse(s.as_bytes(), 65536).unwrap().unwrap()
    }

    fn err(s: &str) -> ResponseError {
        parse(s.as_bytes(), 65536).unwrap_err()
    }

    #[test]
    fn document_with_lf_and_crlf() {
        let (r, n) = ok("Content-type: text/plain\nX-A:  b \r\n\r\nbody");
        assert_eq!(r.status, 200);
        assert_eq!(r.kind, Kind::Document);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers[1], ("X-A".to_owned(), b"b".to_vec()));
        assert_eq!(n, 37);
    }

    #[test]
    fn incomplete_and_too_large() {
        assert_eq!(parse(b"Content-Type: text/plain\n", 100), Ok(None));
        assert_eq!(parse(&[b'a'; 200], 100), Err(ResponseError::TooLarge));
    }

    #[test]
    fn status_with_reason() {
        let (r, _) = ok("Status: 299 Custom Thing\nContent-Type: text/plain\n\n");
        assert_eq!((r.status, r.reason.as_deref()), (299, Some("Custom Thing")));
        let (r, _) = ok("Status: 404\n\n");
        assert_eq!((r.status, r.reason), (404, None));
    }

    #[test]
    fn bad_status() {
        for s in [
            "Status: 20\n\n",
            "Status: abc\n\n",
            "Status: 099 x\n\n",
            "Status: 1000\n\n",
        ] {
            assert!(matches!(err(s), ResponseError::BadStatus(_)), "{s}");
        }
        assert!(matches!(
            err("Status: 100 Continue\n\n"),
            ResponseError::BadStatus(_)
        ));
    }

    #[test]
    fn malformed_lines() {
        assert!(matches!(
            err("no colon here\n\n"),
            ResponseError::BadLine(_)
        ));
        assert!(matches!(err("Bad Name: x\n\n"), ResponseError::BadLine(_)));
        assert!(matches!(err(" X: folded\n\n"), ResponseError::BadLine(_)));
        assert!(matches!(err("X: a\rb\n\n"), ResponseError::BadLine(_)));
        assert_eq!(err("\nbody"), ResponseError::NoHeaders);
    }

    #[test]
    fn redirects() {
        let (r, _) = ok("Location: /cgi-bin/env?x=1\n\n");
        assert_eq!(r.kind, Kind::LocalRedirect("/cgi-bin/env?x=1".into()));
        let (r, _) = ok("Location: http://example.org/\n\n");
        assert_eq!((r.status, &r.kind), (302, &Kind::Document));
        let (r, _) = ok("Status: 301 Moved\nLocation: http://example.org/\n\n");
        assert_eq!(r.status, 301);
        let (r, _) = ok("Location: //evil.example/\n\n");
        assert_eq!(r.status, 302);
        assert_eq!(err("Location: /a b\n\n"), ResponseError::BadLocation);
        assert_eq!(err("Location:\n\n"), ResponseError::BadLocation);
        assert_eq!(
            err("Content-Type: text/html\nlocation:   \n\n"),
            ResponseError::BadLocation
        );
    }

    #[test]
    fn duplicates_and_hop_by_hop() {
        assert_eq!(
            err("Status: 200\nStatus: 201\n\n"),
            ResponseError::Duplicate("Status")
        );
        let ct = "Content-Type: a/b\ncontent-type: c/d\n\n";
        assert_eq!(err(ct), ResponseError::Duplicate("Content-Type"));
        let (r, _) = ok("Content-Type: a/b\nConnection: close\nTransfer-Encoding: chunked\n\n");
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn content_length_is_taken_out() {
        let (r, _) = ok("Content-Type: a/b\nContent-Length: 12\n\n");
        assert_eq!(r.content_length, Some(12));
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            err("Content-Length: x\n\n"),
            ResponseError::BadContentLength
        );
    }

    #[test]
    fn empty_values_are_absent_and_no_type_is_kept_absent() {
        let (r, _) = ok("Status:\nX-Only: 1\n\nbody");
        assert_eq!(r.status, 200);
        assert!(r.headers.iter().all(|(n, _)| n != "Content-Type"));
    }
}

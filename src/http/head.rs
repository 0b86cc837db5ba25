//! Request head: bytes → [`Request`] with httparse, plus the HTTP/1.1 rules httparse
//! leaves to us (Host, body framing, Expect, version) and the size limits.

use std::fmt;

/// Most header lines a request may carry; more is answered 431.
pub const MAX_HEADERS: usize = 100;
/// Longest method we take (the longest registered one, `UPDATEREDIRECTREF`, has 17
/// bytes); a longer one is answered 501 rather than carried into logs and scripts.
pub const MAX_METHOD: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request-target exactly as sent.
    pub target: String,
    pub version: Version,
    /// Names as sent; values with surrounding whitespace trimmed (may hold obs-text).
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: Framing,
    pub expect_continue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head outgrew `--max-header` before it ended.
    TooLarge,
    TooManyHeaders,
    Malformed(&'static str),
    VersionNotSupported,
    MissingHost,
    BadHost,
    /// An absolute-form target whose authority is not a valid host.
    BadTargetHost,
    /// Content-Length and Transfer-Encoding together, or disagreeing lengths.
    AmbiguousFraming,
    BadContentLength,
    /// A Transfer-Encoding that leaves the body's end unknowable (says why).
    BadTransferEncoding(&'static str),
    UnsupportedTransferCoding,
    /// A method longer than [`MAX_METHOD`].
    MethodTooLong,
    ExpectationFailed,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("request header block too large"),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header lines"),
            HeadError::Malformed(what) => write!(f, "malformed request: {what}"),
            HeadError::VersionNotSupported => f.write_str("HTTP version not supported"),
            HeadError::MissingHost => f.write_str("HTTP/1.1 request without Host"),
            HeadError::BadHost => f.write_str("invalid Host header"),
            HeadError::BadTargetHost => f.write_str("invalid host in the request-target"),
            HeadError::AmbiguousFraming => {
                f.write_str("conflicting Content-Length / Transfer-Encoding")
            }
            HeadError::BadContentLength => f.write_str("invalid Content-Length"),
            HeadError::BadTransferEncoding(why) => write!(f, "bad Transfer-Encoding: {why}"),
            HeadError::MethodTooLong => write!(f, "method longer than {MAX_METHOD} bytes"),
            HeadError::UnsupportedTransferCoding => f.write_str("unsupported Transfer-Encoding"),
            HeadError::ExpectationFailed => f.write_str("unsupported Expect"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses one request head from the start of `buf`.
///
/// `Ok(None)` means "need more bytes"; `Ok(Some((req, n)))` means the head took the
/// first `n` bytes and the body (if any) starts at `n`.
pub fn parse(buf: &[u8], max_header: usize) -> Result<Option<(Request, usize)>, HeadError> {
    match parse_raw(buf) {
        Err(httparse::Error::HeaderName) if has_obs_fold(buf) => {
            // RFC 9112 §5.2 lets a server replace obs-fold with spaces; doing it in place
            // keeps every offset valid.
            let unfolded = unfold(buf);
            finish(parse_raw(&unfolded), &unfolded, max_header)
        }
        raw => finish(raw, buf, max_header),
    }
}

type Raw = Result<Option<(RawRequest, usize)>, httparse::Error>;

struct RawRequest {
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
}

fn parse_raw(buf: &[u8]) -> Raw {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(buf)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => {
            let headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), trim(h.value).to_vec()))
                .collect();
            Ok(Some((
                RawRequest {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    minor: req.version.unwrap_or(1),
                    headers,
                },
                n,
            )))
        }
    }
}

fn finish(raw: Raw, buf: &[u8], max_header: usize) -> Result<Option<(Request, usize)>, HeadError> {
    match raw {
        Ok(None) if buf.len() > max_header => Err(HeadError::TooLarge),
        Ok(None) => Ok(None),
        Ok(Some((_, n))) if n > max_header => Err(HeadError::TooLarge),
        Ok(Some((raw, n))) => validate(raw).map(|req| Some((req, n))),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) if looks_like_other_version(buf) => {
            Err(HeadError::VersionNotSupported)
        }
        Err(e) => Err(HeadError::Malformed(parse_error_text(e))),
    }
}

fn parse_error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine | httparse::Error::Status => "invalid line ending",
        httparse::Error::Token => "invalid method or request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

/// `METHOD SP target SP HTTP/d.d` with a version httparse does not speak → 505, not 400.
fn looks_like_other_version(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = &buf[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let v = version;
    !method.is_empty()
        && !target.is_empty()
        && v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

fn validate(raw: RawRequest) -> Result<Request, HeadError> {
    let version = if raw.minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if raw.method.len() > MAX_METHOD {
        return Err(HeadError::MethodTooLong);
    }
    check_target(&raw.method, &raw.target)?;
    let mut req = Request {
        method: raw.method,
        target: raw.target,
        version,
        headers: raw.headers,
        framing: Framing::None,
        expect_continue: false,
    };
    check_host(&req)?;
    if let Some(authority) = absolute_form_authority(&req.target) {
        // RFC 9112 §3.2.2: the target's authority is the host, whatever Host said; it
        // replaces Host so that SERVER_NAME and HTTP_HOST cannot disagree. An "http"
        // URI with an empty host is invalid (RFC 9110 §4.2.1), userinfo is refused.
        if authority.is_empty() || !valid_host(authority.as_bytes()) {
            return Err(HeadError::BadTargetHost);
        }
        let authority = authority.as_bytes().to_vec();
        set_host(&mut req.headers, authority);
    }
    req.framing = framing(&req)?;
    req.expect_continue = expectation(&req)?;
    Ok(req)
}

fn check_target(method: &str, target: &str) -> Result<(), HeadError> {
    let ok = target.starts_with('/')
        || (target == "*" && method == "OPTIONS")
        || absolute_form_path(target).is_some()
        || (method == "CONNECT" && !target.is_empty());
    if ok {
        Ok(())
    } else {
        Err(HeadError::Malformed("invalid request-target"))
    }
}

/// `http://host/path?q` → `/path?q` (`/` when the path is empty).
fn absolute_form_path(target: &str) -> Option<&str> {
    let rest = absolute_form_rest(target)?;
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Some(&rest[i..]),
        _ => Some("/"),
    }
}

/// `http://host:81/path` → `host:81`.
fn absolute_form_authority(target: &str) -> Option<&str> {
    let rest = absolute_form_rest(target)?;
    Some(&rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
}

fn absolute_form_rest(target: &str) -> Option<&str> {
    strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
}

/// Puts `host` in place of every Host line (at the first one's place, or at the end).
fn set_host(headers: &mut Vec<(String, Vec<u8>)>, host: Vec<u8>) {
    let first = headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("host"));
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
    let at = first.unwrap_or(headers.len());
    headers.insert(at, ("Host".to_owned(), host));
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn check_host(req: &Request) -> Result<(), HeadError> {
    let mut hosts = req.headers_named("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version == Version::Http11 => Err(HeadError::MissingHost),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(HeadError::BadHost),
        (Some(h), None) if valid_host(h) => Ok(()),
        (Some(_), None) => Err(HeadError::BadHost),
    }
}

/// RFC 3986 host [":" port]: reg-name characters or an IP-literal in brackets.
pub fn valid_host(h: &[u8]) -> bool {
    if let Some(rest) = h.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal_ok = rest[..end]
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return literal_ok && valid_port(&rest[end + 1..]);
    }
    let (name, port) = match h.iter().position(|&b| b == b':') {
        Some(i) => (&h[..i], &h[i..]),
        None => (h, &h[h.len()..]),
    };
    let name_ok = name
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    name_ok && valid_port(port)
}

fn valid_port(p: &[u8]) -> bool {
    match p.strip_prefix(b":") {
        None => p.is_empty(),
        Some(digits) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
    }
}

fn framing(req: &Request) -> Result<Framing, HeadError> {
    let has_te = req.header("transfer-encoding").is_some();
    let mut length = None;
    for value in req.headers_named("content-length") {
        // Repeated or comma-listed lengths are tolerated only when they agree (RFC 9110 §8.6).
        for part in value.split(|&b| b == b',') {
            let n = parse_decimal(trim(part)).ok_or(HeadError::BadContentLength)?;
            match length {
                Some(m) if m != n => return Err(HeadError::AmbiguousFraming),
                _ => length = Some(n),
            }
        }
    }
    match (has_te, length) {
        (true, Some(_)) => Err(HeadError::AmbiguousFraming),
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        (true, None) if req.version == Version::Http10 => {
            Err(HeadError::BadTransferEncoding("not defined for HTTP/1.0"))
        }
        (true, None) => {
            let codings: Vec<&[u8]> = req
                .headers_named("transfer-encoding")
                .flat_map(|v| v.split(|&b| b == b','))
                .map(trim)
                .filter(|c| !c.is_empty())
                .collect();
            match codings.as_slice() {
                [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
                [.., last] if !last.eq_ignore_ascii_case(b"chunked") => {
                    // RFC 9112 §6.3: a request whose final coding is not chunked has no
                    // knowable end: 400, then close.
                    Err(HeadError::BadTransferEncoding(
                        "the last coding must be chunked (unknown or misplaced coding)",
                    ))
                }
                _ => Err(HeadError::UnsupportedTransferCoding),
            }
        }
        (false, Some(n)) => Ok(Framing::Length(n)),
        (false, None) => Ok(Framing::None),
    }
}

fn expectation(req: &Request) -> Result<bool, HeadError> {
    let Some(value) = req.header("expect") else {
        return Ok(false);
    };
    if req.version == Version::Http10 {
        // RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored.
        return Ok(false);
    }
    if value.eq_ignore_ascii_case(b"100-continue") {
        Ok(true)
    } else {
        Err(HeadError::ExpectationFailed)
    }
}

/// A `tchar` of RFC 9110 §5.6.2: the bytes a token (a header name, a method, a
/// chunk extension's name) is made of.
pub fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn head_end(buf: &[u8]) -> usize {
    let crlf = find(buf, b"\r\n\r\n").map(|i| i + 4);
    let lf = find(buf, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(buf.len()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn has_obs_fold(buf: &[u8]) -> bool {
    let head = &buf[..head_end(buf)];
    head.windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

fn unfold(buf: &[u8]) -> Vec<u8> {
    let end = head_end(buf);
    let mut out = buf.to_vec();
    let mut i = 0;
    while i + 1 < end {
        if out[i] == b'\n' && (out[i + 1] == b' ' || out[i + 1] == b'\t') {
            out[i] = b' ';
            if i > 0 && out[i - 1] == b'\r' {
                out[i - 1] = b' ';
            }
        }
        i += 1;
    }
    out
}

impl Request {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &'static str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    pub fn headers_named<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Does any `Connection` header list this token?
    pub fn connection_has(&self, token: &'static str) -> bool {
        self.headers_named("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked.
    pub fn wants_keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }

    /// Path and query of the target, whichever form it was sent in.
    pub fn path_and_query(&self) -> (&str, Option<&str>) {
        let pq = absolute_form_path(&self.target).unwrap_or(&self.target);
        match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        }
    }

    /// The authority the client addressed. For an absolute-form target [`parse`] has
    /// already put the target's authority in Host, so this is always Host.
    pub fn host(&self) -> Option<&[u8]> {
        self.header("host")
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    pub fn has_body(&self) -> bool {
        self.framing != Framing::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (Request, usize) {
        parse(s.as_bytes(), 65536).unwrap().unwrap()
    }

    fn err(s: &str) -> HeadError {
        parse(s.as_bytes(), 65536).unwrap_err()
    }

    #[test]
    fn simple_get() {
        let (r, n) = ok("GET /cgi-bin/env?a=1 HTTP/1.1\r\nHost: x\r\n\r\nrest");
        assert_eq!(n, 42);
        assert_eq!(r.method, "GET");
        assert_eq!(r.path_and_query(), ("/cgi-bin/env", Some("a=1")));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.framing, Framing::None);
        assert!(r.wants_keep_alive());
    }

    #[test]
    fn partial_then_too_large() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n", 100), Ok(None));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(200));
        assert_eq!(parse(long.as_bytes(), 100), Err(HeadError::TooLarge));
        let done = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200));
        assert_eq!(parse(done.as_bytes(), 100), Err(HeadError::TooLarge));
    }

    #[test]
    fn lf_only_and_leading_blank_lines() {
        let (r, _) = ok("\r\n\nGET / HTTP/1.0\nA: b\n\n");
        assert_eq!(r.header("a"), Some(&b"b"[..]));
        assert!(!r.wants_keep_alive());
    }

    #[test]
    fn too_many_headers() {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS {
            s += &format!("X-{i}: v\r\n");
        }
        s += "\r\n";
        assert_eq!(err(&s), HeadError::TooManyHeaders);
    }

    #[test]
    fn versions() {
        assert_eq!(
            err("GET / HTTP/2.0\r\n\r\n"),
            HeadError::VersionNotSupported
        );
        assert_eq!(
            err("GET / HTTP/1.2\r\nHost: x\r\n\r\n"),
            HeadError::VersionNotSupported
        );
        assert!(matches!(
            err("GET / FOO/1.1\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(err("GET /\r\n\r\n"), HeadError::Malformed(_)));
    }

    #[test]
    fn host_rules() {
        assert_eq!(err("GET / HTTP/1.1\r\n\r\n"), HeadError::MissingHost);
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            HeadError::BadHost
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HeadError::BadHost
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n"),
            HeadError::BadHost
        );
        ok("GET / HTTP/1.0\r\n\r\n");
        ok("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
        ok("GET / HTTP/1.1\r\nHost:\r\n\r\n");
        let (r, _) = ok("GET http://example.org:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(r.host(), Some(&b"example.org:81"[..]));
        assert_eq!(r.path_and_query(), ("/p", Some("q")));
    }

    #[test]
    fn absolute_form_host_is_validated_and_replaces_host() {
        let (r, _) =
            ok("GET http://Example.org:81/p HTTP/1.1\r\nA: 1\r\nHost: other\r\nHost2: z\r\n\r\n");
        let hosts: Vec<&[u8]> = r.headers_named("host").collect();
        assert_eq!(hosts, [&b"Example.org:81"[..]]);
        assert_eq!(r.headers[1].0, "Host", "kept where Host was");
        let (r, _) = ok("GET https://[::1]:8/ HTTP/1.0\r\n\r\n");
        assert_eq!(r.host(), Some(&b"[::1]:8"[..]));
        assert_eq!(r.path_and_query(), ("/", None));
        for bad in [
            "GET http://x\"onmouseover=\"alert(1)/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://user@host/ HTTP/1.1\r\nHost: host\r\n\r\n",
            "GET http:///p HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(err(bad), HeadError::BadTargetHost, "{bad}");
        }
        // Host is still required and checked (RFC 9112 §3.2).
        assert_eq!(
            err("GET http://h/ HTTP/1.1\r\n\r\n"),
            HeadError::MissingHost
        );
    }

    #[test]
    fn long_methods_are_not_implemented() {
        let m = "M".repeat(MAX_METHOD);
        ok(&format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n"));
        let m = "M".repeat(MAX_METHOD + 1);
        assert_eq!(
            err(&format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n")),
            HeadError::MethodTooLong
        );
    }

    #[test]
    fn framing_rules() {
        let (r, _) = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Length(5));
        let (r, _) = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Length(5));
        let (r, _) = ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(r.framing, Framing::Chunked);
        let both =
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(err(both), HeadError::AmbiguousFraming);
        let two = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(err(two), HeadError::AmbiguousFraming);
        let bad = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(err(bad), HeadError::BadContentLength);
        let plus = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n";
        assert_eq!(err(plus), HeadError::BadContentLength);
        let gz = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(err(gz), HeadError::UnsupportedTransferCoding);
        let last = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(matches!(err(last), HeadError::BadTransferEncoding(_)));
        let unknown = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n";
        let e = err(unknown);
        assert!(matches!(e, HeadError::BadTransferEncoding(_)));
        assert!(!e.to_string().contains("Content-Length"), "{e}");
        let old = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(err(old), HeadError::BadTransferEncoding(_)));
    }

    #[test]
    fn expect() {
        let (r, _) = ok("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n");
        assert!(r.expect_continue);
        let e = "POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n";
        assert_eq!(err(e), HeadError::ExpectationFailed);
        let (r, _) = ok("POST / HTTP/1.0\r\nExpect: teapot\r\n\r\n");
        assert!(!r.expect_continue);
    }

    #[test]
    fn obs_fold_is_unfolded() {
        let s = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  b\r\n\r\nbody";
        let (r, n) = ok(s);
        assert_eq!(&s[n..], "body");
        let v = String::from_utf8(r.header("x-long").unwrap().to_vec()).unwrap();
        assert_eq!(v.split_whitespace().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn targets() {
        assert!(matches!(
            err("GET foo HTTP/1.1\r\nHost: x\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(
            err("GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
            HeadError::Malformed(_)
        ));
    }

    #[test]
    fn connection_tokens() {
        let (r, _) = ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(r.wants_keep_alive());
        let (r, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n");
        assert!(!r.wants_keep_alive());
    }
}

//! Response heads and framing: status line, our own headers, the framing choice
//! (Content-Length, chunked or close-delimited) and short error pages.

use std::io::Write;

use super::head::{Request, Version};

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match code / 100 {
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body may follow (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// The body ends when we close the connection (HTTP/1.0 without a length).
    Close,
}

impl BodyFraming {
    /// Picks the framing for a response to `req`.
    pub fn choose(req: &Request, status: u16, length: Option<u64>) -> Self {
        Self::pick(req.version, req.is_head(), status, length)
    }

    /// Picks the framing for an answer of `status` to a request of `version` (a HEAD
    /// request when `head`); `length` is the body's, when known.
    pub fn pick(version: Version, head: bool, status: u16, length: Option<u64>) -> Self {
        let bodyless = head || status == 204 || status == 304 || status < 200;
        match length {
            _ if bodyless => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
            None if version == Version::Http11 => BodyFraming::Chunked,
            None => BodyFraming::Close,
        }
    }

    pub fn keeps_connection(self) -> bool {
        self != BodyFraming::Close
    }
}

/// Everything needed to write a status line and header block.
pub struct Head<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: &'a [(String, Vec<u8>)],
    pub framing: BodyFraming,
    /// Content-Length to announce for a bodiless answer (HEAD), when known.
    pub announce_length: Option<u64>,
    pub keep_alive: bool,
    pub version: Version,
}

pub fn server_header() -> String {
    format!("cgi-testbed/{}", env!("CARGO_PKG_VERSION"))
}

/// The Date header's value, formatted once a second per thread (as nginx caches its
/// time strings) rather than for every answer.
mod date {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// `Sun, 06 Nov 1994 08:49:37 GMT`: IMF-fixdate is always this long.
    const LEN: usize = 29;

    thread_local! {
        static NOW: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
    }

    pub fn now(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (at, mut text) = NOW.get();
        if at != secs {
            let fresh = httpdate::fmt_http_date(now);
            let Some(bytes) = fresh.as_bytes().first_chunk::<LEN>() else {
                out.extend_from_slice(fresh.as_bytes());
                return;
            };
            text = *bytes;
            NOW.set((secs, text));
        }
        out.extend_from_slice(&text);
    }
}

pub fn write_head(out: &mut Vec<u8>, head: &Head<'_>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", head.status, head.reason);
    let has = |name: &str| {
        head.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("server") {
        out.extend_from_slice(
            concat!("Server: cgi-testbed/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
    }
    if !has("date") {
        out.extend_from_slice(b"Date: ");
        date::now(out);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in head.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match (head.framing, head.announce_length) {
        (BodyFraming::Length(n), _) | (BodyFraming::Empty, Some(n)) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        (BodyFraming::Chunked, _) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if !head.keep_alive || head.framing == BodyFraming::Close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if head.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete short text response for an error status.
pub fn error_page(
    status: u16,
    detail: Option<&str>,
    keep_alive: bool,
    version: Version,
) -> Vec<u8> {
    error_page_with(status, detail, Vec::new(), keep_alive, version)
}

/// [`error_page`] with headers the error needs (`Allow`, `Content-Range`); an `Allow`
/// given here replaces the default one of a 405.
pub fn error_page_with(
    status: u16,
    detail: Option<&str>,
    extra: Vec<(String, Vec<u8>)>,
    keep_alive: bool,
    version: Version,
) -> Vec<u8> {
    let (headers, body) = error_parts(status, detail, extra);
    let mut out = Vec::with_capacity(256 + body.len());
    write_head(
        &mut out,
        &Head {
            status,
            reason: reason(status),
            headers: &headers,
            framing: BodyFraming::Length(body.len() as u64),
            announce_length: None,
            keep_alive,
            version,
        },
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// The headers and short text body of an error answer.
pub fn error_parts(
    status: u16,
    detail: Option<&str>,
    extra: Vec<(String, Vec<u8>)>,
) -> (Vec<(String, Vec<u8>)>, String) {
    let mut body = format!("{status} {}\n", reason(status));
    if let Some(d) = detail {
        body.push_str(d);
        body.push('\n');
    }
    let mut headers = vec![(
        "Content-Type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )];
    let has_allow = extra.iter().any(|(n, _)| n.eq_ignore_ascii_case("allow"));
    headers.extend(extra);
    if status == 405 && !has_allow {
        headers.push((
            "Allow".to_owned(),
            b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS".to_vec(),
        ));
    }
    (headers, body)
}

pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Frames a response body as its head announced: chunked encoding, or never more
/// than the announced length, or nothing at all for a bodiless answer.
#[derive(Debug, Clone)]
pub struct Framer {
    framing: BodyFraming,
    /// For a length-delimited body: bytes still owed.
    left: u64,
    /// Body bytes that went out (not counting framing).
    pub body_bytes: u64,
    /// Bytes given beyond the announced length, and dropped.
    pub dropped: u64,
}

/// One piece of body, framed: `prefix`, then `data`, then `suffix`.
pub struct Framed<'d> {
    prefix: [u8; 18],
    prefix_len: usize,
    pub data: &'d [u8],
    pub suffix: &'static [u8],
}

impl Framed<'_> {
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len]
    }
}

/// The body ended before the length its head announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortBody(pub u64);

impl Framer {
    pub fn new(framing: BodyFraming) -> Framer {
        Framer {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            body_bytes: 0,
            dropped: 0,
        }
    }

    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Frames `data`; what the head said cannot be sent is dropped (and counted).
    pub fn frame<'d>(&mut self, data: &'d [u8]) -> Framed<'d> {
        let mut out = Framed {
            prefix: [0; 18],
            prefix_len: 0,
            data: &[],
            suffix: b"",
        };
        match self.framing {
            _ if data.is_empty() => {}
            BodyFraming::Empty => self.dropped += data.len() as u64,
            BodyFraming::Length(_) => {
                let n = data
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= n as u64;
                self.dropped += (data.len() - n) as u64;
                out.data = &data[..n];
            }
            BodyFraming::Chunked => {
                let mut prefix = std::io::Cursor::new(&mut out.prefix[..]);
                let _ =
                    std::io::Write::write_fmt(&mut prefix, format_args!("{:x}\r\n", data.len()));
                out.prefix_len = prefix.position() as usize;
                out.data = data;
                out.suffix = b"\r\n";
            }
            BodyFraming::Close => out.data = data,
        }
        self.body_bytes += out.data.len() as u64;
        out
    }

    /// `n` body bytes went out by other means (sendfile).
    pub fn count_sent(&mut self, n: u64) {
        if let BodyFraming::Length(_) = self.framing {
            self.left = self.left.saturating_sub(n);
        }
        self.body_bytes += n;
    }

    /// What ends the body on the wire (the last chunk), or how much was missing.
    pub fn finish(&self) -> Result<&'static [u8], ShortBody> {
        match self.framing {
            BodyFraming::Chunked => Ok(LAST_CHUNK),
            BodyFraming::Length(_) if self.left > 0 => Err(ShortBody(self.left)),
            _ => Ok(b""),
        }
    }

    /// Has the client been given all the body it will wait for?
    pub fn complete(&self) -> bool {
        match self.framing {
            BodyFraming::Empty => true,
            BodyFraming::Length(_) => self.left == 0,
            BodyFraming::Chunked | BodyFraming::Close => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head;

    fn req(s: &str) -> Request {
        head::parse(s.as_bytes(), 4096).unwrap().unwrap().0
    }

    #[test]
    fn framing_choice() {
        let get11 = req("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let get10 = req("GET / HTTP/1.0\r\n\r\n");
        let head11 = req("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            BodyFraming::choose(&get11, 200, Some(5)),
            BodyFraming::Length(5)
        );
        assert_eq!(BodyFraming::choose(&get11, 200, None), BodyFraming::Chunked);
        assert_eq!(BodyFraming::choose(&get10, 200, None), BodyFraming::Close);
        assert_eq!(
            BodyFraming::choose(&head11, 200, Some(5)),
            BodyFraming::Empty
        );
        assert_eq!(BodyFraming::choose(&get11, 304, None), BodyFraming::Empty);
    }

    #[test]
    fn head_text() {
        let mut out = Vec::new();
        let headers = vec![("Content-Type".to_owned(), b"text/plain".to_vec())];
        write_head(
            &mut out,
            &Head {
                status: 299,
                reason: "Custom Reason",
                headers: &headers,
                framing: BodyFraming::Chunked,
                announce_length: None,
                keep_alive: true,
                version: Version::Http11,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 299 Custom Reason\r\nServer: cgi-testbed/"));
        assert!(text.contains("\r\nContent-Type: text/plain\r\n"));
        assert!(text.contains("\r\nTransfer-Encoding: chunked\r\n"));
        assert!(!text.contains("Connection"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    fn framed(f: &mut Framer, data: &[u8]) -> Vec<u8> {
        let p = f.frame(data);
        [p.prefix(), p.data, p.suffix].concat()
    }

    #[test]
    fn framing_bodies() {
        let mut chunked = Framer::new(BodyFraming::Chunked);
        assert_eq!(framed(&mut chunked, b"hello"), b"5\r\nhello\r\n");
        assert_eq!(framed(&mut chunked, &[b'x'; 300])[..5], *b"12c\r\n");
        assert_eq!(framed(&mut chunked, b""), b"");
        assert_eq!(chunked.finish(), Ok(LAST_CHUNK));
        assert_eq!(chunked.body_bytes, 305);

        let mut length = Framer::new(BodyFraming::Length(4));
        assert_eq!(framed(&mut length, b"abc"), b"abc");
        assert!(!length.complete());
        assert_eq!(length.finish(), Err(ShortBody(1)));
        assert_eq!(framed(&mut length, b"defg"), b"d");
        assert_eq!(length.dropped, 3);
        assert!(length.complete());
        assert_eq!(length.finish(), Ok(&b""[..]));

        let mut empty = Framer::new(BodyFraming::Empty);
        assert_eq!(framed(&mut empty, b"body of a HEAD"), b"");
        assert!(empty.complete());
    }

    #[test]
    fn error_pages() {
        let page = String::from_utf8(error_page(404, None, false, Version::Http11)).unwrap();
        assert!(page.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(page.contains("Content-Length: 14\r\n"));
        assert!(page.contains("Connection: close\r\n"));
        assert!(page.ends_with("\r\n\r\n404 Not Found\n"));
    }
}

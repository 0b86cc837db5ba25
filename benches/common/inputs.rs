//! Inputs of the `parse` bench, and the exact operations it times: a browser-like
//! request head, the script it names, a script's header block, and the FastCGI records
//! one request and its ~1 KiB answer take on the wire.

use std::net::SocketAddr;
use std::path::PathBuf;

use cgi_testbed::fastcgi::record::{self, FCGI_RESPONDER, RecordType};
use cgi_testbed::gateway::env::{self, MetaVars, Site};
use cgi_testbed::gateway::response::{self, CgiResponse};
use cgi_testbed::http::head::{self, Request};
use cgi_testbed::net::Endpoints;
use cgi_testbed::route::Script;

/// What a browser sends for a script with PATH_INFO and a query (~520 bytes, 11 headers).
pub const REQUEST_HEAD: &[u8] = b"GET /cgi-bin/hello/extra/path?name=world&lang=en HTTP/1.1\r\n\
Host: bench.example:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: http://bench.example:8080/index.html\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Cookie: seen=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
X-Forwarded-For: 192.0.2.7\r\n\
Connection: keep-alive\r\n\
\r\n";

/// A script's answer: header block (with Status and a hop-by-hop header to drop) + body.
pub const CGI_RESPONSE: &[u8] = b"Status: 200 OK\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 13\r\n\
Cache-Control: no-store\r\n\
Set-Cookie: session=0123456789abcdef; Path=/; HttpOnly\r\n\
X-Powered-By: bench\r\n\
Connection: keep-alive\r\n\
\r\n\
Hello, world!";

/// `head::parse` with the server's default header limit.
pub fn parse_head(buf: &[u8]) -> Request {
    match head::parse(buf, 64 << 10) {
        Ok(Some((req, _))) => req,
        other => panic!("request head did not parse: {other:?}"),
    }
}

pub fn request() -> Request {
    parse_head(REQUEST_HEAD)
}

pub fn script() -> Script {
    Script {
        script_name: "/cgi-bin/hello".into(),
        path_info: "/extra/path".into(),
        file: PathBuf::from("/srv/www/cgi-bin/hello"),
        nph: false,
        interpreter: None,
    }
}

pub fn endpoints() -> Endpoints {
    Endpoints {
        remote: SocketAddr::from(([192, 0, 2, 7], 51234)),
        local: SocketAddr::from(([127, 0, 0, 1], 8080)),
    }
}

pub fn site() -> Site {
    Site {
        server_software: format!("cgi-testbed/{}", env!("CARGO_PKG_VERSION")),
        document_root: PathBuf::from("/srv/www"),
        extra: Vec::new(),
        pass_authorization: false,
    }
}

/// Request → RFC 3875 meta-variables, as both models build them.
pub fn meta_variables(req: &Request, script: &Script, site: &Site) -> MetaVars {
    env::meta_variables(req, script, endpoints(), None, site)
}

/// The script's header block → status, headers, kind.
pub fn parse_cgi_response(buf: &[u8]) -> CgiResponse {
    match response::parse(buf, 64 << 10) {
        Ok(Some((r, _))) => r,
        other => panic!("CGI response did not parse: {other:?}"),
    }
}

/// A ~1 KiB answer as a FastCGI worker writes it to STDOUT: a header block and a body.
pub fn stdout_payload() -> Vec<u8> {
    let mut out = b"Content-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    while out.len() < 1024 {
        out.extend_from_slice(b"Hello from the FastCGI worker, line by line.\n");
    }
    out.truncate(1024);
    out
}

/// What the server writes to a worker per request: BEGIN_REQUEST, the PARAMS stream
/// and an empty STDIN (a GET has no body).
pub fn encode_request(buf: &mut Vec<u8>, params: &MetaVars) {
    record::begin_request(buf, 1, FCGI_RESPONDER, true);
    record::params(buf, 1, params.iter().map(|(k, v)| (k.as_bytes(), v))).expect("params fit");
    record::stream(buf, RecordType::Stdin, 1, &[]);
}

/// What a worker writes back: STDOUT records, the end of STDOUT, END_REQUEST.
pub fn encode_response(buf: &mut Vec<u8>, stdout: &[u8]) {
    record::stream(buf, RecordType::Stdout, 1, stdout);
    record::stream(buf, RecordType::Stdout, 1, &[]);
    record::end_request(buf, 1, 0, record::FCGI_REQUEST_COMPLETE);
}

/// Decodes a record stream the way each side reads it: STDOUT content collected into
/// `stdout`, PARAMS content joined and split into name-value pairs. Returns how many
/// records and pairs were seen.
pub fn decode(mut buf: &[u8], stdout: &mut Vec<u8>) -> (usize, usize) {
    let (mut records, mut params) = (0, Vec::new());
    while let Some((rec, used)) = record::decode(buf).expect("valid records") {
        records += 1;
        match rec.record_type {
            RecordType::Params => params.extend_from_slice(rec.content),
            RecordType::Stdout => stdout.extend_from_slice(rec.content),
            _ => {}
        }
        buf = &buf[used..];
    }
    let pairs = record::decode_pairs(&params).expect("valid pairs").len();
    (records, pairs)
}

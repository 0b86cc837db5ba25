//! Writes the checked-in seed corpora: `fuzz/corpus/<target>/<name>`.
//! Run from `fuzz/`: `cargo run --manifest-path seedgen/Cargo.toml`.

use std::fs;
use std::path::Path;

use cgi_testbed::fastcgi::record::{self, FCGI_OVERLOADED, FCGI_RESPONDER, RecordType};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// http_request inputs: control byte, split sizes, then the wire bytes.
fn http(name: &str, ctl: u8, splits: &[u8], wire: &[u8]) {
    assert_eq!(usize::from(ctl & 7), splits.len());
    let mut v = vec![ctl];
    v.extend_from_slice(splits);
    v.extend_from_slice(wire);
    write("http_request", name, &v);
}

fn main() {
    // --- http_request ---------------------------------------------------------
    // ctl: low 3 bits = number of split bytes, high 5 bits pick the small max_header.
    http("get-simple", 0xF8, &[], b"GET /cgi-bin/env?a=1&b=%20 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: fuzz\r\n\r\n");
    http("get-http10-lf", 0xF8, &[], b"\r\n\nGET /cgi-bin/env HTTP/1.0\nConnection: keep-alive\n\n");
    http("get-absolute-form", 0x78, &[], b"GET http://example.org:81/cgi-bin/env?q HTTP/1.1\r\nHost: other\r\n\r\n");
    http("options-star", 0x10, &[], b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    http("post-length", 0xF8, &[], b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\nhello");
    http("post-huge-length", 0xF8, &[], b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\nab");
    http("post-length-overflow", 0xF8, &[], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n");
    http("chunked-trailers", 0xFB, &[1, 7, 3], b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=\"v\"\r\n world\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\nGET /next HTTP/1.1\r\n");
    http("chunked-bare-lf", 0xF9, &[0], b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: Chunked\n\n2\nhi\nA\n0123456789\n0\n\n");
    http("chunked-bad-size", 0xFA, &[2, 5], b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n");
    http("chunked-gzip", 0xF8, &[], b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    http("te-and-cl", 0xF8, &[], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc");
    http("obs-fold", 0xF8, &[], b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  b\r\n\tc\r\n\r\nbody");
    http("obs-fold-lf-cr", 0xF8, &[], b"GET / HTTP/1.1\nHost: x\nX: a\n b\n\r\n zzz");
    http("http2-version", 0xF8, &[], b"GET / HTTP/2.0\r\n\r\n");
    http("missing-host", 0xF8, &[], b"GET /cgi-bin/env HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    http("partial", 0x08, &[], b"GET /cgi-bin/env HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

    // --- cgi_response -----------------------------------------------------------
    let cgi = |name: &str, b: &[u8]| write("cgi_response", name, b);
    cgi("document-lf", b"Content-Type: text/plain\n\nhello\n");
    cgi("document-crlf", b"Content-type: text/html; charset=utf-8\r\nX-A:  b \r\n\r\n<p>x</p>");
    cgi("status-reason", b"Status: 299 Custom Thing\nContent-Type: text/plain\n\nbody");
    cgi("status-404", b"Status: 404\r\n\r\n");
    cgi("status-bad", b"Status: 1000 Nope\n\n");
    cgi("local-redirect", b"Location: /cgi-bin/env?x=1\n\n");
    cgi("client-redirect", b"Location: http://example.org/\r\n\r\n");
    cgi("redirect-301", b"Status: 301 Moved\nLocation: //evil.example/\n\n");
    cgi("content-length", b"Content-Type: a/b\nContent-Length: 12\nConnection: close\nTransfer-Encoding: chunked\n\nhello world!");
    cgi("duplicate-type", b"Content-Type: a/b\ncontent-type: c/d\n\n");
    cgi("bare-cr", b"X: a\rb\nContent-Type: text/plain\n\n");
    cgi("empty-values", b"Status:\nX-Only: 1\nLocation:\n\nbody");
    cgi("no-headers", b"\nbody");
    cgi("incomplete", b"Content-Type: text/plain\nX-Partial: yes");
    cgi("obs-text", b"X-Latin: caf\xe9\tna\xefve\nContent-Type: text/plain\n\n");

    // --- fastcgi_records (written by the crate's encoders) ----------------------
    let fcgi = |name: &str, b: &[u8]| write("fastcgi_records", name, b);
    let env = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/fcgi-bin/env"),
        ("QUERY_STRING", "a=1"),
        ("CONTENT_LENGTH", "5"),
    ];
    let mut req = Vec::new();
    record::begin_request(&mut req, 1, FCGI_RESPONDER, true);
    record::params(&mut req, 1, env).unwrap();
    record::stream(&mut req, RecordType::Stdin, 1, b"hello");
    record::stream(&mut req, RecordType::Stdin, 1, b"");
    fcgi("request", &req);

    let mut resp = Vec::new();
    record::stream(&mut resp, RecordType::Stdout, 1, b"Content-Type: text/plain\r\n\r\nhi");
    record::stream(&mut resp, RecordType::Stdout, 1, b"");
    record::stream(&mut resp, RecordType::Stderr, 1, b"warning\n");
    record::end_request(&mut resp, 1, 0, 0);
    fcgi("response", &resp);

    let mut mgmt = Vec::new();
    record::get_values(&mut mgmt, [record::FCGI_MAX_CONNS, record::FCGI_MAX_REQS, record::FCGI_MPXS_CONNS]).unwrap();
    record::get_values_result(&mut mgmt, [(record::FCGI_MAX_CONNS, "8"), (record::FCGI_MPXS_CONNS, "0")]).unwrap();
    record::unknown_type(&mut mgmt, 42);
    fcgi("management", &mgmt);

    let mut abort = Vec::new();
    record::begin_request(&mut abort, 7, FCGI_RESPONDER, false);
    record::abort_request(&mut abort, 7);
    record::end_request(&mut abort, 7, 0xDEAD_BEEF, FCGI_OVERLOADED);
    fcgi("abort", &abort);

    let mut long_pair = Vec::new();
    let big = vec![b'v'; 300];
    record::params(&mut long_pair, 2, [(&b"HTTP_X_LONG"[..], &big[..]), (&b""[..], &b""[..])]).unwrap();
    fcgi("params-long-value", &long_pair);

    let mut empty_params = Vec::new();
    record::params(&mut empty_params, 3, std::iter::empty::<(&[u8], &[u8])>()).unwrap();
    fcgi("params-empty", &empty_params);

    let mut other = Vec::new();
    record::record(&mut other, RecordType::Other(200), 9, b"unknown").unwrap();
    record::record(&mut other, RecordType::Data, 9, b"filter data").unwrap();
    fcgi("other-type", &other);

    // Hand-made oddities: odd padding, bad version, truncated pair, 4-byte short length.
    fcgi("odd-padding", b"\x01\x06\x00\x01\x00\x03\x05\x00abc\xaa\xaa\xaa\xaa\xaa\x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    fcgi("bad-version", b"\x02\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00");
    fcgi("truncated-pair", b"\x01\x04\x00\x01\x00\x06\x02\x00\x80\x00\x01\x00\x05a\x00\x00\x01\x04\x00\x01\x00\x00\x00\x00");
    fcgi("long-form-short-len", b"\x01\x04\x00\x01\x00\x0a\x06\x00\x80\x00\x00\x03\x80\x00\x00\x01ABCx\x00\x00\x00\x00\x00\x00\x01\x04\x00\x01\x00\x00\x00\x00");
    fcgi("partial-record", b"\x01\x06\x00\x01\xff\xff\x00\x00Content-Type: text/plain\r\n\r\n");

    // --- path_resolution ----------------------------------------------------------
    let paths: &[(&str, &str)] = &[
        ("env", "/cgi-bin/env"),
        ("env-pathinfo", "/cgi-bin/env/a/b/?x=1"),
        ("sub", "/cgi-bin/sub/x/more"),
        ("nph", "/cgi-bin/nph-a"),
        ("interp", "/cgi-bin/t.sh/info"),
        ("dotdot-encoded", "/cgi-bin/%2e%2e/secret"),
        ("dotdot-slash-encoded", "/cgi-bin/..%2fsecret"),
        ("nul", "/cgi-bin/env%00"),
        ("dot-segments", "/cgi-bin/./sub/../env/./x/.."),
        ("double-slash", "//cgi-bin//sub///x"),
        ("climb", "/cgi-bin/../../etc/passwd"),
        ("link-out", "/cgi-bin/link-out"),
        ("link-up", "/cgi-bin/link-up/secret"),
        ("link-up-in", "/cgi-bin/link-up/cgi-bin/env/p"),
        ("link-dir", "/cgi-bin/link-dir/z"),
        ("link-sh", "/cgi-bin/link-sh"),
        ("link-back", "/cgi-bin/sub/link-back/i"),
        ("bad-percent", "/cgi-bin/%zz/%4"),
        ("utf8", "/cgi-bin/%C3%A9t%C3%A9/%ff"),
        ("mount-prefix", "/cgi-binx/env"),
    ];
    for (name, p) in paths {
        write("path_resolution", name, p.as_bytes());
    }
}

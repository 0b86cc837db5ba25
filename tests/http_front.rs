//! The HTTP/1.1 front over real sockets: keep-alive, pipelining, bodies, limits and
//! the statuses for bad requests.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn server() -> TestServer {
    TestServer::start(&[
        ("hello", HELLO_SCRIPT),
        ("echo", ECHO_SCRIPT),
        ("env", ENV_SCRIPT),
    ])
}

#[test]
fn ureq_get_and_post() {
    let s = server();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(&s.url("/cgi-bin/hello")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "hello\n");
    let mut r = agent.post(&s.url("/cgi-bin/echo")).send("ping").unwrap();
    assert_eq!(r.body_mut().read_to_string().unwrap(), "ping");
}

#[test]
fn keep_alive_is_the_http11_default() {
    let s = server();
    let mut c = s.client();
    for _ in 0..3 {
        c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
        assert!(r.complete);
    }
}

#[test]
fn http10_keeps_alive_only_when_asked() {
    let s = TestServer::start(&[
        ("hello", HELLO_SCRIPT),
        ("app", include_str!("fixtures/fcgi_app.py")),
        (
            "slow",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\none\\n'\nsleep 0.3\necho two\n",
        ),
    ]);
    // An answer complete by the time its head goes out (a worker's STDOUT and
    // END_REQUEST arrive together) gets a Content-Length, so an HTTP/1.0 client asking
    // for keep-alive keeps its connection, as `ab -k` wants.
    let mut c = s.client();
    for _ in 0..3 {
        c.send(b"GET /fcgi-bin/app HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        assert!(r.header("content-length").is_some(), "{:?}", r.headers);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }

    // A streamed answer has no length and 1.0 has no chunks: the body is delimited by
    // closing, so keep-alive cannot be granted.
    let mut c = s.client();
    let started = Instant::now();
    c.send(b"GET /cgi-bin/slow HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "close-delimited body never closed"
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), "one\ntwo\n");

    let mut c = s.client();
    c.send(b"GET /cgi-bin/hello HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.text(), "hello\n");
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn http10_keep_alive_with_known_length_stays_open() {
    let s = TestServer::start(&[(
        "len",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nabc'\n",
    )]);
    let mut c = s.client();
    for _ in 0..2 {
        c.send(b"GET /cgi-bin/len HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "abc"));
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = server();
    let mut c = s.client();
    c.send(
        b"GET /cgi-bin/env?n=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /cgi-bin/env?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(c.response().var("QUERY_STRING").as_deref(), Some("n=1"));
    assert_eq!(c.response().text(), "hello");
    let third = c.response();
    assert_eq!(third.var("QUERY_STRING").as_deref(), Some("n=3"));
    assert_eq!(third.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn connection_close_is_honoured() {
    let s = server();
    let mut c = s.client();
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn chunked_upload_of_several_mib_gets_exact_content_length() {
    let s = TestServer::start(&[(
        "count",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"CONTENT_LENGTH=$CONTENT_LENGTH\"\necho \"READ=$(wc -c | tr -d ' ')\"\n",
    )]);
    let mut c = s.client();
    c.send(b"POST /cgi-bin/count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = vec![b'z'; 100_000];
    let total = 60 * piece.len();
    for _ in 0..60 {
        c.send(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        c.send(&piece);
        c.send(b"\r\n");
    }
    c.send(b"0\r\nX-Trailer: yes\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.var("CONTENT_LENGTH"), Some(total.to_string()));
    assert_eq!(r.var("READ"), Some(total.to_string()));
}

#[test]
fn malformed_chunk_size_is_400() {
    let s = server();
    let r = s.exchange(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn lenient_chunked_framing_is_400() {
    // RFC 9112 §7.1, strictly: what a lenient proxy in front might read differently.
    let s = server();
    for body in [
        &b"2\nhi\r\n0\r\n\r\n"[..],
        b"2\r\nhi\n0\r\n\r\n",
        b" 2\r\nhi\r\n0\r\n\r\n",
        b"2;a\0b\r\nhi\r\n0\r\n\r\n",
        b"2;a\rb\r\nhi\r\n0\r\n\r\n",
        b"2\r\nhi\r\n0\r\nX: 1\rY: 2\r\n\r\n",
        b"2\r\nhi\r\n0\r\nX: 1\r\n Y: 2\r\n\r\n",
    ] {
        let mut raw =
            b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        raw.extend_from_slice(body);
        let mut c = s.client();
        c.send(&raw);
        let r = c.response();
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{shown:?}: {}", r.text());
        assert!(r.text().contains("chunked"), "{shown:?}: {}", r.text());
        assert!(c.closed_within(Duration::from_secs(5)), "{shown:?}");
    }
    // The same body, well framed, goes through.
    let r = s.exchange(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2;a=\"b\"\r\nhi\r\n0\r\nX: 1\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
}

#[test]
fn chunk_size_over_max_body_is_413_at_once() {
    // A long --timeout: an answer that waited for the body or for the timeout would
    // leave the client's read (20 s) without one.
    let s = TestServer::with(&[("echo", ECHO_SCRIPT)], |c| {
        c.max_body = 1000;
        c.timeout = Duration::from_secs(120);
    });
    let mut c = s.client();
    c.send(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(b"10\r\n0123456789abcdef\r\n3e9\r\n");
    let r = c.response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(s.log_lines_with("413").len(), 1, "{:#?}", s.error_log());
}

#[test]
fn unknown_transfer_encoding_is_400_saying_so() {
    let s = server();
    for te in ["foo", "chunked, gzip"] {
        let raw =
            format!("POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
        let r = s.exchange(raw.as_bytes());
        assert_eq!(r.status, 400, "{te}");
        assert!(r.text().contains("Transfer-Encoding"), "{te}: {}", r.text());
        assert!(!r.text().contains("Content-Length"), "{te}: {}", r.text());
    }
}

#[test]
fn expect_100_continue_only_when_the_script_starts() {
    let s = server();
    let mut c = s.client();
    c.send(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let mut interim = [0u8; 25];
    c.stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"data");
    assert_eq!(c.response().text(), "data");

    // Refused before the script starts: the final status comes instead of 100.
    let mut c = s.client();
    c.send(b"POST /cgi-bin/missing HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    // The body will never come (the client waits for a 100 it must not get after a
    // final answer), so the connection closes and no 100 Continue follows.
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn other_expectations_get_417() {
    let s = server();
    let r = s.exchange(
        b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx",
    );
    assert_eq!(r.status, 417);
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let s = server();
    let r = s.exchange(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn oversized_header_block_is_431() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| c.max_header = 1024);
    let big = format!(
        "GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(s.exchange(big.as_bytes()).status, 431);
}

#[test]
fn more_than_100_header_lines_is_431() {
    let s = server();
    let mut req = String::from("GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        req += &format!("X-H{i}: v\r\n");
    }
    req += "\r\n";
    assert_eq!(s.exchange(req.as_bytes()).status, 431);
}

#[test]
fn body_over_the_limit_is_413_before_reading() {
    let s = TestServer::with(&[("echo", ECHO_SCRIPT)], |c| c.max_body = 1000);
    let mut c = s.client();
    // Only the head is sent: the answer must not wait for the body.
    c.send(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn chunked_body_over_the_limit_is_413_as_it_arrives() {
    let s = TestServer::with(&[("echo", ECHO_SCRIPT)], |c| c.max_body = 1000);
    let mut c = s.client();
    c.send(b"POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(format!("{:x}\r\n{}\r\n", 1500, "q".repeat(1500)).as_bytes());
    // No terminating chunk: the limit must trip on what arrived.
    assert_eq!(c.response().status, 413);
}

#[test]
fn bad_request_lines_are_400() {
    let s = server();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(
            s.exchange(raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn http11_without_host_is_400() {
    let s = server();
    assert_eq!(
        s.exchange(b"GET /cgi-bin/hello HTTP/1.1\r\n\r\n").status,
        400
    );
    assert_eq!(
        s.exchange(b"GET /cgi-bin/hello HTTP/1.0\r\n\r\n").status,
        200
    );
}

#[test]
fn unsupported_version_is_505() {
    let s = server();
    assert_eq!(
        s.exchange(b"GET /cgi-bin/hello HTTP/2.0\r\nHost: x\r\n\r\n")
            .status,
        505
    );
    assert_eq!(
        s.exchange(b"GET /cgi-bin/hello HTTP/1.7\r\nHost: x\r\n\r\n")
            .status,
        505
    );
}

#[test]
fn half_sent_head_gets_408_then_close() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| {
        c.head_timeout = Duration::from_millis(500);
    });
    let mut c = s.client();
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost:");
    let started = Instant::now();
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn slow_clients_do_not_hold_up_others() {
    // One event loop only: if slow heads held it, nobody else would be served.
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| c.loops = 1);
    let mut slow: Vec<Client> = (0..20).map(|_| s.client()).collect();
    for c in &mut slow {
        c.send(b"GET /cgi-bin/hello HTTP/1.1\r\n");
    }
    let idle: Vec<Client> = (0..20).map(|_| s.client()).collect();
    for round in 0..3 {
        let started = Instant::now();
        let r = s.get("/cgi-bin/hello");
        assert_eq!(r.status, 200, "round {round}");
        assert!(started.elapsed() < Duration::from_secs(2));
        for c in &mut slow {
            c.send(b"X");
        }
    }
    drop(idle);
}

#[test]
fn obs_fold_header_is_unfolded() {
    let s = server();
    let r = s.exchange(
        b"GET /cgi-bin/env HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let v = r.var("HTTP_X_FOLDED").unwrap();
    assert_eq!(v.split_whitespace().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn absolute_form_target_is_accepted() {
    let s = server();
    let r = s.exchange(b"GET http://example.org:81/cgi-bin/env?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.var("SERVER_NAME").as_deref(), Some("example.org"));
    // RFC 9112 §3.2.2: the target's host replaces Host, so the two agree.
    assert_eq!(r.var("HTTP_HOST").as_deref(), Some("example.org:81"));
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("q=1"));
}

#[test]
fn absolute_form_host_is_validated_like_host() {
    let s = server();
    for target in [
        "http://x\"onmouseover=\"alert(1)/cgi-bin/env",
        "http://user:pw@example.org/cgi-bin/env",
        "http:///cgi-bin/env",
        "http://example.org:8o/cgi-bin/env",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = s.exchange(raw.as_bytes());
        assert_eq!(r.status, 400, "{target}: {}", r.text());
    }
    assert!(s.error_log().iter().all(|l| !l.contains("SERVER_NAME")));
}

#[test]
fn options_asterisk_is_200_with_allow() {
    let s = server();
    let mut c = s.client();
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert_eq!(r.header("content-length"), Some("0"));
    // The connection carries on.
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "hello\n");
    // `*` is for OPTIONS only.
    assert_eq!(s.exchange(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n").status, 400);
}

#[test]
fn method_longer_than_32_bytes_is_501() {
    let s = server();
    let long = "X".repeat(33);
    let r = s.exchange(format!("{long} /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(r.status, 501, "{}", r.text());
    let ok = "X".repeat(32);
    let r = s.exchange(
        format!("{ok} /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn leading_empty_lines_before_a_request_are_ignored() {
    let s = server();
    let r = s.exchange(b"\r\n\r\nGET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn keep_alive_connection_survives_an_error() {
    let s = server();
    let mut c = s.client();
    c.send(b"GET /cgi-bin/nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn pipelined_requests_split_at_every_byte_boundary() {
    let s = server();
    let two = b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n";
    for split in (1..two.len()).step_by(7) {
        let mut c = s.client();
        c.stream.write_all(&two[..split]).unwrap();
        c.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        c.stream.write_all(&two[split..]).unwrap();
        assert_eq!(c.response().text(), "hello\n", "split {split}");
        assert_eq!(c.response().text(), "hello\n", "split {split}");
    }
}

#[test]
fn body_that_stops_arriving_is_408() {
    // Reads the whole body before answering, so the stall is all the client's.
    let reader = "#!/bin/sh\ncat >/dev/null\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndone'\n";
    let s = TestServer::with(&[("reader", reader)], |c| {
        c.timeout = Duration::from_secs(1)
    });
    let mut c = s.client();
    c.send(b"POST /cgi-bin/reader HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b");
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(c.closed_within(Duration::from_secs(3)));
}

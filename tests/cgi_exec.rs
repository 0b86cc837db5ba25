//! Running scripts: streaming both ways, timeouts, disconnects, reaping, stderr, and
//! how the script's answer becomes an HTTP response.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn pid_file_script(dir: &std::path::Path, body: &str) -> String {
    format!("#!/bin/sh\necho $$ > {}/pid\n{body}\n", dir.display())
}

#[test]
fn script_writing_5_mib_before_reading_its_5_mib_body_does_not_deadlock() {
    let s = TestServer::start(&[(
        "eager",
        "#!/usr/bin/env python3\nimport os, sys\nout = sys.stdout.buffer\nout.write(b'Content-Type: application/octet-stream\\r\\n\\r\\n')\nout.write(b'w' * (5 << 20))\nout.flush()\nn = len(sys.stdin.buffer.read())\nout.write(b'\\nread %d\\n' % n)\n",
    )]);
    let mut c = s.client();
    let body = vec![b'b'; 5 << 20];
    // A half-duplex client: it sends the whole body before reading anything.
    c.send(format!("POST /cgi-bin/eager HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    c.send(&body);
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(
        r.body.len(),
        (5 << 20) + format!("\nread {}\n", 5 << 20).len()
    );
    assert!(r.text().ends_with(&format!("read {}\n", 5 << 20)));
}

#[test]
fn large_body_streams_through_echo() {
    let s = TestServer::start(&[("echo", ECHO_SCRIPT)]);
    let mut c = s.client();
    let body: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    c.send(
        format!(
            "POST /cgi-bin/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        let body = body.clone();
        std::thread::spawn(move || stream.write_all(&body).unwrap())
    };
    let r = c.response();
    writer.join().unwrap();
    assert!(r.complete);
    assert!(r.body == body, "echoed body differs");
}

#[test]
fn unread_body_does_not_lose_the_response() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    let mut c = s.client();
    let body = vec![b'u'; 2 << 20];
    c.send(
        format!(
            "POST /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
    // The body was read and dropped, so the connection can carry another request.
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "hello\n");
}

#[test]
fn slow_script_output_arrives_as_it_is_written() {
    let s = TestServer::start(&[(
        "slow",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho first\nsleep 1\necho second\n",
    )]);
    let mut c = s.client();
    let started = Instant::now();
    c.send(b"GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut first_at = None;
    loop {
        let n = c.read_some(&mut buf);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if first_at.is_none() && text.contains("first") {
            assert!(!text.contains("second"), "both lines came together");
            first_at = Some(started.elapsed());
        }
    }
    let first_at = first_at.expect("first line");
    assert!(
        first_at < Duration::from_millis(900),
        "first line took {first_at:?}"
    );
    assert!(String::from_utf8_lossy(&got).contains("second"));
}

#[test]
fn hung_script_gets_504_and_its_group_is_killed() {
    let s = TestServer::with(&[], |c| c.timeout = Duration::from_secs(1));
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("hang"),
        &format!(
            "#!/bin/sh\nsleep 60 &\necho $! > {}/child\necho $$ > {}/pid\nwait\n",
            dir.display(),
            dir.display()
        ),
    );
    let started = Instant::now();
    let r = s.get("/cgi-bin/hang");
    assert_eq!(r.status, 504, "{:?}", s.error_log());
    assert!(started.elapsed() < Duration::from_secs(5));
    let (pid, child) = (read_pid(&dir.join("pid")), read_pid(&dir.join("child")));
    assert!(eventually(Duration::from_secs(3), || !process_exists(pid)
        && !process_exists(child)));
    assert_eq!(s.log_lines_with("504").len(), 1, "{:?}", s.error_log());
}

#[test]
fn client_disconnect_kills_the_script_at_once() {
    let s = TestServer::start(&[]);
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("wait"),
        &pid_file_script(&dir, "sleep 60"),
    );
    let mut c = s.client();
    c.send(b"GET /cgi-bin/wait HTTP/1.1\r\nHost: x\r\n\r\n");
    let pid = read_pid(&dir.join("pid"));
    assert!(process_exists(pid));
    drop(c);
    assert!(
        eventually(Duration::from_secs(3), || !process_exists(pid)),
        "script still running"
    );
}

#[test]
fn client_leaving_mid_stream_kills_the_script() {
    let s = TestServer::start(&[]);
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("stream"),
        &pid_file_script(
            &dir,
            "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nwhile :; do echo tick; sleep 0.05; done",
        ),
    );
    let mut c = s.client();
    c.send(b"GET /cgi-bin/stream HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 256];
    assert!(c.read_some(&mut buf) > 0);
    let pid = read_pid(&dir.join("pid"));
    drop(c);
    assert!(eventually(Duration::from_secs(3), || !process_exists(pid)));
}

#[test]
fn no_child_is_left_behind() {
    let s = TestServer::start(&[]);
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("spawner"),
        &format!(
            "#!/bin/sh\n(sleep 30 >/dev/null 2>&1 &\necho $! > {}/grandchild)\necho $$ > {}/pid\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n",
            dir.display(),
            dir.display()
        ),
    );
    for _ in 0..3 {
        assert_eq!(s.get("/cgi-bin/spawner").text(), "ok");
        let pid = read_pid(&dir.join("pid"));
        let grandchild = read_pid(&dir.join("grandchild"));
        assert!(
            eventually(Duration::from_secs(3), || !process_exists(pid)),
            "zombie or live script"
        );
        assert!(
            eventually(Duration::from_secs(3), || !process_exists(grandchild)),
            "grandchild left running"
        );
    }
    assert_eq!(s.running.as_ref().unwrap().shared().children.count(), 0);
}

#[test]
fn daemonized_child_holding_stdout_does_not_hold_the_request() {
    let s = TestServer::start(&[(
        "daemon",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nbye\\n'\nsleep 30 &\nexit 0\n",
    )]);
    let started = Instant::now();
    let r = s.get("/cgi-bin/daemon");
    assert_eq!(r.text(), "bye\n");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn stderr_goes_to_the_log_one_line_per_line() {
    let s = TestServer::start(&[(
        "noisy",
        "#!/bin/sh\necho 'first problem' >&2\necho 'second problem' >&2\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n",
    )]);
    assert_eq!(s.get("/cgi-bin/noisy?x=1").text(), "ok");
    assert!(eventually(Duration::from_secs(2), || s
        .log_lines_with("problem")
        .len()
        == 2));
    let lines = s.log_lines_with("problem");
    assert!(lines[0].contains("first problem") && lines[1].contains("second problem"));
    for l in &lines {
        assert!(
            l.contains("/cgi-bin/noisy?x=1") && l.contains("[req "),
            "untagged: {l}"
        );
    }
}

#[test]
fn stderr_is_escaped_in_the_log() {
    // Raw ESC would reach whoever tails the log in a terminal; a bare CR could make a
    // line look like another. Both are escaped as Apache escapes log items.
    let s = TestServer::start(&[(
        "ansi",
        "#!/bin/sh\nprintf 'red \\033[31mtext\\rforged \\\\ \"q\"\\n' >&2\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n",
    )]);
    assert_eq!(s.get("/cgi-bin/ansi").text(), "ok");
    assert!(eventually(Duration::from_secs(2), || !s
        .log_lines_with("stderr: red")
        .is_empty()));
    let line = &s.log_lines_with("stderr: red")[0];
    assert!(
        line.ends_with(r#"stderr: red \x1b[31mtext\rforged \\ \"q\""#),
        "{line}"
    );
    assert!(!line.bytes().any(|b| b < b' '), "{line:?}");
}

#[test]
fn stderr_flood_blocks_nothing() {
    let s = TestServer::start(&[(
        "flood",
        "#!/usr/bin/env python3\nimport sys\nline = b'x' * 1023 + b'\\n'\nfor _ in range(10 * 1024):\n    sys.stderr.buffer.write(line)\nsys.stdout.write('Content-Type: text/plain\\r\\n\\r\\ndone')\n",
    )]);
    let started = Instant::now();
    assert_eq!(s.get("/cgi-bin/flood").text(), "done");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(2), || !s
        .log_lines_with("more bytes not logged")
        .is_empty()));
}

#[test]
fn status_line_keeps_the_scripts_reason_phrase() {
    let s = TestServer::start(&[(
        "st",
        "#!/bin/sh\nprintf 'Status: 299 Custom Reason\\nContent-Type: text/plain\\n\\nbody'\n",
    )]);
    let r = s.get("/cgi-bin/st");
    assert_eq!(
        (r.status, r.reason.as_str(), r.text().as_str()),
        (299, "Custom Reason", "body")
    );
}

#[test]
fn lf_and_crlf_header_lines_both_work() {
    let s = TestServer::start(&[
        (
            "lf",
            "#!/bin/sh\nprintf 'Content-Type: text/x-lf\\nX-A: 1\\n\\nlf'\n",
        ),
        (
            "crlf",
            "#!/bin/sh\nprintf 'Content-Type: text/x-crlf\\r\\nX-A: 1\\r\\n\\r\\ncrlf'\n",
        ),
    ]);
    let r = s.get("/cgi-bin/lf");
    assert_eq!(
        (r.header("content-type"), r.text().as_str()),
        (Some("text/x-lf"), "lf")
    );
    let r = s.get("/cgi-bin/crlf");
    assert_eq!(
        (r.header("content-type"), r.text().as_str()),
        (Some("text/x-crlf"), "crlf")
    );
}

#[test]
fn local_redirect_is_served_internally_as_a_get() {
    let s = TestServer::start(&[
        (
            "go",
            "#!/bin/sh\nprintf 'Location: /cgi-bin/env/after?from=go\\r\\n\\r\\n'\n",
        ),
        ("env", ENV_SCRIPT),
        (
            "loop",
            "#!/bin/sh\nprintf 'Location: /cgi-bin/loop\\r\\n\\r\\n'\n",
        ),
    ]);
    let r = s.exchange(
        b"POST /cgi-bin/go HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.var("REQUEST_METHOD").as_deref(), Some("GET"));
    assert_eq!(r.var("PATH_INFO").as_deref(), Some("/after"));
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("from=go"));
    assert_eq!(r.var("CONTENT_LENGTH"), None);
    assert_eq!(s.get("/cgi-bin/loop").status, 500);
}

#[test]
fn absolute_location_is_a_302() {
    let s = TestServer::start(&[
        (
            "away",
            "#!/bin/sh\nprintf 'Location: https://example.org/x\\r\\n\\r\\n'\n",
        ),
        (
            "moved",
            "#!/bin/sh\nprintf 'Status: 301 Moved Permanently\\r\\nLocation: https://example.org/y\\r\\nContent-Type: text/plain\\r\\n\\r\\nsee y'\n",
        ),
    ]);
    let r = s.get("/cgi-bin/away");
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("https://example.org/x"))
    );
    let r = s.get("/cgi-bin/moved");
    assert_eq!(
        (r.status, r.header("location"), r.text().as_str()),
        (301, Some("https://example.org/y"), "see y")
    );
}

#[test]
fn document_without_content_type_gets_none_invented() {
    let s = TestServer::start(&[("bare", "#!/bin/sh\nprintf 'X-Only: 1\\r\\n\\r\\nraw'\n")]);
    let r = s.get("/cgi-bin/bare");
    assert_eq!((r.status, r.text().as_str()), (200, "raw"));
    assert_eq!(r.header("content-type"), None);
}

#[test]
fn bad_script_output_is_502_with_a_log_line() {
    let cases = [
        (
            "badline",
            "#!/bin/sh\nprintf 'this is not a header\\r\\n\\r\\nx'\n",
        ),
        (
            "badstatus",
            "#!/bin/sh\nprintf 'Status: twohundred\\r\\n\\r\\nx'\n",
        ),
        (
            "noblank",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n'\n",
        ),
        ("silent", "#!/bin/sh\nexit 0\n"),
        ("crash", "#!/bin/sh\nkill -SEGV $$\n"),
        // `Location: $url` with $url unset: neither a redirect nor a document.
        (
            "emptylocation",
            "#!/bin/sh\nprintf 'Location: %s\\r\\n\\r\\n' \"$UNSET\"\n",
        ),
    ];
    let s = TestServer::start(&cases);
    for (name, _) in cases {
        let r = s.get(&format!("/cgi-bin/{name}"));
        assert_eq!(r.status, 502, "{name}");
        assert!(r.text().starts_with("502 Bad Gateway"));
        let needle = format!("/cgi-bin/{name} 502");
        assert!(
            eventually(Duration::from_secs(2), || s.log_lines_with(&needle).len()
                == 1),
            "{name}: {:?}",
            s.error_log()
        );
    }
}

#[test]
fn nph_output_is_relayed_unchanged_and_closes() {
    let raw = "HTTP/1.1 203 Straight From The Script\r\nX-Nph: yes\r\nContent-Type: text/plain\r\n\r\nnph body";
    let s = TestServer::start(&[(
        "nph-raw",
        &format!(
            "#!/bin/sh\nprintf '{}'\n",
            raw.replace('\r', "\\r").replace('\n', "\\n")
        ),
    )]);
    let mut c = s.client();
    c.send(b"GET /cgi-bin/nph-raw HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut all = Vec::new();
    c.stream.read_to_end(&mut all).unwrap();
    assert_eq!(String::from_utf8_lossy(&all), raw);
}

#[test]
fn head_gets_headers_and_length_but_no_body() {
    let s = TestServer::start(&[
        (
            "len",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 5\\r\\n\\r\\nhello'\n",
        ),
        ("nolen", HELLO_SCRIPT),
    ]);
    let mut c = s.client();
    c.send(b"HEAD /cgi-bin/len HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("5")));
    c.send(b"HEAD /cgi-bin/nolen HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    // The connection is still in step: no stray body bytes came before this answer.
    c.send(b"GET /cgi-bin/len HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "hello");
}

#[test]
fn content_length_is_never_exceeded_and_a_short_body_closes() {
    let s = TestServer::start(&[
        (
            "more",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nabcdef'\n",
        ),
        (
            "less",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 10\\r\\n\\r\\nabc'\n",
        ),
    ]);
    let mut c = s.client();
    c.send(b"GET /cgi-bin/more HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "abc");
    c.send(b"GET /cgi-bin/more HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "abc", "connection stayed in step");
    let mut c = s.client();
    c.send(b"GET /cgi-bin/less HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    // The client must be able to tell: a 502 when the short body was seen before
    // anything went out, else a body that stops short of its length, then a close.
    if r.status == 502 {
        assert!(r.text().starts_with("502 Bad Gateway"), "{}", r.text());
    } else {
        assert!(!r.complete, "client must see the body is short");
        assert!(c.closed_within(Duration::from_secs(2)));
    }
    assert!(eventually(Duration::from_secs(2), || !s
        .log_lines_with("short of Content-Length")
        .is_empty()));
}

#[test]
fn crash_after_headers_is_visible_as_an_incomplete_body() {
    let s = TestServer::start(&[(
        "half",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\npartial'\nsleep 0.2\nkill -KILL $$\n",
    )]);
    let mut c = s.client();
    c.send(b"GET /cgi-bin/half HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("partial"));
    // No final chunk, and the connection is not reused: the client can tell.
    assert!(
        !r.complete,
        "a killed script's output was passed off as complete"
    );
    assert!(c.closed_within(Duration::from_secs(2)));
    assert!(eventually(Duration::from_secs(2), || !s
        .log_lines_with("signal 9")
        .is_empty()));
}

#[test]
fn client_leaving_after_a_complete_answer_does_not_kill_the_script() {
    let s = TestServer::start(&[]);
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("tidy"),
        &format!(
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 2\\r\\n\\r\\nok'\nsleep 0.5\ntouch {}/finished\n",
            dir.display()
        ),
    );
    let mut c = s.client();
    c.send(b"GET /cgi-bin/tidy HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "ok");
    drop(c);
    // The answer was whole: the script is left to finish its own work.
    assert!(eventually(Duration::from_secs(3), || dir
        .join("finished")
        .exists()));
    assert!(
        s.log_lines_with("cut off").is_empty(),
        "{:#?}",
        s.error_log()
    );
}

#[test]
fn output_past_the_scripts_own_content_length_is_dropped_with_a_log_line() {
    let s = TestServer::start(&[(
        "overlong",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 5\\r\\n\\r\\nhello world'\n",
    )]);
    let r = s.get("/cgi-bin/overlong");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert!(
        eventually(Duration::from_secs(2), || s
            .log_lines_with("6 bytes past its own Content-Length")
            .len()
            == 1),
        "{:#?}",
        s.error_log()
    );
}

#[test]
fn an_error_page_before_the_body_was_read_closes_the_connection() {
    let s = TestServer::start(&[("silent", "#!/bin/sh\nexit 3\n")]);
    let mut c = s.client();
    c.send(b"POST /cgi-bin/silent HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
    let r = c.response();
    assert_eq!(r.status, 502);
    // Half the body is still on its way: the connection cannot carry another request.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
}

//! Every error status with its short text body and exactly one error-log line, and
//! the access log's format.

mod common;

use std::time::Duration;

use common::*;

fn one_log_line(s: &TestServer, needle: &str) {
    assert!(
        eventually(Duration::from_secs(2), || s.log_lines_with(needle).len()
            == 1),
        "want exactly one log line with {needle:?}: {:#?}",
        s.error_log()
    );
}

#[test]
fn not_found_forbidden_and_bad_path() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    let r = s.get("/cgi-bin/nope");
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("text/plain; charset=utf-8"))
    );
    assert!(r.text().starts_with("404 Not Found"));
    one_log_line(&s, "/cgi-bin/nope 404");
    assert_eq!(s.get("/elsewhere").status, 404);
    assert_eq!(s.get("/cgi-bin/%zz").status, 400);
    let file = s.cgi_dir().join("data.txt");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(s.get("/cgi-bin/data.txt").status, 403);
    one_log_line(&s, "/cgi-bin/data.txt 403");
}

#[test]
fn trace_and_connect_are_405() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    let r = s.exchange(b"TRACE /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some());
    one_log_line(&s, "TRACE /cgi-bin/hello 405");
    // Other methods, standard or not, are the script's to judge.
    let r = s.exchange(b"PROPFIND /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn script_that_cannot_start_is_500() {
    let s = TestServer::start(&[
        ("noshebang", "echo this file has no #! line\n"),
        ("badinterp", "#!/nonexistent/interpreter\n"),
    ]);
    for name in ["noshebang", "badinterp"] {
        let r = s.get(&format!("/cgi-bin/{name}"));
        assert_eq!(r.status, 500, "{name}");
        assert!(
            !r.text().contains("nonexistent"),
            "internal detail leaked to the client"
        );
        one_log_line(&s, &format!("/cgi-bin/{name} 500"));
    }
}

#[test]
fn too_many_scripts_at_once_is_503() {
    let s = TestServer::with(
        &[
            (
                "slow",
                "#!/bin/sh\nsleep 2\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslow'\n",
            ),
            ("hello", HELLO_SCRIPT),
        ],
        |c| {
            c.max_procs = 1;
            c.proc_wait = Duration::from_millis(200);
        },
    );
    let addr = s.addr();
    let busy = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\n\r\n");
        c.response().status
    });
    std::thread::sleep(Duration::from_millis(500));
    let r = s.get("/cgi-bin/hello");
    assert_eq!(r.status, 503);
    one_log_line(&s, "/cgi-bin/hello 503");
    assert_eq!(busy.join().unwrap(), 200);
    assert_eq!(s.get("/cgi-bin/hello").status, 200, "slot given back");
}

#[test]
fn head_errors_get_one_line_each() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    assert_eq!(
        s.exchange(b"GET /cgi-bin/hello HTTP/1.1\r\n\r\n").status,
        400
    );
    one_log_line(&s, "HTTP/1.1 request without Host");
    assert_eq!(s.exchange(b"GET / HTTP/3.0\r\n\r\n").status, 505);
    one_log_line(&s, "505 HTTP version not supported");
}

#[test]
fn access_log_is_combined_format_plus_time_and_script_cost() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    s.exchange(b"GET /cgi-bin/hello?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: agent/1\r\nConnection: close\r\n\r\n");
    assert!(eventually(Duration::from_secs(2), || !s
        .access_log()
        .is_empty()));
    let line = &s.access_log()[0];
    let re = |l: &str| -> bool {
        // 127.0.0.1 - - [29/Nov/2026:22:50:14 +0000] "GET /x HTTP/1.1" 200 6 "ref" "ua" 123us pid=1 cpu=1us maxrss=1KiB
        let Some((host, rest)) = l.split_once(" - - [") else {
            return false;
        };
        let Some((date, rest)) = rest.split_once("] \"") else {
            return false;
        };
        host == "127.0.0.1"
            && date.len() == 26
            && rest
                .starts_with("GET /cgi-bin/hello?q=1 HTTP/1.1\" 200 6 \"http://r/\" \"agent/1\" ")
            && rest.contains("us pid=")
            && rest.contains(" cpu=")
            && rest.contains(" maxrss=")
    };
    assert!(re(line), "{line}");
}

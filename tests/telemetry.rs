//! Telemetry: the Server-Timing header and the access log's per-model cost fields.

mod common;

use std::time::Duration;

use common::*;

const APP: &str = include_str!("fixtures/fcgi_app.py");

/// `queue;dur=0.003, spawn;dur=0.306, ...` → [(name, ms)].
fn timings(r: &Response) -> Vec<(String, f64)> {
    let value = r.header("server-timing").expect("Server-Timing header");
    value
        .split(',')
        .map(|m| {
            let (name, dur) = m.trim().split_once(";dur=").expect("name;dur=value");
            (name.to_owned(), dur.parse().expect("a number"))
        })
        .collect()
}

fn metric(t: &[(String, f64)], name: &str) -> f64 {
    t.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .expect(name)
}

#[test]
fn cgi_answers_carry_server_timing() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    let t = timings(&s.get("/cgi-bin/hello"));
    let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["queue", "spawn", "ttfb", "total"]);
    assert!(t.iter().all(|(_, v)| *v >= 0.0));
    assert!(metric(&t, "spawn") > 0.0, "a process was started");
    assert!(metric(&t, "ttfb") >= metric(&t, "spawn"));
    assert!(metric(&t, "total") >= metric(&t, "ttfb"));
}

#[test]
fn warm_worker_reports_no_spawn() {
    let s = TestServer::with(&[("app", APP)], |c| c.workers.max = 1);
    let cold = timings(&s.get("/fcgi-bin/app"));
    assert!(metric(&cold, "spawn") > 0.0);
    let warm = timings(&s.get("/fcgi-bin/app"));
    assert_eq!(metric(&warm, "spawn"), 0.0);
    assert!(metric(&warm, "total") >= metric(&warm, "ttfb"));
}

#[test]
fn no_server_timing_turns_it_off_and_nph_only_logs_it() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| c.server_timing = false);
    assert_eq!(s.get("/cgi-bin/hello").header("server-timing"), None);
    let s = TestServer::start(&[(
        "nph-x",
        "#!/bin/sh\nprintf 'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok'\n",
    )]);
    let r = s.get("/cgi-bin/nph-x");
    assert_eq!(r.header("server-timing"), None);
    assert!(eventually(Duration::from_secs(2), || s
        .access_log()
        .iter()
        .any(
            |l| l.contains("nph-x") && l.contains("timing=\"queue;dur=")
        )));
}

#[test]
fn access_log_has_rusage_for_cgi_and_pid_for_workers() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT), ("app", APP)], |c| {
        c.workers.max = 1
    });
    s.get("/cgi-bin/hello");
    let r = s.get("/fcgi-bin/app");
    let pid = r.var("pid").unwrap();
    assert!(eventually(Duration::from_secs(2), || s.access_log().len() == 2));
    let log = s.access_log();
    let cgi = &log[0];
    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing in {line}"))
            .to_owned()
    };
    assert!(
        field(cgi, "cpu=")
            .trim_end_matches("us")
            .parse::<u64>()
            .is_ok()
    );
    let rss: u64 = field(cgi, "maxrss=")
        .trim_end_matches("KiB")
        .parse()
        .unwrap();
    assert!(rss > 0);
    assert_eq!(field(&log[1], "worker="), pid);
}

#[test]
fn access_log_escapes_as_apache_does() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    // A User-Agent ending in a backslash used to end up as `\"` in the log, which reads
    // as an escaped quote: the field would run on into the next one. httparse already
    // refuses control bytes in a head; obs-text (0xff) is escaped as Apache does.
    let r = s.exchange(
        b"GET /cgi-bin/hello?a=\"b\" HTTP/1.1\r\nHost: x\r\nReferer: r\"\xff\\\r\nUser-Agent: ua\\\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(2), || s.access_log().len() == 1));
    let line = &s.access_log()[0];
    assert!(
        line.contains(r#""GET /cgi-bin/hello?a=\"b\" HTTP/1.1" 200 6 "r\"\xff\\" "ua\\" "#),
        "{line}"
    );
    assert!(!line.bytes().any(|b| b < b' '), "{line:?}");
}

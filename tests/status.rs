//! What a new user sees: the landing page at `/` and `/server-status` (HTML and JSON)
//! while scripts run, over real sockets.

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs until the test creates `release` beside it (at most 30 s), so timing on a
/// loaded machine cannot end it before the test has looked at it.
const SLOW_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ni=0\nwhile [ ! -e release ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\necho done\n";
const PY_SCRIPT: &str = "#!/usr/bin/env python3\nprint('Content-Type: text/plain\\n\\nhi')\n";

fn json_status(s: &TestServer) -> Value {
    let r = s.get("/server-status?json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("status JSON parses")
}

#[test]
fn landing_page_lists_every_script() {
    let s = TestServer::start(&[
        ("hello", HELLO_SCRIPT),
        ("form.py", PY_SCRIPT),
        ("sub/deep", ENV_SCRIPT),
        ("a&<b>", HELLO_SCRIPT),
    ]);
    fs::write(s.cgi_dir().join("notes.txt"), "#!/bin/false\n").unwrap();
    fs::set_permissions(
        s.cgi_dir().join("notes.txt"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    for link in [
        "href=\"/cgi-bin/hello\"",
        "href=\"/fcgi-bin/hello\"",
        "href=\"/cgi-bin/form.py\"",
        "href=\"/cgi-bin/sub/deep\"",
        "href=\"/cgi-bin/a%26%3Cb%3E\"",
    ] {
        assert!(page.contains(link), "{link} missing from the landing page");
    }
    assert!(page.contains("python3 (via /usr/bin/env)"));
    assert!(page.contains("<code>/bin/sh</code>"));
    assert!(page.contains("<code>notes.txt</code>"));
    assert!(page.contains("chmod +x"));
    assert!(!page.contains("href=\"/cgi-bin/notes.txt\""));
    assert!(!page.contains("<b>"), "names are escaped");
    assert!(!page.contains("<script"), "no JavaScript");
    // HEAD answers with the same length and no body.
    let mut c = s.client();
    c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = c.head_response();
    assert_eq!(
        head.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[test]
fn landing_page_and_status_list_a_running_slow_script() {
    let s = TestServer::start(&[("slow", SLOW_SCRIPT), ("hello", HELLO_SCRIPT)]);
    assert_eq!(s.get("/cgi-bin/hello").status, 200);
    let addr = s.addr();
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /cgi-bin/slow?token=s3cret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.response()
    });
    let mut running = Value::Null;
    assert!(
        eventually(Duration::from_secs(5), || {
            let snap = json_status(&s);
            running = snap["running"].clone();
            running.as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x["script"] == "/cgi-bin/slow" && x["pid"].is_i64())
            })
        }),
        "slow script never listed with a pid: {running}"
    );
    let landing = s.get("/").text();
    assert!(landing.contains("href=\"/cgi-bin/slow\""));
    let snap = json_status(&s);
    let entry = snap["running"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["script"] == "/cgi-bin/slow"))
        .unwrap_or_else(|| panic!("slow not running: {snap:#}"))
        .clone();
    assert_eq!(entry["model"], "cgi");
    // The path only: a query string can carry tokens or passwords.
    assert_eq!(entry["path"], "/cgi-bin/slow");
    assert!(entry.get("target").is_none(), "{entry:#}");
    assert!(!snap.to_string().contains("s3cret"), "{snap:#}");
    assert_eq!(entry["method"], "GET");
    assert!(entry["age_ms"].as_u64().is_some());
    let pid = entry["pid"].as_i64().expect("pid") as u32;
    assert!(process_exists(pid));
    // The script is part of the process tree whose memory the page adds up.
    let tree = snap["memory"]["tree"].as_array().expect("tree");
    assert!(tree.iter().any(|p| p["pid"] == pid));
    assert!(snap["memory"]["rss_kib"].as_u64().unwrap() > 0);
    assert!(snap["memory"]["processes"].as_u64().unwrap() >= 2);
    assert!(snap["uptime_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(snap["requests"]["by_model"]["cgi"]["200"], 1);
    assert!(snap["spawns"]["cgi_total"].as_u64().unwrap() >= 2);
    // The HTML page shows the same.
    let html = s.get("/server-status").text();
    assert!(html.contains("/cgi-bin/slow"), "{html}");
    assert!(!html.contains("s3cret"), "{html}");
    assert!(html.contains("Running scripts: 1"));

    std::fs::write(s.cgi_dir().join("release"), "").unwrap();
    let done = slow.join().unwrap();
    assert_eq!(done.text(), "done\n");
    // The client can have its answer a moment before the server's bookkeeping ends.
    let mut after = Value::Null;
    let settled = eventually(Duration::from_secs(3), || {
        after = json_status(&s);
        after["running"].as_array().map(Vec::len) == Some(0)
            && after["requests"]["by_model"]["cgi"]["200"] == 2
    });
    assert!(settled, "{after:#}");
}

#[test]
fn status_counts_requests_by_model_and_status() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    s.get("/cgi-bin/hello");
    s.get("/cgi-bin/missing");
    s.get("/nothing-here");
    s.get("/");
    // A request is counted after its answer went out, and every look at the status
    // page is itself a request counted the same way.
    let mut snap = Value::Null;
    let mut looks = 0;
    eventually(Duration::from_secs(3), || {
        snap = json_status(&s);
        looks += 1;
        snap["requests"]["total"] == 4 + (looks - 1)
    });
    let by = &snap["requests"]["by_model"];
    assert_eq!(by["cgi"]["200"], 1);
    assert_eq!(by["cgi"]["404"], 1);
    assert_eq!(by["none"]["404"], 1);
    assert_eq!(by["builtin"]["200"], 1 + (looks - 1));
    assert_eq!(snap["requests"]["total"], 4 + (looks - 1));
}

#[test]
fn status_shows_worker_pools() {
    let app = include_str!("fixtures/fcgi_app.py");
    let s = TestServer::with(&[("app", app)], |c| c.workers.max = 1);
    let r = s.get("/fcgi-bin/app");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut snap = Value::Null;
    // The worker goes back to the pool a moment after its answer went out.
    eventually(Duration::from_secs(3), || {
        snap = json_status(&s);
        snap["pools"][0]["served"] == 1
    });
    let pool = &snap["pools"][0];
    assert_eq!(pool["served"], 1);
    assert_eq!(pool["spawned"], 1);
    let worker = &pool["workers"][0];
    assert_eq!(worker["state"], "idle");
    // Read where offered: the fixture answers FCGI_GET_VALUES.
    assert_eq!(
        worker["values"],
        "FCGI_MAX_CONNS=1, FCGI_MAX_REQS=1, FCGI_MPXS_CONNS=0"
    );
    assert_eq!(worker["served"], 1);
    let pid = worker["pid"].as_i64().expect("worker pid");
    assert!(
        snap["memory"]["tree"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid)
    );
    assert_eq!(snap["spawns"]["workers_total"], 1);
    assert_eq!(snap["requests"]["by_model"]["fastcgi"]["200"], 1);
}

#[test]
fn status_can_be_turned_off_and_answers_get_only() {
    let s = TestServer::start(&[]);
    let r = s.exchange(b"POST /server-status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(
        s.get("/server-status").header("cache-control"),
        Some("no-store")
    );
    let off = TestServer::with(&[], |c| c.status_page = false);
    assert_eq!(off.get("/server-status").status, 404);
    assert!(!off.get("/").text().contains("/server-status"));
}

/// One GET to `addr` (the server's port on some address of this machine).
fn get_via(addr: SocketAddr, path: &str) -> Response {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    c.response()
}

#[test]
fn remote_clients_see_no_disk_paths_and_no_status() {
    let ip = non_loopback_ipv4();
    if !peer(
        ip.is_some(),
        "an IPv4 address outside 127.0.0.0/8 on this machine",
    ) {
        return;
    }
    let ip = IpAddr::V4(ip.unwrap());
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
    });
    let port = s.addr().port();
    let disk = fs::canonicalize(s.cgi_dir()).unwrap();
    let disk = disk.to_str().unwrap();
    let local = get_via(SocketAddr::from(([127, 0, 0, 1], port)), "/");
    assert!(local.text().contains(disk), "{}", local.text());
    let remote = get_via(SocketAddr::new(ip, port), "/");
    assert_eq!(remote.status, 200);
    assert!(remote.text().contains("href=\"/cgi-bin/hello\""));
    assert!(!remote.text().contains(disk), "{}", remote.text());
    let tmp = s.dir.path().to_str().unwrap();
    assert!(!remote.text().contains(tmp), "{}", remote.text());
    assert_eq!(
        get_via(SocketAddr::new(ip, port), "/server-status").status,
        403
    );
}

#[test]
fn status_allow_matches_v4_mapped_peers() {
    let ip = non_loopback_ipv4();
    if !peer(
        ip.is_some(),
        "an IPv4 address outside 127.0.0.0/8 on this machine",
    ) {
        return;
    }
    let ip = ip.unwrap();
    // On a dual-stack socket an IPv4 client is `::ffff:a.b.c.d`; a network written
    // either way must match it.
    for (allow, status) in [
        (vec![], 403),
        (vec![format!("{ip}/32")], 200),
        (vec![format!("::ffff:{ip}/128")], 200),
        (vec!["::/0".to_owned()], 200),
        (vec!["2001:db8::/32".to_owned()], 403),
    ] {
        let s = TestServer::with(&[], |c| {
            c.listen = "[::]:0".parse().unwrap();
            c.status_allow = allow.iter().map(|n| n.parse().unwrap()).collect();
        });
        let r = get_via(
            SocketAddr::new(IpAddr::V4(ip), s.addr().port()),
            "/server-status",
        );
        assert_eq!(r.status, status, "--status-allow {allow:?}");
    }
}

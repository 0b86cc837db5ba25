//! `--limit-*`: a fork bomb, a memory hog, a CPU loop and an output flood each hit
//! their limit; the client gets a clear status, one log line names the limit, and the
//! server goes on serving.

mod common;

use std::time::{Duration, Instant};

use cgi_testbed::limits::Limits;
use common::*;

fn limited(scripts: &[(&str, &str)], limits: Limits) -> TestServer {
    let mut all = scripts.to_vec();
    all.push(("hello", HELLO_SCRIPT));
    TestServer::with(&all, |c| {
        c.limits = limits;
        c.timeout = Duration::from_secs(10);
    })
}

fn still_serving(s: &TestServer) {
    assert_eq!(
        s.get("/cgi-bin/hello").text(),
        "hello\n",
        "server stopped serving"
    );
}

fn one_line_naming(s: &TestServer, path: &str, limit: &str) {
    assert!(
        eventually(Duration::from_secs(3), || {
            s.error_log()
                .iter()
                .filter(|l| l.contains(path) && l.contains(limit))
                .count()
                == 1
        }),
        "want one log line for {path} naming {limit}: {:#?}",
        s.error_log()
    );
}

fn cgroups_enforce(s: &TestServer) -> bool {
    peer(
        s.running.as_ref().unwrap().shared().limits.uses_cgroup(),
        "a writable cgroup (v2 with pids and memory, or v1's hierarchies): without \
         one, memory and process limits fall back to rlimits, which root ignores",
    )
}

#[test]
fn cpu_loop_hits_limit_cpu() {
    let s = limited(
        &[("spin", "#!/bin/sh\nwhile :; do :; done\n")],
        Limits {
            cpu: Some(Duration::from_secs(1)),
            ..Limits::default()
        },
    );
    let started = Instant::now();
    let r = s.get("/cgi-bin/spin");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("--limit-cpu"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(6));
    one_line_naming(&s, "/cgi-bin/spin", "--limit-cpu");
    still_serving(&s);
}

#[test]
fn memory_hog_hits_limit_memory() {
    let s = limited(
        &[(
            "hog",
            "#!/usr/bin/env python3\nchunks = []\nfor _ in range(64):\n    chunks.append(bytearray(16 << 20))\nprint('Content-Type: text/plain\\n\\nsurvived')\n",
        )],
        Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        },
    );
    let r = s.get("/cgi-bin/hog");
    assert_eq!(r.status, 502, "{}", r.text());
    if cgroups_enforce(&s) {
        one_line_naming(&s, "/cgi-bin/hog", "--limit-memory");
    }
    still_serving(&s);
}

#[test]
fn fork_bomb_hits_limit_procs() {
    let s = limited(
        &[(
            "bomb",
            "#!/bin/sh\ni=0\nwhile [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done\nprintf 'Content-Type: text/plain\\r\\n\\r\\nall started'\n",
        )],
        Limits {
            procs: Some(10),
            ..Limits::default()
        },
    );
    if !cgroups_enforce(&s) {
        return;
    }
    let started = Instant::now();
    let r = s.get("/cgi-bin/bomb");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(8));
    one_line_naming(&s, "/cgi-bin/bomb", "--limit-procs");
    assert_eq!(s.running.as_ref().unwrap().shared().children.count(), 0);
    still_serving(&s);
}

#[test]
fn output_flood_hits_limit_output() {
    let s = limited(
        &[
            (
                "flood",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec yes\n",
            ),
            ("headless", "#!/bin/sh\nexec yes\n"),
        ],
        Limits {
            output: Some(1 << 20),
            ..Limits::default()
        },
    );
    // Headers already sent: the connection is cut, the client sees the body is short.
    let mut c = s.client();
    c.send(b"GET /cgi-bin/flood HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(!r.complete);
    assert!(r.body.len() <= 1 << 20);
    one_line_naming(&s, "/cgi-bin/flood", "--limit-output");
    // Nothing sent yet (a header block that never ends): a clean 502.
    let r = s.get("/cgi-bin/headless");
    assert_eq!(r.status, 502);
    still_serving(&s);
}

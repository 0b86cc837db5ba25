//! Soak: 64 keep-alive clients for a fixed time over a mix of normal, large-upload,
//! slow, crashing, hanging and flooding scripts in both models. Every answer is checked
//! against what its script must say (with a per-request token, so a response sent to
//! the wrong client shows), and afterwards the server's descriptors, threads, children
//! and memory must be back near where they started.
//!
//! Quick by default (for CI); a long run: `SOAK_SECS=300 cargo test --release --test soak
//! -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const APP: &str = include_str!("fixtures/fcgi_app.py");
const CLIENTS: usize = 64;

const SCRIPTS: &[(&str, &str)] = &[
    (
        "hello",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello %s\\n' \"$QUERY_STRING\"\n",
    ),
    (
        "echo",
        "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\nContent-Length: %s\\r\\n\\r\\n' \"$CONTENT_LENGTH\"\nexec cat\n",
    ),
    (
        "slow",
        "#!/bin/sh\nsleep 0.3\nprintf 'Content-Type: text/plain\\r\\n\\r\\nslow %s\\n' \"$QUERY_STRING\"\n",
    ),
    ("crash", "#!/bin/sh\nkill -SEGV $$\n"),
    ("hang", "#!/bin/sh\nexec sleep 60\n"),
    (
        "flood",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nhead -c 2097152 /dev/zero\n",
    ),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Hello,
    Upload,
    Slow,
    Crash,
    Hang,
    Flood,
    WorkerHello,
    WorkerUpload,
    WorkerBig,
    WorkerCrash,
}

/// A fixed mix: mostly cheap requests, a few of each bad kind.
fn pick(n: u64) -> Kind {
    match n % 100 {
        0..=29 => Kind::Hello,
        30..=39 => Kind::Upload,
        40..=44 => Kind::Slow,
        45..=47 => Kind::Crash,
        48 => Kind::Hang,
        49..=52 => Kind::Flood,
        53..=82 => Kind::WorkerHello,
        83..=92 => Kind::WorkerUpload,
        93..=96 => Kind::WorkerBig,
        _ => Kind::WorkerCrash,
    }
}

/// Sends one request of `kind` and says what was wrong with the answer, if anything.
fn exchange(
    c: &mut Client,
    addr: std::net::SocketAddr,
    kind: Kind,
    token: &str,
    n: u64,
) -> Result<(), String> {
    let get = |path: &str| format!("GET {path}?{token} HTTP/1.1\r\nHost: soak\r\n\r\n");
    let upload_size = if n.is_multiple_of(7) { 1 << 20 } else { 4096 };
    let body: Vec<u8> = (0..upload_size).map(|i| (i as u64 ^ n) as u8).collect();
    let post = |path: &str| {
        let mut r = format!(
            "POST {path}?{token} HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let request = match kind {
        Kind::Hello => get("/cgi-bin/hello").into_bytes(),
        Kind::Upload => post("/cgi-bin/echo"),
        Kind::Slow => get("/cgi-bin/slow").into_bytes(),
        Kind::Crash => get("/cgi-bin/crash").into_bytes(),
        Kind::Hang => get("/cgi-bin/hang").into_bytes(),
        Kind::Flood => get("/cgi-bin/flood").into_bytes(),
        Kind::WorkerHello => get("/fcgi-bin/app").into_bytes(),
        Kind::WorkerUpload => post("/fcgi-bin/app").replace_query("echo"),
        Kind::WorkerBig => b"GET /fcgi-bin/app?big=1 HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
        Kind::WorkerCrash => b"GET /fcgi-bin/app?crash HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec(),
    };
    // A keep-alive connection may be closed by the server between requests (as HTTP
    // allows); a request that could not even be sent goes on a new connection.
    if c.try_send(&request).is_err() {
        *c = Client::connect(addr);
        c.try_send(&request)
            .map_err(|e| format!("{kind:?}: send failed twice: {e}"))?;
    }
    let r = c.response();
    let want = |cond: bool, what: &str| {
        if cond {
            Ok(())
        } else {
            Err(format!(
                "{kind:?}: {what} (status {} {})",
                r.status, r.reason
            ))
        }
    };
    match kind {
        Kind::Hello => want(
            r.status == 200 && r.text() == format!("hello {token}\n"),
            "wrong or lost body",
        ),
        Kind::Slow => want(
            r.status == 200 && r.text() == format!("slow {token}\n"),
            "wrong or lost body",
        ),
        Kind::Upload | Kind::WorkerUpload => want(
            r.status == 200 && r.complete && r.body == body,
            "echo differs",
        ),
        Kind::Crash => want(r.status == 502, "crash not a 502"),
        Kind::Hang => want(r.status == 504, "hang not a 504"),
        Kind::Flood => want(
            r.status == 200 && r.complete && r.body.len() == 2 << 20,
            "flood truncated",
        ),
        Kind::WorkerHello => want(
            r.status == 200 && r.var("QUERY_STRING").as_deref() == Some(token),
            "wrong worker answer",
        ),
        Kind::WorkerBig => want(
            r.status == 200 && r.complete && r.body.len() == 1 << 20,
            "big truncated",
        ),
        // Headers may already be out when the worker dies: then the body must be short.
        Kind::WorkerCrash => want(
            r.status == 502 || (r.status == 200 && !r.complete),
            "crash passed off as complete",
        ),
    }
}

trait ReplaceQuery {
    fn replace_query(self, q: &str) -> Vec<u8>;
}

impl ReplaceQuery for Vec<u8> {
    /// `POST /fcgi-bin/app?TOKEN` → `POST /fcgi-bin/app?echo` (the app reads its query).
    fn replace_query(self, q: &str) -> Vec<u8> {
        let head_end = self.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
        let head = String::from_utf8_lossy(&self[..head_end]).into_owned();
        let (line, rest) = head.split_once("\r\n").unwrap_or((&head, ""));
        let mut parts = line.splitn(3, ' ');
        let (m, t, v) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let path = t.split('?').next().unwrap();
        let mut out = format!("{m} {path}?{q} {v}\r\n{rest}").into_bytes();
        out.extend_from_slice(&self[head_end..]);
        out
    }
}

/// What we watch of the server process: descriptors, threads, children, RSS (KiB).
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: usize,
    children: usize,
    rss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .map(|t| {
                    std::fs::read_to_string(t.path().join("children"))
                        .map_or(0, |c| c.split_whitespace().count())
                })
                .sum()
        })
        .unwrap_or(0);
    Usage {
        fds: count(format!("/proc/{pid}/fd")),
        threads: count(format!("/proc/{pid}/task")),
        children,
        rss_kib,
    }
}

/// The built server over `dir/cgi-bin`, and its address.
fn start_server(dir: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cgi-testbed"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--max-procs",
            "96",
            // Long enough that a loaded 2-core machine does not turn slow answers
            // into timeouts; the hanging script still shows the 504.
            "--timeout",
            "5s",
            "--workers-max",
            "4",
            "--worker-idle",
            "1s",
            "--grace",
            "1s",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start server");
    let addr = listening_address(&mut child);
    (child, addr)
}

#[test]
fn soak_both_models_lose_nothing_and_leak_nothing() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in SCRIPTS.iter().chain([("app", APP)].iter()) {
        write_script(&dir.path().join("cgi-bin").join(name), text);
    }
    let (mut server, addr) = start_server(dir.path());
    let pid = server.id();
    // Warm what is created lazily (worker pool, buffers) before taking the baseline.
    for n in 0..20u64 {
        let mut c = Client::connect(addr);
        let kind = if n.is_multiple_of(2) {
            Kind::WorkerHello
        } else {
            Kind::Hello
        };
        let _ = exchange(&mut c, addr, kind, "warm", n);
    }
    // Idle workers retire after --worker-idle: the baseline is a server at rest.
    eventually(Duration::from_secs(5), || usage(pid).children == 0);
    let before = usage(pid);

    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (errors, counts) = (errors.clone(), counts.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut n = id as u64 * 7919;
                let mut previous = None;
                while Instant::now() < until {
                    n += 1;
                    let kind = pick(n);
                    let token = format!("c{id}n{n}");
                    let result = exchange(&mut c, addr, kind, &token, n);
                    *counts
                        .lock()
                        .unwrap()
                        .entry(format!("{kind:?}"))
                        .or_default() += 1;
                    if let Err(e) = result {
                        let e = format!("{e} after {previous:?}");
                        *errors.lock().unwrap().entry(e).or_default() += 1;
                    }
                    previous = Some(kind);
                    // After errors and cut-off answers the server closes: reconnect.
                    if !matches!(
                        kind,
                        Kind::Hello
                            | Kind::WorkerHello
                            | Kind::Upload
                            | Kind::WorkerUpload
                            | Kind::Slow
                    ) {
                        c = Client::connect(addr);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let total: u64 = counts.lock().unwrap().values().sum();
    // Hung scripts die at their timeout, idle workers after --worker-idle.
    let settled = eventually(Duration::from_secs(15), || {
        let now = usage(pid);
        now.children <= before.children
            && now.fds <= before.fds + 4
            && now.threads <= before.threads + 4
    });
    let after = usage(pid);
    println!("soak: {secs}s, {CLIENTS} clients, {total} requests");
    println!("  by kind: {:?}", counts.lock().unwrap());
    println!("  errors: {:?}", errors.lock().unwrap());
    println!("  server before: {before:?}");
    println!("  server after:  {after:?}");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = server.wait().expect("wait");
    assert!(
        errors.lock().unwrap().is_empty(),
        "wrong answers: {:?}",
        errors.lock().unwrap()
    );
    assert!(total > 100, "too few requests to mean anything: {total}");
    assert!(
        settled,
        "did not settle: before {before:?}, after {after:?}"
    );
    assert!(
        after.rss_kib < before.rss_kib + 64 * 1024,
        "RSS {before:?} -> {after:?}"
    );
    assert!(status.success(), "server exit: {status:?}");
}

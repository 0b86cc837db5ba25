//! Waiting never holds a thread: slow readers of every kind of answer leave the server
//! serving others, and shutdown is prompt however busy the loops are.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const BIG: usize = 10 << 20;
const LOOPS: usize = 2;
/// Threads a loop's blocking pool may add (script starts, DNS, the status page).
const POOL_PER_LOOP: usize = 2;

/// These tests count this process's threads and time its loops: each runs alone.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// This process's threads: (the loops' blocking pools', all others).
fn threads_of_this_process() -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .collect()
        })
        .unwrap_or_default();
    let pools = names
        .iter()
        .filter(|n| n.trim_end().ends_with("-blocking"))
        .count();
    (pools, names.len() - pools)
}

/// Asks for `path` and then reads the answer one byte at a time, until `stop`.
fn slow_reader(addr: SocketAddr, path: &'static str, stop: Arc<AtomicBool>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut byte = [0u8; 1];
    while !stop.load(Ordering::Relaxed) {
        let _ = s.read(&mut byte);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hundred_slow_readers_of_big_answers_do_not_stop_the_server() {
    let _alone = one_at_a_time();
    let s = TestServer::with(
        &[
            ("hello", HELLO_SCRIPT),
            (
                "big",
                "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec head -c 10485760 /dev/zero\n",
            ),
        ],
        |c| {
            let root = c.cgi_dir.parent().expect("parent").join("public");
            std::fs::create_dir_all(&root).expect("mkdir");
            std::fs::write(root.join("big.bin"), vec![b'x'; BIG]).expect("big file");
            std::fs::write(root.join("small.txt"), "small\n").expect("small file");
            c.document_root = Some(root);
            c.loops = LOOPS;
        },
    );
    // Warm up (the first answers start what the server starts lazily).
    assert_eq!(s.get("/small.txt").status, 200);
    assert_eq!(s.get("/cgi-bin/hello").status, 200);
    let threads_before = threads_of_this_process();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..100)
        .map(|i| {
            let (addr, stop) = (s.addr(), stop.clone());
            let path = if i % 2 == 0 {
                "/big.bin"
            } else {
                "/cgi-bin/big"
            };
            std::thread::spawn(move || slow_reader(addr, path, stop))
        })
        .collect();
    // Let every slow reader get its answer started.
    std::thread::sleep(Duration::from_secs(1));
    let test_started = Instant::now();
    let mut worst = Duration::ZERO;
    while test_started.elapsed() < Duration::from_secs(12) {
        let round = Instant::now();
        for path in ["/small.txt", "/cgi-bin/hello"] {
            let asked = Instant::now();
            let r = s.get(path);
            let took = asked.elapsed();
            assert_eq!(r.status, 200, "{path}");
            assert!(took < Duration::from_secs(2), "{path} took {took:?}");
            worst = worst.max(took);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    eprintln!("slowest answer while 100 clients read slowly: {worst:?}");
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    let shared = s.running.as_ref().expect("running").shared();
    assert!(
        eventually(Duration::from_secs(10), || shared.children.count() == 0),
        "scripts of departed readers still running"
    );
    // No thread per connection: only the loops' small pools (where scripts start) may
    // have grown, and no further than their bound.
    let settled = || {
        let (pools, others) = threads_of_this_process();
        pools <= POOL_PER_LOOP * LOOPS && others <= threads_before.1
    };
    assert!(
        eventually(Duration::from_secs(5), settled),
        "threads (pools, others): {threads_before:?} before, {:?} after",
        threads_of_this_process()
    );
}

/// Processes whose command line mentions our temp directory or the sleep of ours.
#[test]
fn starting_scripts_never_holds_the_loop() {
    let _alone = one_at_a_time();
    // One loop. A script open for writing cannot be exec'd (ETXTBSY), and each start
    // is retried for about 100 ms: twenty of them hold whatever starts them for some
    // two seconds. A small file asked for meanwhile is answered at once, because
    // scripts start in the loop's blocking pool, not in the loop.
    let s = TestServer::with(&[("busy", HELLO_SCRIPT)], |c| {
        c.loops = 1;
        let root = c.cgi_dir.parent().expect("parent").join("www");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("small.txt"), "small\n").expect("write");
        c.document_root = Some(root);
    });
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(s.cgi_dir().join("busy"))
        .expect("open the script for writing");
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = s.addr();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /cgi-bin/busy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                c.response().status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    let small = s.get("/small.txt");
    let took = asked.elapsed();
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let busy_for = started.elapsed();
    drop(writer);
    assert_eq!(small.text(), "small\n");
    assert!(statuses.iter().all(|&st| st >= 500), "{statuses:?}");
    assert!(
        busy_for >= Duration::from_millis(900),
        "the starts were not held long enough to tell ({busy_for:?})"
    );
    assert!(
        took < Duration::from_millis(500),
        "a small file waited {took:?} while scripts were being started"
    );
    assert_eq!(
        s.get("/cgi-bin/busy").status,
        200,
        "the script runs once closed"
    );
}

fn processes_mentioning(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains(marker) || c.contains("3617")
            })
        })
        .collect()
}

#[test]
fn sigterm_with_every_loop_busy_exits_within_the_grace_and_leaves_nothing() {
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let cgi = dir.path().join("cgi-bin");
    // Not exec'd, so both the shell (its command line names our directory) and its
    // child (named by the odd duration) must go.
    write_script(&cgi.join("sleepy"), "#!/bin/sh\nsleep 3617\n");
    write_script(&cgi.join("app"), include_str!("fixtures/fcgi_app.py"));
    let log = dir.path().join("error.log");
    let (mut server, addr) = start_binary(
        &cgi,
        &log,
        &["--loops", "1", "--grace", "2s", "--timeout", "60s"],
    );
    // The loop is busy every way it can be: scripts and a worker that never answer,
    // heads that never end, and a reader that never reads.
    let mut busy: Vec<TcpStream> = Vec::new();
    for path in ["/cgi-bin/sleepy", "/cgi-bin/sleepy", "/fcgi-bin/app?hang"] {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .expect("send");
        busy.push(c);
    }
    for _ in 0..4 {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"GET /cgi-bin/sleepy HTTP/1.1\r\nHo")
            .expect("send");
        busy.push(c);
    }
    let marker = dir.path().to_str().expect("utf-8 path").to_owned();
    assert!(
        eventually(Duration::from_secs(10), || processes_mentioning(&marker)
            .len()
            >= 3),
        "scripts and worker did not start: {:?}",
        std::fs::read_to_string(&log)
    );
    let asked = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().expect("wait");
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    assert!(
        eventually(Duration::from_secs(2), || processes_mentioning(&marker)
            .is_empty()),
        "left running: {:?}",
        processes_mentioning(&marker)
    );
    drop(busy);
}

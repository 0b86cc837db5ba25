//! Every resource a client can make the server use has a bound, with a flag, a
//! default, a log line and a status when reached: open connections, running scripts
//! (lingering ones included), output spilled to disk, FastCGI workers in all pools,
//! which programs may become worker pools, and copies of small static files.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const APP: &str = include_str!("fixtures/fcgi_app.py");

#[test]
fn connections_past_max_connections_get_503_and_a_log_line() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| c.max_connections = 4);
    let mut held: Vec<Client> = (0..4).map(|_| s.client()).collect();
    // Connections are taken in the order they came, so once one of the four is
    // answered, all four are open on the server's side.
    held[0].send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(held[0].response().status, 200);
    let r = s.get("/cgi-bin/hello");
    assert_eq!(r.status, 503);
    let lines = s.log_lines_with("--max-connections 4");
    assert_eq!(lines.len(), 1, "{:#?}", s.error_log());
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut c = s.client();
            c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            c.response().status == 200
        }),
        "never served again after the connections closed"
    );
}

/// Writes its pid, answers, closes stdout and lingers for a second.
const LINGER: &str = "#!/bin/sh\necho $$ > \"$PIDS/$$\"\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\nexec >&-\nexec sleep 1\n";

#[test]
fn max_procs_counts_scripts_that_linger_after_their_answer() {
    let s = TestServer::with(&[("linger", LINGER)], |c| {
        c.max_procs = 2;
        c.proc_wait = Duration::from_secs(3);
        let pids = c.cgi_dir.parent().expect("parent").join("pids");
        std::fs::create_dir_all(&pids).expect("mkdir");
        c.env
            .push(("PIDS".into(), pids.into_os_string().into_encoded_bytes()));
    });
    let pids = s.dir.path().join("pids");
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most, pids) = (stop.clone(), most.clone(), pids.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let alive = std::fs::read_dir(&pids)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&pid| process_exists(pid))
                    .count();
                most.fetch_max(alive, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (addr, statuses) = (s.addr(), statuses.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /cgi-bin/linger HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let r = c.response();
                statuses.lock().expect("lock").push(r.status);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let shared = s.running.as_ref().expect("running").shared();
    assert!(eventually(Duration::from_secs(10), || shared
        .children
        .count()
        == 0));
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let statuses = statuses.lock().expect("lock").clone();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(ok + refused, 20, "{statuses:?}");
    assert!(ok >= 2, "{statuses:?}");
    assert!(
        most.load(Ordering::Relaxed) <= 2,
        "{} scripts alive at once with --max-procs 2",
        most.load(Ordering::Relaxed)
    );
    if refused > 0 {
        let lines = s.log_lines_with("--max-procs");
        assert_eq!(lines.len(), refused, "{:#?}", s.error_log());
        assert!(lines.iter().all(|l| l.contains(" 503 ")), "{lines:#?}");
    }
}

/// The server's resident memory plus the temp files it holds open (deleted ones
/// included), in bytes.
fn memory_and_temp_files(pid: u32) -> u64 {
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let files: u64 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("(deleted)"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    rss_kib * 1024 + files
}

#[test]
fn a_flood_to_a_client_that_trickles_its_body_spills_no_more_than_max_spill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cgi = dir.path().join("cgi-bin");
    write_script(
        &cgi.join("flood"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec yes\n",
    );
    let log = dir.path().join("error.log");
    let (mut server, addr) = start_binary(&cgi, &log, &["--timeout", "60s", "--grace", "1s"]);
    let pid = server.id();
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(b"POST /cgi-bin/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .expect("send");
    let started = Instant::now();
    let mut worst = 0;
    while started.elapsed() < Duration::from_secs(6) {
        // A byte now and then, never a read.
        let _ = c.write_all(b"x");
        worst = worst.max(memory_and_temp_files(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    server.wait().expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("most memory + temp files: {} KiB", worst / 1024);
    assert!(
        worst < 64 << 20,
        "server held {} MiB of memory and temp files\n{text}",
        worst >> 20
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("reached --max-spill 16.0 MiB"))
            .count()
            == 1,
        "{text}"
    );
}

#[test]
fn workers_total_bounds_all_pools_together() {
    let s = TestServer::with(&[("one", APP), ("two", APP)], |c| {
        c.workers.total = 1;
        c.workers.wait = Duration::from_millis(500);
    });
    let pools_alive = || s.running.as_ref().expect("running").shared().pools.total();
    assert_eq!(s.get("/fcgi-bin/one").status, 200);
    assert_eq!(pools_alive(), 1);
    // `two` finds no room, so `one`'s idle worker makes way for it.
    assert_eq!(s.get("/fcgi-bin/two").status, 200);
    assert!(pools_alive() <= 1);
    assert_eq!(
        s.log_lines_with("to make room").len(),
        1,
        "{:#?}",
        s.error_log()
    );
    // While `two`'s only worker is busy, `one` can neither start nor evict: 503.
    let addr = s.addr();
    let busy = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /fcgi-bin/two?wait=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.response().status
    });
    std::thread::sleep(Duration::from_millis(300));
    let r = s.get("/fcgi-bin/one");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(busy.join().expect("busy"), 200);
    let lines = s.log_lines_with("(--workers-total)");
    assert_eq!(lines.len(), 1, "{:#?}", s.error_log());
    assert!(lines[0].contains(" 503 "), "{lines:#?}");
    assert!(pools_alive() <= 1);
}

#[test]
fn fcgi_allow_limits_which_programs_become_pools() {
    let s = TestServer::with(&[("app", APP), ("hello", HELLO_SCRIPT)], |c| {
        c.fcgi_allow = vec!["app".into()];
    });
    assert_eq!(s.get("/fcgi-bin/app").status, 200);
    assert_eq!(s.get("/fcgi-bin/hello").status, 403);
    let lines = s.log_lines_with("--fcgi-allow");
    assert_eq!(lines.len(), 1, "{:#?}", s.error_log());
    assert!(lines[0].contains(" 403 "), "{lines:#?}");
    // The same file still runs as CGI.
    assert_eq!(s.get("/cgi-bin/hello").status, 200);
    let pools = s.running.as_ref().expect("running").shared().pools.status();
    assert!(
        pools.iter().all(|p| p.name != "/fcgi-bin/hello"),
        "{pools:?}"
    );
}

/// A server of static files under `<tmp>/www`, made by `files`, with `--file-cache`
/// at `budget` and one loop (so every request meets the same copies).
fn file_server(files: &[(&str, Vec<u8>)], budget: u64) -> TestServer {
    TestServer::with(&[], |c| {
        let root = c.cgi_dir.parent().expect("parent").join("www");
        fs::create_dir_all(&root).expect("mkdir");
        for (name, data) in files {
            fs::write(root.join(name), data).expect("write");
        }
        c.document_root = Some(root);
        c.file_cache = budget;
        c.loops = 1;
    })
}

#[test]
fn copies_of_small_files_start_over_at_file_cache_and_zero_keeps_none() {
    let big = vec![b'x'; 60_000];
    let s = file_server(&[("a.bin", big.clone()), ("b.bin", big.clone())], 100_000);
    // The second copy does not fit beside the first: the loop starts over, says so
    // once, and every answer is still whole.
    for path in ["/a.bin", "/b.bin", "/a.bin", "/b.bin"] {
        let r = s.get(path);
        assert_eq!((r.status, r.body.len()), (200, big.len()), "{path}");
    }
    let lines = s.log_lines_with("--file-cache 97.7 KiB");
    assert_eq!(lines.len(), 1, "{:#?}", s.error_log());

    // None kept: a file changed is sent changed at once.
    let s = file_server(&[("notes.txt", b"one".to_vec())], 0);
    assert_eq!(s.get("/notes.txt").text(), "one");
    fs::write(s.dir.path().join("www/notes.txt"), "two, longer").expect("write");
    assert_eq!(s.get("/notes.txt").text(), "two, longer");
    assert!(s.log_lines_with("--file-cache").is_empty());
}

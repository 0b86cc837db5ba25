//! Faults the server survives: misbehaving scripts, hostile or broken clients, running
//! out of descriptors, and shutdown with work in flight.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Load-heavy tests take turns, so one's load does not skew another's timing.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn script_closing_stdout_early_ends_the_response_then_is_reaped() {
    let _turn = heavy();
    let s = TestServer::with(&[], |c| c.timeout = Duration::from_secs(2));
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("early"),
        &format!(
            "#!/bin/sh\necho $$ > {}/pid\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndone early'\nexec 1>&-\nsleep 30\n",
            dir.display()
        ),
    );
    let started = Instant::now();
    let r = s.get("/cgi-bin/early");
    assert_eq!(r.text(), "done early");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let pid = read_pid(&dir.join("pid"));
    // Still running past its answer, it is killed at its deadline.
    assert!(eventually(Duration::from_secs(5), || !process_exists(pid)));
}

#[test]
fn a_hundred_mib_of_stderr_blocks_nothing() {
    let _turn = heavy();
    let s = TestServer::start(&[(
        "stderr100",
        "#!/usr/bin/env python3\nimport sys\nblock = (b'e' * 1023 + b'\\n') * 1024\nfor _ in range(100):\n    sys.stderr.buffer.write(block)\nsys.stdout.write('Content-Type: text/plain\\r\\n\\r\\nok')\n",
    )]);
    let started = Instant::now();
    assert_eq!(s.get("/cgi-bin/stderr100").text(), "ok");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The log holds a bounded part and says how much it dropped.
    assert!(s.error_log().len() < 2000);
}

#[test]
fn hundreds_of_hanging_scripts_all_time_out() {
    let _turn = heavy();
    let s = TestServer::with(&[("hang", "#!/bin/sh\nexec sleep 60\n")], |c| {
        c.timeout = Duration::from_secs(2);
        c.max_procs = 256;
    });
    let started = Instant::now();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let addr = s.addr();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /cgi-bin/hang HTTP/1.1\r\nHost: x\r\n\r\n");
                c.response().status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 504);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let shared = s.running.as_ref().unwrap().shared();
    assert!(eventually(Duration::from_secs(5), || shared
        .children
        .count()
        == 0));
}

#[test]
fn slowloris_does_not_delay_other_clients() {
    let _turn = heavy();
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| {
        c.head_timeout = Duration::from_secs(3);
        c.loops = 1;
    });
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(s.addr()).unwrap())
        .collect();
    let started = Instant::now();
    let head = b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n";
    let mut worst = Duration::ZERO;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(5) {
        for c in &mut slow {
            let _ = c.write_all(&head[i % head.len()..=i % head.len()]);
        }
        i += 1;
        for _ in 0..4 {
            let t = Instant::now();
            assert_eq!(s.get("/cgi-bin/hello").status, 200);
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert!(
        worst < Duration::from_secs(2),
        "a normal client waited {worst:?}"
    );
    // The head deadline closes them (with a 408 for those that sent something).
    let mut closed = 0;
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        if c.read_to_end(&mut buf).is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 500);
}

#[test]
fn client_that_never_reads_gets_its_script_killed() {
    let s = TestServer::with(&[], |c| c.timeout = Duration::from_secs(2));
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("firehose"),
        &format!(
            "#!/bin/sh\necho $$ > {}/pid\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec yes\n",
            dir.display()
        ),
    );
    let mut c = s.client();
    c.send(b"GET /cgi-bin/firehose HTTP/1.1\r\nHost: x\r\n\r\n");
    let pid = read_pid(&dir.join("pid"));
    // We never read: buffers fill, the write stalls past the timeout.
    assert!(
        eventually(Duration::from_secs(10), || !process_exists(pid)),
        "script outlived a stalled client"
    );
    drop(c);
    assert_eq!(s.running.as_ref().unwrap().shared().children.count(), 0);
}

#[test]
fn half_closed_client_is_treated_as_gone_and_nothing_leaks() {
    let s = TestServer::start(&[]);
    let dir = s.dir.path().to_path_buf();
    write_script(
        &s.cgi_dir().join("wait"),
        &format!("#!/bin/sh\necho $$ > {}/pid\nsleep 30\n", dir.display()),
    );
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"GET /cgi-bin/wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pid = read_pid(&dir.join("pid"));
    c.shutdown(Shutdown::Write).unwrap();
    // Like nginx, a client that stopped sending while its script is silent has left.
    assert!(eventually(Duration::from_secs(3), || !process_exists(pid)));
    let mut rest = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        c.read_to_end(&mut rest).is_ok(),
        "connection closed cleanly"
    );
}

#[test]
fn pipelined_requests_split_at_every_byte() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    let two = b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\nGET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for split in 1..two.len() {
        let mut c = s.client();
        c.stream.write_all(&two[..split]).unwrap();
        c.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1));
        c.stream.write_all(&two[split..]).unwrap();
        assert_eq!(c.response().text(), "hello\n", "split {split}");
        assert_eq!(c.response().text(), "hello\n", "split {split}");
    }
}

/// The binary with a low descriptor limit, its address.
fn start_with_nofile(limit: u64, dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgi-testbed"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap());
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let addr = listening_address(&mut child);
    (child, addr)
}

#[test]
fn running_out_of_descriptors_answers_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    write_script(&dir.path().join("cgi-bin/hello"), HELLO_SCRIPT);
    let (mut server, addr) = start_with_nofile(64, dir.path());
    let hogs: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    // Past the limit the server must not hang: either a 503 or a clean close.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || text.starts_with("HTTP/1.1 503"), "{text}");
    drop(hogs);
    drop(c);
    // Descriptors come back: normal service resumes.
    let ok = eventually(Duration::from_secs(10), || {
        let Ok(stream) = TcpStream::connect(addr) else {
            return false;
        };
        let mut c = Client::from_stream(stream);
        c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.response().status == 200
    });
    let alive = server.try_wait().map(|s| s.is_none()).unwrap_or(false);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(15).collect();
    assert!(
        ok,
        "the server did not recover once descriptors were free (alive: {alive}, exit {status:?}); its log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish_within_the_grace() {
    let _turn = heavy();
    let dir = tempfile::tempdir().unwrap();
    write_script(
        &dir.path().join("cgi-bin/slow"),
        "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nfinished'\n",
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_cgi-testbed"))
        .args(["--listen", "127.0.0.1:0", "--grace", "5s"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = listening_address(&mut server);
    let mut c = Client::connect(addr);
    c.send(b"GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    assert!(server.wait().unwrap().success());
    // New connections are refused once it stopped listening.
    assert!(TcpStream::connect(addr).is_err());
}

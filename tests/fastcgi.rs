//! The persistent-worker model over real FastCGI: worker reuse and recycling, faults,
//! external backends, and the same programs under /cgi-bin/ and /fcgi-bin/.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cgi_testbed::fastcgi::external::Address;
use common::*;

const APP: &str = include_str!("fixtures/fcgi_app.py");

fn app_server(tune: impl FnOnce(&mut cgi_testbed::Config)) -> TestServer {
    TestServer::with(
        &[("app", APP), ("env", ENV_SCRIPT), ("hello", HELLO_SCRIPT)],
        tune,
    )
}

fn pid_of(r: &Response) -> u32 {
    r.var("pid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {:?}", r.text()))
}

fn served_of(r: &Response) -> u32 {
    r.var("served")
        .and_then(|p| p.parse().ok())
        .expect("served")
}

#[test]
fn worker_is_reused_across_requests_and_connections() {
    let s = app_server(|c| c.workers.max = 1);
    let first = s.get("/fcgi-bin/app");
    assert_eq!(first.status, 200);
    let mut c = s.client();
    for n in 2..=4 {
        c.send(b"GET /fcgi-bin/app HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.response();
        assert_eq!(pid_of(&r), pid_of(&first), "same process");
        assert_eq!(served_of(&r), n);
    }
}

#[test]
fn params_are_the_cgi_meta_variables_plus_script_filename() {
    let s = app_server(|c| c.env = vec![("APP_MODE".into(), b"pooled".to_vec())]);
    let fcgi = s.exchange(b"POST /fcgi-bin/app/a%20b?x=1 HTTP/1.1\r\nHost: h:81\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-Thing: t\r\nConnection: close\r\n\r\nabc");
    let cgi = s.exchange(b"POST /cgi-bin/env/a%20b?x=1 HTTP/1.1\r\nHost: h:81\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-Thing: t\r\nConnection: close\r\n\r\nabc");
    for name in [
        "GATEWAY_INTERFACE",
        "SERVER_SOFTWARE",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REQUEST_METHOD",
        "QUERY_STRING",
        "PATH_INFO",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "HTTP_X_THING",
        "REMOTE_ADDR",
        "DOCUMENT_ROOT",
        "REDIRECT_STATUS",
        "APP_MODE",
    ] {
        assert_eq!(fcgi.var(name), cgi.var(name), "{name}");
        assert!(fcgi.var(name).is_some(), "{name} missing");
    }
    assert_eq!(fcgi.var("SCRIPT_NAME").as_deref(), Some("/fcgi-bin/app"));
    let dir = std::fs::canonicalize(s.cgi_dir()).unwrap();
    assert_eq!(
        fcgi.var("SCRIPT_FILENAME"),
        Some(dir.join("app").display().to_string())
    );
    // The worker's own environment: clean, --env, and php-cgi kept from forking.
    assert_eq!(fcgi.var("ENV_PHP_FCGI_CHILDREN").as_deref(), Some("0"));
    assert_eq!(fcgi.var("ENV_APP_MODE").as_deref(), Some("pooled"));
}

#[test]
fn max_requests_recycles_workers() {
    let s = app_server(|c| {
        c.workers.max_requests = 2;
        c.workers.max = 1;
    });
    let pids: Vec<u32> = (0..4).map(|_| pid_of(&s.get("/fcgi-bin/app"))).collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2], "recycled after 2 requests");
    assert_eq!(pids[2], pids[3], "{:#?}", s.error_log());
    assert!(eventually(Duration::from_secs(5), || !process_exists(
        pids[0]
    )));
}

/// The scheduling policy of a process: field 41 of /proc/PID/stat.
fn sched_policy(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields from the third on follow the command name, which may hold spaces.
    let rest = &stat[stat.rfind(") ").expect("comm") + 2..];
    rest.split(' ')
        .nth(41 - 3)
        .and_then(|f| f.parse().ok())
        .expect("policy")
}

#[test]
fn workers_run_under_sched_batch_unless_told_otherwise_and_scripts_keep_ours() {
    const POLICY: &str =
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\ncut -d' ' -f41 /proc/$$/stat\n";
    // The server runs in this process, so its policy is this test's.
    let ours = sched_policy(std::process::id());
    assert_ne!(ours, libc::SCHED_BATCH, "run the tests under SCHED_OTHER");
    let s = TestServer::with(&[("app", APP), ("policy", POLICY)], |_| {});
    let worker = pid_of(&s.get("/fcgi-bin/app"));
    assert_eq!(sched_policy(worker), libc::SCHED_BATCH);
    assert_eq!(s.get("/cgi-bin/policy").text().trim(), ours.to_string());
    let s = TestServer::with(&[("app", APP)], |c| {
        c.workers.sched = cgi_testbed::spawn::WorkerSched::Normal
    });
    let worker = pid_of(&s.get("/fcgi-bin/app"));
    assert_eq!(sched_policy(worker), ours);
}

#[test]
fn idle_workers_retire() {
    let s = app_server(|c| c.workers.idle = Duration::from_millis(300));
    let first = pid_of(&s.get("/fcgi-bin/app"));
    assert!(
        eventually(Duration::from_secs(5), || !process_exists(first)),
        "idle worker kept"
    );
    let second = pid_of(&s.get("/fcgi-bin/app"));
    assert_ne!(first, second);
}

#[test]
fn min_workers_stay_warm() {
    let s = app_server(|c| {
        c.workers.min = 1;
        c.workers.idle = Duration::from_millis(200);
    });
    let first = pid_of(&s.get("/fcgi-bin/app"));
    std::thread::sleep(Duration::from_millis(800));
    assert!(process_exists(first), "the minimum was retired");
    assert_eq!(pid_of(&s.get("/fcgi-bin/app")), first);
}

#[test]
fn worker_killed_mid_request_is_502_and_the_next_request_is_served() {
    let s = app_server(|_| {});
    let before = pid_of(&s.get("/fcgi-bin/app"));
    let mut c = s.client();
    c.send(b"GET /fcgi-bin/app?crash HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    // Headers were already on their way: the client must be able to tell.
    assert!(
        r.status == 502 || !r.complete,
        "{} complete={}",
        r.status,
        r.complete
    );
    let after = s.get("/fcgi-bin/app");
    assert_eq!(after.status, 200);
    assert_ne!(pid_of(&after), before);
}

#[test]
fn worker_dying_before_answering_is_502_never_replayed() {
    let s = app_server(|_| {});
    s.get("/fcgi-bin/app");
    let r = s.get("/fcgi-bin/app?die");
    assert_eq!(r.status, 502);
    assert_eq!(s.get("/fcgi-bin/app").status, 200);
}

#[test]
fn worker_that_exits_after_answering_is_replaced_transparently() {
    // php-cgi does this after PHP_FCGI_MAX_REQUESTS: the kept connection dies
    // between requests, and the next request must simply go to a new worker. (A
    // close that races the next request's write cannot be told from a worker dying
    // on it, so that one is a 502, as with mod_fcgid; hence the pause here.)
    let s = app_server(|c| c.workers.max = 1);
    let mut c = s.client();
    let mut pids = Vec::new();
    for query in ["", "?last", "", "?last", ""] {
        c.send(format!("GET /fcgi-bin/app{query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert_eq!(
            r.header("connection"),
            None,
            "the client's connection stays open"
        );
        pids.push(pid_of(&r));
        if query == "?last" {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2], "a new worker after the exit");
    assert_ne!(pids[3], pids[4]);
    assert!(
        s.error_log().iter().all(|l| !l.contains(" 502 ")),
        "{:#?}",
        s.error_log()
    );
}

#[test]
fn hung_worker_is_504_and_replaced() {
    let s = app_server(|c| c.timeout = Duration::from_secs(1));
    let before = pid_of(&s.get("/fcgi-bin/app"));
    let started = Instant::now();
    assert_eq!(s.get("/fcgi-bin/app?hang").status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(5), || !process_exists(before)),
        "hung worker left running"
    );
    assert_eq!(s.get("/fcgi-bin/app").status, 200);
}

#[test]
fn a_cgi_script_under_fcgi_bin_is_a_clear_502_without_a_respawn_storm() {
    let s = app_server(|_| {});
    let r = s.get("/fcgi-bin/hello");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("CGI script"), "{}", r.text());
    // During the back-off a request is told at once to come back later (RFC 9110
    // §15.6.4), rather than wait or start the program again.
    for _ in 0..10 {
        let r = s.get("/fcgi-bin/hello");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("not restarting"), "{}", r.text());
        let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&after), "{after}");
    }
    let pools = s.running.as_ref().unwrap().shared().pools.status();
    let hello = pools.iter().find(|p| p.name == "/fcgi-bin/hello").unwrap();
    assert_eq!(hello.spawned, 1, "respawned during the back-off");
    // The same file still runs fine as CGI.
    assert_eq!(s.get("/cgi-bin/hello").status, 200);
}

#[test]
fn pool_exhaustion_is_503_after_the_wait_bound() {
    let s = app_server(|c| {
        c.workers.max = 1;
        c.workers.wait = Duration::from_millis(300);
    });
    let addr = s.addr();
    let busy = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /fcgi-bin/app?wait=2 HTTP/1.1\r\nHost: x\r\n\r\n");
        c.response().text()
    });
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(s.get("/fcgi-bin/app").status, 503);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(busy.join().unwrap(), "waited\n");
}

#[test]
fn client_disconnect_aborts_the_request_and_the_worker_carries_on() {
    let s = app_server(|c| c.workers.max = 1);
    let before = pid_of(&s.get("/fcgi-bin/app"));
    let mut c = s.client();
    c.send(b"GET /fcgi-bin/app?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let after = s.get("/fcgi-bin/app");
    assert_eq!(
        pid_of(&after),
        before,
        "the worker answered ABORT_REQUEST and was kept"
    );
}

#[test]
fn every_end_request_protocol_status_is_handled() {
    let s = app_server(|c| c.workers.max = 1);
    for (status, http, needle) in [
        (2, 503, "overloaded"),
        (1, 502, "FCGI_CANT_MPX_CONN"),
        (3, 502, "FCGI_UNKNOWN_ROLE"),
    ] {
        let r = s.get(&format!("/fcgi-bin/app?status={status}"));
        assert_eq!(r.status, http, "protocol status {status}");
        assert!(
            eventually(Duration::from_secs(2), || !s
                .log_lines_with(needle)
                .is_empty()),
            "no log line naming {needle}: {:#?}",
            s.error_log()
        );
    }
    // The connection is still in step afterwards: the next request is served.
    assert_eq!(s.get("/fcgi-bin/app").status, 200);
}

#[test]
fn stderr_records_go_to_the_log() {
    let s = app_server(|_| {});
    assert_eq!(s.get("/fcgi-bin/app?stderr").status, 200);
    assert!(eventually(Duration::from_secs(2), || s
        .log_lines_with("a line for the log")
        .len()
        == 1));
}

#[test]
fn large_upload_and_download_keep_memory_bounded() {
    let s = app_server(|_| {});
    s.get("/fcgi-bin/app");
    let rss = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rss();
    let mut c = s.client();
    c.send(
        format!(
            "POST /fcgi-bin/app?echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            40 << 20
        )
        .as_bytes(),
    );
    let mut w = c.stream.try_clone().unwrap();
    // Sent in pieces so the test itself never holds the body.
    let writer = std::thread::spawn(move || {
        let piece = [b'u'; 1 << 16];
        for _ in 0..640 {
            w.write_all(&piece).unwrap();
        }
    });
    // Read the echo straight off the socket, counting, so the test keeps no copy.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut head_seen = false;
    let mut acc = Vec::new();
    while got < (40 << 20) {
        let n = c.read_some(&mut buf);
        assert!(
            n > 0,
            "connection closed after {got} bytes: {:#?}",
            s.error_log()
        );
        if head_seen {
            got += n;
        } else {
            acc.extend_from_slice(&buf[..n]);
            if let Some(i) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                head_seen = true;
                got += acc.len() - i - 4;
            }
        }
    }
    writer.join().unwrap();
    let grown = rss().saturating_sub(before);
    assert!(grown < 48 * 1024, "RSS grew {grown} KiB for a 40 MiB echo");
    let r = s.get("/fcgi-bin/app?big=30");
    assert_eq!(r.body.len(), 30 << 20);
}

/// Starts the fixture app as an external FastCGI server on a unix socket.
fn external_app(dir: &Path, name: &str) -> (std::process::Child, std::path::PathBuf) {
    let app = dir.join("external_app.py");
    write_script(&app, APP);
    let sock = dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&sock).unwrap();
    let child = Command::new(&app)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (child, sock)
}

#[test]
fn external_backends_in_turn_and_down_ones_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, sock_a) = external_app(tmp.path(), "a");
    let (mut b, sock_b) = external_app(tmp.path(), "b");
    let down = tmp.path().join("down.sock");
    let s = app_server(|c| {
        c.fastcgi = vec![
            ("php".into(), Address::Unix(sock_a.clone())),
            ("php".into(), Address::Unix(down.clone())),
            ("php".into(), Address::Unix(sock_b.clone())),
        ];
    });
    let mut pids = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = s.get("/fcgi-bin/php/extra?q=1");
        assert_eq!(r.status, 200);
        assert_eq!(r.var("SCRIPT_NAME").as_deref(), Some("/fcgi-bin/php"));
        assert_eq!(r.var("PATH_INFO").as_deref(), Some("/extra"));
        let dir = std::fs::canonicalize(s.cgi_dir()).unwrap();
        assert_eq!(
            r.var("SCRIPT_FILENAME"),
            Some(dir.join("php").display().to_string())
        );
        pids.insert(pid_of(&r));
    }
    assert_eq!(pids.len(), 2, "both live backends used");
    assert_eq!(
        s.log_lines_with("down.sock").len(),
        1,
        "down backend logged once and skipped"
    );
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = (a.wait(), b.wait());
}

#[test]
fn external_backend_down_is_502_with_a_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = app_server(|c| {
        c.fastcgi = vec![("gone".into(), Address::Unix(tmp.path().join("none.sock")))]
    });
    assert_eq!(s.get("/fcgi-bin/gone").status, 502);
    assert!(!s.log_lines_with("backend unix:").is_empty());
}

#[test]
fn shutdown_leaves_no_worker_behind() {
    let mut s = app_server(|c| c.shutdown_grace = Duration::from_millis(500));
    let pid = pid_of(&s.get("/fcgi-bin/app"));
    let addr = s.addr();
    let hanging = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /fcgi-bin/app?hang HTTP/1.1\r\nHost: x\r\n\r\n");
        c.response().status
    });
    std::thread::sleep(Duration::from_millis(300));
    s.stop();
    let _ = hanging.join();
    assert!(
        eventually(Duration::from_secs(5), || !process_exists(pid)),
        "worker survived the server"
    );
}

/// Same program, both models: the bodies agree apart from pid, count and mode.
fn both_models_agree(s: &TestServer, name: &str) {
    let strip = |r: &Response| -> String {
        r.text()
            .lines()
            .filter(|l| {
                !l.starts_with("pid:") && !l.starts_with("requests:") && !l.starts_with("mode:")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cgi = s.get(&format!("/cgi-bin/{name}?a=1"));
    let fcgi = s.get(&format!("/fcgi-bin/{name}?a=1"));
    assert_eq!(
        (cgi.status, fcgi.status),
        (200, 200),
        "{name}: {} / {}",
        cgi.text(),
        fcgi.text()
    );
    assert_eq!(strip(&cgi), strip(&fcgi), "{name}");
    assert_eq!(
        cgi.header("content-type"),
        fcgi.header("content-type"),
        "{name}"
    );
    assert_eq!(cgi.var("mode: cgi"), None);
    assert!(
        cgi.text().contains("mode: cgi") && fcgi.text().contains("mode: fastcgi"),
        "{name}"
    );
    let again = s.get(&format!("/fcgi-bin/{name}?a=1"));
    let line = |r: &Response, key: &str| {
        r.text()
            .lines()
            .find(|l| l.starts_with(key))
            .map(str::to_owned)
    };
    assert_eq!(
        line(&again, "pid:"),
        line(&fcgi, "pid:"),
        "{name}: worker reused"
    );
    assert_eq!(
        line(&again, "requests:").as_deref(),
        Some("requests: 2"),
        "{name}"
    );
}

/// One worker per pool, so "the same process answered" cannot depend on timing.
fn one_worker(scripts: &[(&str, &str)]) -> TestServer {
    TestServer::with(scripts, |c| c.workers.max = 1)
}

fn bundled(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("cgi-bin")
            .join(name),
    )
    .unwrap()
}

#[test]
fn hello_rs_runs_under_both_models() {
    let s = one_worker(&[]);
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("cgi-bin/hello-rs");
    std::fs::copy(&bin, s.cgi_dir().join("hello-rs")).unwrap();
    both_models_agree(&s, "hello-rs");
}

fn php_cgi() -> bool {
    peer(
        command_works("php-cgi", &["-v"]),
        "php-cgi (Debian: apt-get install php-cgi)",
    )
}

#[test]
fn php_runs_under_both_models() {
    if !php_cgi() {
        return;
    }
    let s = one_worker(&[("hello.php", &bundled("hello.php"))]);
    both_models_agree(&s, "hello.php");
}

#[test]
fn perl_fcgi_runs_under_both_models() {
    if !peer(
        command_works("perl", &["-MFCGI", "-e1"]),
        "Perl's FCGI module (Debian: apt-get install libfcgi-perl)",
    ) {
        return;
    }
    let s = one_worker(&[("hello.fcgi.pl", &bundled("hello.fcgi.pl"))]);
    both_models_agree(&s, "hello.fcgi.pl");
}

#[test]
fn wsgi_app_runs_under_both_models() {
    if !peer(
        command_works("/usr/bin/python3", &["-c", "import flup"]),
        "flup for /usr/bin/python3 (python3 -m pip install flup)",
    ) {
        return;
    }
    let s = one_worker(&[("wsgi_app.py", &bundled("wsgi_app.py"))]);
    both_models_agree(&s, "wsgi_app.py");
}

#[test]
fn php_exiting_after_its_max_requests_is_transparent() {
    if !php_cgi() {
        return;
    }
    let s = TestServer::with(&[("hello.php", &bundled("hello.php"))], |c| {
        c.workers.max = 1;
        c.env = vec![("PHP_FCGI_MAX_REQUESTS".into(), b"3".to_vec())];
    });
    let mut c = s.client();
    let mut pids = std::collections::BTreeSet::new();
    for n in 1..=10 {
        c.send(b"GET /fcgi-bin/hello.php HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200, "{:#?}", s.error_log());
        pids.insert(r.text().lines().nth(1).unwrap_or("").to_owned());
        if n % 3 == 0 {
            // php-cgi is on its way out; give it the moment it takes (see above).
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert!(
        pids.len() >= 3,
        "php-cgi should have been replaced: {pids:?}"
    );
}

#[test]
fn the_pool_grows_while_requests_queue() {
    // Eight clients of quick requests: each worker is free again within milliseconds,
    // but requests keep queueing, so the pool must grow rather than feed everyone
    // through one worker.
    let s = app_server(|c| c.workers.max = 4);
    assert_eq!(
        s.get("/fcgi-bin/app").status,
        200,
        "one warm worker to start with"
    );
    let addr = s.addr();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..40 {
                    c.send(b"GET /fcgi-bin/app HTTP/1.1\r\nHost: x\r\n\r\n");
                    assert_eq!(c.response().status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let pools = s.running.as_ref().unwrap().shared().pools.status();
    assert!(pools[0].spawned >= 3, "{pools:?}");
}

#[test]
fn a_program_failing_as_a_worker_backs_off_and_requests_get_503_at_once() {
    // Not a FastCGI program, kept warm by --workers-min 1: before the back-off this
    // was started nine times for requests at 0, 2 and 4 s.
    let s = app_server(|c| c.workers.min = 1);
    let mut statuses = Vec::new();
    let started = Instant::now();
    for at in [0u64, 2, 4] {
        std::thread::sleep(
            (started + Duration::from_secs(at)).saturating_duration_since(Instant::now()),
        );
        let asked = Instant::now();
        let r = s.get("/fcgi-bin/hello");
        statuses.push(r.status);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "{r:?}");
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "a 503 must not wait"
            );
        }
    }
    assert!(
        statuses.iter().all(|&s| s == 502 || s == 503),
        "{statuses:?}"
    );
    let pools = s.running.as_ref().unwrap().shared().pools.status();
    let hello = pools.iter().find(|p| p.name == "/fcgi-bin/hello").unwrap();
    assert!(hello.spawned <= 5, "started {} times", hello.spawned);
}

#[test]
fn a_worker_dying_at_start_shows_its_last_words_to_a_local_client() {
    let s = TestServer::start(&[(
        "noflup",
        "#!/bin/sh\necho 'starting' >&2\necho 'FastCGI mode needs flup' >&2\nexit 1\n",
    )]);
    let r = s.get("/fcgi-bin/noflup");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("FastCGI mode needs flup"), "{}", r.text());
    assert!(
        !s.log_lines_with("FastCGI mode needs flup").is_empty(),
        "{:#?}",
        s.error_log()
    );
}

#[test]
fn warm_workers_that_drop_an_unused_connection_are_connected_again_not_replaced() {
    // libfcgi closes a new unix-socket connection that brings no request within two
    // seconds; a worker kept warm by --workers-min must not be taken for dead then.
    let s = app_server(|c| {
        c.workers.min = 3;
        c.workers.max = 3;
        c.env.push(("DROP_IDLE".into(), b"0.3".to_vec()));
    });
    assert_eq!(s.get("/fcgi-bin/app").status, 200);
    let pools = || s.running.as_ref().unwrap().shared().pools.status();
    assert!(eventually(Duration::from_secs(5), || pools()[0]
        .workers
        .len()
        == 3));
    // Well past the workers' patience, and past a few sweeps.
    std::thread::sleep(Duration::from_millis(1500));
    let addr = s.addr();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.send(b"GET /fcgi-bin/app?wait=0.2 HTTP/1.1\r\nHost: x\r\n\r\n");
                c.response().status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let p = &pools()[0];
    assert_eq!((p.spawned, p.failures), (3, 0), "{p:?}");
    assert!(
        s.log_lines_with("worker failed").is_empty(),
        "{:#?}",
        s.error_log()
    );
}

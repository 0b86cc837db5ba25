//! The built binary: its command line, the `listening on` line, signals, and the
//! bundled cgi-bin as a new user meets it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cgi-testbed");

/// Starts the binary with `args` and returns it with the address it printed.
fn start(args: &[&str], dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("SECRET_TOKEN", "do-not-leak")
        .env("PASSED_ON", "yes")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start binary");
    let addr = listening_address(&mut child);
    (child, addr)
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait")
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = Client::connect(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    c.response()
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("cgi-testbed {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--cgi-dir",
        "--loops",
        "--head-timeout",
        "--keepalive-timeout",
        "--body-timeout",
        "--send-timeout",
        "--min-send-rate",
        "--max-connections",
        "--max-spill",
        "--file-cache",
        "--workers-total",
        "--fcgi-allow",
        "--timeout",
        "--max-body",
        "--max-header",
        "--max-procs",
        "--env",
        "--pass-env",
        "--interpreter",
        "--pass-authorization",
        "--spawn",
        "--access-log",
        "Examples:",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = Command::new(BIN)
        .args(["--timeout", "30"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn serves_the_bundled_cgi_bin_from_the_project_directory() {
    let (mut child, addr) = start(
        &["--listen", "127.0.0.1:0"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    let r = get(addr, "/cgi-bin/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    let r = get(addr, "/cgi-bin/env");
    assert_eq!(
        r.var("SERVER_SOFTWARE"),
        Some(format!("cgi-testbed/{}", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(r.var("SECRET_TOKEN"), None, "server environment leaked");
    let r = get(addr, "/cgi-bin/status");
    assert_eq!((r.status, r.reason.as_str()), (299, "Custom Reason"));
    let r = get(addr, "/cgi-bin/redirect");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, world!\n"));
    let r = get(addr, "/cgi-bin/redirect?to=client");
    assert_eq!(r.status, 302);
    let r = get(addr, "/cgi-bin/form.py");
    assert!(r.text().contains("<form method=\"post\""));
    let r = get(addr, "/cgi-bin/hello-rs?x=1");
    assert!(r.text().starts_with("Hello from Rust"), "{}", r.text());
    let mut c = Client::connect(addr);
    c.send(b"GET /cgi-bin/nph-hello HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert!(r.text().contains("NPH"));
    assert!(stop(&mut child).success());
}

#[test]
fn env_and_pass_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    write_script(&dir.path().join("cgi-bin/env"), ENV_SCRIPT);
    let (mut child, addr) = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--env",
            "MODE=demo",
            "--pass-env",
            "PASSED_ON",
            "--pass-env",
            "NOT_SET_ANYWHERE",
        ],
        dir.path(),
    );
    let r = get(addr, "/cgi-bin/env");
    assert_eq!(r.var("MODE").as_deref(), Some("demo"));
    assert_eq!(r.var("PASSED_ON").as_deref(), Some("yes"));
    assert_eq!(r.var("NOT_SET_ANYWHERE"), None);
    assert_eq!(r.var("SECRET_TOKEN"), None);
    stop(&mut child);
}

#[test]
fn sigterm_stops_cleanly_with_no_script_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    write_script(
        &dir.path().join("cgi-bin/hang"),
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            pidfile.display()
        ),
    );
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0", "--grace", "500ms"], dir.path());
    let mut c = Client::connect(addr);
    c.send(b"GET /cgi-bin/hang HTTP/1.1\r\nHost: x\r\n\r\n");
    let script = read_pid(&pidfile);
    assert!(process_exists(script));
    let status = stop(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(
        eventually(Duration::from_secs(2), || !process_exists(script)),
        "script outlived the server"
    );
}

#[test]
fn sigint_stops_it_too() {
    let dir = tempfile::tempdir().unwrap();
    write_script(&dir.path().join("cgi-bin/hello"), HELLO_SCRIPT);
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0"], dir.path());
    assert_eq!(get(addr, "/cgi-bin/hello").status, 200);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn fork_spawn_flag_and_access_log_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    write_script(&dir.path().join("cgi-bin/hello"), HELLO_SCRIPT);
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--spawn",
            "fork",
            "--access-log",
            "-",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .trim_start_matches("listening on http://")
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/cgi-bin/hello").text(), "hello\n");
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"GET /cgi-bin/hello HTTP/1.1\" 200 6"),
        "{line}"
    );
    stop(&mut child);
}

#[test]
fn missing_cgi_dir_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--cgi-dir", "nowhere"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn root_alone_serves_a_python_http_server_cgi_tree() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("cgi-bin")).unwrap();
    std::fs::write(site.join("index.html"), "<p>static</p>\n").unwrap();
    write_script(&site.join("cgi-bin/hello"), HELLO_SCRIPT);
    write_script(&site.join("htbin/env"), ENV_SCRIPT);
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0", "--root", "site"], dir.path());
    assert_eq!(get(addr, "/").text(), "<p>static</p>\n");
    assert_eq!(get(addr, "/cgi-bin/hello").text(), "hello\n");
    let env = get(addr, "/htbin/env");
    let root = std::fs::canonicalize(&site).unwrap();
    assert_eq!(env.var("DOCUMENT_ROOT"), Some(root.display().to_string()));
    assert!(stop(&mut child).success());
}

#[test]
fn public_is_served_by_default_beside_cgi_bin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("public/a.txt"), "from public\n").unwrap();
    write_script(&dir.path().join("cgi-bin/hello"), HELLO_SCRIPT);
    let (mut child, addr) = start(&["--listen", "127.0.0.1:0"], dir.path());
    assert_eq!(get(addr, "/a.txt").text(), "from public\n");
    assert_eq!(get(addr, "/cgi-bin/hello").text(), "hello\n");
    // No index.html in public/: the landing page lists the scripts.
    assert!(get(addr, "/").text().contains("href=\"/cgi-bin/hello\""));
    assert!(stop(&mut child).success());
}

#[test]
fn static_options_are_checked_at_startup() {
    for args in [
        &["--try-files", "$uri nowhere"][..],
        &["--try-files", "$uri /cgi-bin/app?x=1"][..],
        &["--status-allow", "10.0.0.0/40"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--root", "--try-files", "--no-status", "--status-allow"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Reads its own signal state: `exec` makes the reader the very process the server
/// started, so what it shows is what the script got.
const SIGNALS_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec grep '^Sig' /proc/self/status\n";
/// Not a FastCGI program: it writes the same to stderr, which the server logs, and exits.
const SIGNALS_WORKER: &str = "#!/bin/sh\nexec grep '^Sig' /proc/self/status >&2\n";

/// Signal numbers set in a `SigXxx:` mask of /proc/PID/status.
fn signal_set(status: &str, field: &str) -> Vec<u32> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("{field} missing in {status}"));
    let bits = u64::from_str_radix(hex.trim().trim_start_matches("\\t"), 16).expect("hex mask");
    (1..=64).filter(|s| bits & (1 << (s - 1)) != 0).collect()
}

#[test]
fn scripts_and_workers_start_with_clean_signals_whatever_the_server_inherited() {
    for mode in ["posix-spawn", "fork"] {
        let dir = tempfile::tempdir().unwrap();
        write_script(&dir.path().join("cgi-bin/sigs"), SIGNALS_SCRIPT);
        write_script(&dir.path().join("cgi-bin/wsigs"), SIGNALS_WORKER);
        let log = dir.path().join("server.log");
        // As under nohup or in a shell's background job: SIGINT and SIGHUP ignored.
        let mut child = Command::new("/bin/sh")
            .args(["-c", "trap '' INT HUP; exec \"$0\" \"$@\"", BIN])
            .args(["--listen", "127.0.0.1:0", "--spawn", mode])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start binary");
        let addr: SocketAddr = listening_address(&mut child);
        let server = || std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let ignored = signal_set(&server(), "SigIgn:");
        assert!(
            ignored.contains(&1) && ignored.contains(&2),
            "the server should run with SIGHUP and SIGINT ignored: {ignored:?}"
        );
        // And it blocks SIGINT and SIGTERM itself (a thread waits for them). While it
        // starts its threads the main thread briefly blocks everything (glibc does
        // around clone), so look until it has settled.
        let mut blocked = Vec::new();
        let settled = (0..100).any(|_| {
            blocked = signal_set(&server(), "SigBlk:");
            std::thread::sleep(std::time::Duration::from_millis(20));
            blocked == [2, 15]
        });
        assert!(settled, "{blocked:?}");

        let r = get(addr, "/cgi-bin/sigs");
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        assert_eq!(
            signal_set(&r.text(), "SigBlk:"),
            [0u32; 0],
            "{mode}: blocked"
        );
        assert_eq!(
            signal_set(&r.text(), "SigIgn:"),
            [0u32; 0],
            "{mode}: ignored"
        );

        // A worker: not FastCGI, so it fails, but its stderr is in the log first.
        assert_eq!(get(addr, "/fcgi-bin/wsigs").status, 502, "{mode}");
        let mut logged = String::new();
        assert!(
            eventually(Duration::from_secs(5), || {
                logged = std::fs::read_to_string(&log).unwrap_or_default();
                logged.contains("stderr: SigBlk:") && logged.contains("stderr: SigIgn:")
            }),
            "{mode}: worker's signals not logged: {logged}"
        );
        stop(&mut child);
        for field in ["SigBlk:", "SigIgn:"] {
            for l in logged
                .lines()
                .filter(|l| l.contains(&format!("stderr: {field}")))
            {
                let status = l.split("stderr: ").nth(1).unwrap();
                assert_eq!(signal_set(status, field), [0u32; 0], "{mode}: worker: {l}");
            }
        }
    }
}

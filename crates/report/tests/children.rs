//! The servers the report starts are its children, and none outlives it: the
//! `cgi-testbed-report` binary is run as a user runs it, every process below it is
//! noted while it runs, and after it exits (at the end, or on Ctrl-C) none of them
//! may be left.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgi_testbed_report::procfs;

/// Runs the report binary, its scratch directory under `dir/tmp` (TMPDIR), so every
/// process it starts names that directory on its command line.
fn report(dir: &Path, args: &[&str]) -> Child {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = dir.join("out");
    Command::new(env!("CARGO_BIN_EXE_cgi-testbed-report"))
        .env("TMPDIR", &tmp)
        .args(["--languages", "sh", "--concurrency", "1", "--parents", "0"])
        .arg("--out")
        .arg(&out)
        .arg("--server")
        .arg(common::server().path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A process: its pid and start time (pids are reused, here after 32768).
type Seen = HashSet<(i32, u64)>;

/// When `pid` started (clock ticks since boot), if it exists.
fn started(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Notes every process below `child` until it exits or `until` says stop; returns
/// them with the exit status (if it exited).
fn watch(
    child: &mut Child,
    limit: Duration,
    mut until: impl FnMut(&Seen) -> bool,
) -> (Seen, Option<std::process::ExitStatus>) {
    let me = child.id() as i32;
    let mut seen = Seen::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (seen, Some(status));
        }
        for pid in procfs::tree_by_children(&[me]) {
            if let Some(t) = started(pid).filter(|_| pid != me) {
                seen.insert((pid, t));
            }
        }
        if until(&seen) {
            return (seen, None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (seen, None)
}

/// Processes whose command line names `dir`, wherever they are now (a server the
/// report started but never saw stopped is reparented, and may not have been seen).
fn naming(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<i32>().is_ok())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some(cmd)
        })
        .collect()
}

/// Which of `seen` still exist (the same pid, started at the same time).
fn left(seen: &Seen) -> Vec<(i32, String)> {
    seen.iter()
        .filter(|&&(p, t)| started(p) == Some(t))
        .filter_map(|&(p, _)| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            Some((p, stat))
        })
        .collect()
}

#[test]
fn a_finished_report_leaves_no_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = report(
        dir.path(),
        &["--quick", "--requests", "20", "--repeat", "1"],
    );
    let (seen, status) = watch(&mut r, Duration::from_secs(240), |_| false);
    let status = status.expect("the report did not finish in 4 minutes");
    assert!(status.success(), "{status:?}");
    assert!(!seen.is_empty(), "no server process was seen");
    assert_eq!(left(&seen), [], "processes outlived the report");
    assert_eq!(naming(&dir.path().join("tmp")), Vec::<String>::new());
    assert!(dir.path().join("out/index.html").is_file());
}

#[test]
fn ctrl_c_stops_and_reaps_the_server() {
    if !procfs::has_children_lists() {
        eprintln!("skipped: no /proc/PID/task/TID/children here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut r = report(dir.path(), &["--requests", "100000000", "--duration", "60"]);
    // Wait for the server, and for it to have a script running or just run.
    let (mut seen, status) = watch(&mut r, Duration::from_secs(60), |s| s.len() >= 2);
    assert!(status.is_none(), "the report ended early: {status:?}");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(r.id() as i32, libc::SIGINT) };
    let (more, status) = watch(&mut r, Duration::from_secs(30), |_| false);
    seen.extend(more);
    let status = status.expect("the report did not exit within 30 s of SIGINT");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(left(&seen), [], "processes outlived the report");
    assert_eq!(naming(&dir.path().join("tmp")), Vec::<String>::new());
    assert!(!dir.path().join("out/index.html").exists());
}

//! The server's process tree as /proc shows it: every descendant of a pid with its
//! parent, name, command line, age and memory (RSS, and PSS where smaps_rollup is
//! readable), for the status page.

use std::fs;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's short name (`comm`).
    pub name: String,
    #[serde(skip)]
    pub cmdline: Vec<String>,
    pub rss_kib: u64,
    /// Proportional set size: shared pages split between the processes sharing them,
    /// so the tree's sum is what it really costs. `None` where the kernel won't say.
    pub pss_kib: Option<u64>,
    /// How long the process has been running.
    #[serde(serialize_with = "as_millis", rename = "age_ms")]
    pub age: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The fields of `/proc/PID/stat` we use: (pid, comm, ppid, start time in ticks).
/// `comm` may hold spaces and parentheses, so it runs to the *last* `)`.
pub fn parse_stat(text: &str) -> Option<(i32, String, i32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // After `) `: state(3) ppid(4) ... starttime(22), so ppid is index 1, starttime 19.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((pid, comm, ppid, start))
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in KiB.
pub fn parse_pss(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Which of `all` (pid, ppid) descend from `root`, `root` first.
pub fn descendant_pids(root: i32, all: &[(i32, i32)]) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &(pid, ppid) in all {
            // A pid listed twice (reused while /proc was read) must not loop.
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found
}

/// `root` and all its descendants, read from /proc now. Processes that exit while we
/// read are left out.
pub fn tree(root: i32) -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let stats: Vec<(i32, String, i32, u64)> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect();
    let links: Vec<(i32, i32)> = stats.iter().map(|s| (s.0, s.2)).collect();
    let uptime = uptime();
    let tick = clock_tick();
    let page_kib = page_size() / 1024;
    descendant_pids(root, &links)
        .into_iter()
        .filter_map(|pid| {
            let (_, name, ppid, start) = stats.iter().find(|s| s.0 == pid)?.clone();
            let base = format!("/proc/{pid}");
            let rss_pages: u64 = fs::read_to_string(format!("{base}/statm"))
                .ok()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = fs::read(format!("{base}/cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let pss_kib = fs::read_to_string(format!("{base}/smaps_rollup"))
                .ok()
                .and_then(|t| parse_pss(&t));
            let started = Duration::from_secs_f64(start as f64 / tick);
            Some(Proc {
                pid,
                ppid,
                name,
                cmdline,
                rss_kib: rss_pages * page_kib,
                pss_kib,
                age: uptime.saturating_sub(started),
            })
        })
        .collect()
}

/// Time since boot, which process start times count from.
fn uptime() -> Duration {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs_f64)
}

fn clock_tick() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some((4242, "my (odd) name".into(), 17, 987654))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn pss() {
        let text = "55d0-7ff [rollup]\nRss:                3000 kB\nPss:                1234 kB\nPss_Anon: 5 kB\n";
        assert_eq!(parse_pss(text), Some(1234));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn descendants() {
        let all = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 10),
            (13, 11),
            (20, 1),
            (10, 10),
        ];
        let mut d = descendant_pids(10, &all);
        d.sort();
        assert_eq!(d, [10, 11, 12, 13]);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let t = tree(me);
        assert_eq!(t.first().map(|p| p.pid), Some(me));
        assert!(t[0].rss_kib > 0);
    }
}

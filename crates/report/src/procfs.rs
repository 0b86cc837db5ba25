//! What the report reads from /proc: every process's parent and CPU times
//! (`/proc/PID/stat`), a process's RSS (`statm`) and PSS (`smaps_rollup`), and which
//! processes descend from a set of roots. Every read tolerates the process having
//! exited meanwhile: it is simply not there any more.

use std::fs;

/// The fields of `/proc/PID/stat` the report uses. Times are in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// R, S, D, Z, ...
    pub state: u8,
    pub utime: u64,
    pub stime: u64,
    /// CPU of the children this process has reaped (and what they reaped).
    pub cutime: u64,
    pub cstime: u64,
}

impl Stat {
    /// Its own CPU plus its reaped children's, in ticks.
    pub fn cpu_with_reaped(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// Parses a `/proc/PID/stat` line. `comm` may hold spaces and parentheses, so the
/// fields after it start after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    // After ") ": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(Stat {
        pid,
        state: *rest.first()?.as_bytes().first()?,
        ppid: rest.get(1)?.parse().ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The pids of every process now, ascending: one listing of /proc (the kernel
/// returns it in one `getdents` call for up to about a thousand processes).
pub fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Every process's stat, now. Processes that exit while /proc is read are left out.
pub fn all() -> Vec<Stat> {
    pids().into_iter().filter_map(stat).collect()
}

/// Which of `all` are `roots` or descend from them (roots first, each once). A root
/// that is not in `all` (it exited) is left out.
pub fn tree<'a>(roots: &[i32], all: &'a [Stat]) -> Vec<&'a Stat> {
    let mut found: Vec<&Stat> = roots
        .iter()
        .filter_map(|r| all.iter().find(|s| s.pid == *r))
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        for s in all {
            // A pid listed twice (reused while /proc was read) must not loop.
            if s.ppid == parent && !found.iter().any(|f| f.pid == s.pid) {
                found.push(s);
            }
        }
        i += 1;
    }
    found
}

/// Does this kernel list each thread's children (`CONFIG_PROC_CHILDREN`)?
pub fn has_children_lists() -> bool {
    let me = std::process::id();
    fs::metadata(format!("/proc/{me}/task/{me}/children")).is_ok()
}

/// The threads of `pid`.
pub fn threads(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of thread `tid` of `pid`, alive or exited and not yet reaped.
pub fn children(pid: i32, tid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `roots` (those still there) and every process below them, roots first, from
/// the children lists: a process counts if its parent's list has it when read.
pub fn tree_by_children(roots: &[i32]) -> Vec<i32> {
    let mut found: Vec<i32> = Vec::new();
    let mut queue: Vec<i32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        let threads = threads(pid);
        // No threads listed: it is gone (a root that exited).
        if threads.is_empty() || found.contains(&pid) {
            continue;
        }
        found.push(pid);
        for tid in threads {
            queue.extend(children(pid, tid));
        }
    }
    // Roots first, in the order given, as `tree` does.
    found.sort_by_key(|p| roots.iter().position(|r| r == p).unwrap_or(usize::MAX));
    found
}

/// Resident set size in KiB (`statm`, no locks taken in the kernel beyond the task's).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let pages: u64 = fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(pages * page_size() / 1024)
}

/// Proportional set size in KiB (`smaps_rollup`): shared pages split between the
/// processes that map them. The kernel walks every mapping under the process's mmap
/// lock to compute it, which can take long for a big, busy process.
pub fn pss_kib(pid: i32) -> Option<u64> {
    parse_pss(&fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The `Pss:` line of `smaps_rollup`, in KiB.
pub fn parse_pss(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Clock ticks per second (the unit of the stat times).
pub fn ticks_per_sec() -> f64 {
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
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 987654 1000 200";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.ppid, s.state), (4242, 17, b'S'));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (11, 22, 33, 44));
        assert_eq!(s.cpu_with_reaped(), 110);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn pss() {
        let text = "55d0-7ff [rollup]\nRss:                3000 kB\nPss:                1234 kB\nPss_Anon: 5 kB\n";
        assert_eq!(parse_pss(text), Some(1234));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    fn s(pid: i32, ppid: i32) -> Stat {
        Stat {
            pid,
            ppid,
            state: b'S',
            utime: 0,
            stime: 0,
            cutime: 0,
            cstime: 0,
        }
    }

    #[test]
    fn trees_of_several_roots() {
        let all = [
            s(1, 0),
            s(10, 1),
            s(11, 10),
            s(12, 10),
            s(13, 11),
            s(20, 1),
            s(21, 20),
            s(10, 10),
        ];
        let pids = |roots: &[i32]| {
            let mut p: Vec<i32> = tree(roots, &all).iter().map(|s| s.pid).collect();
            p.sort();
            p
        };
        assert_eq!(pids(&[10]), [10, 11, 12, 13]);
        assert_eq!(pids(&[11, 20]), [11, 13, 20, 21]);
        assert_eq!(pids(&[99]), Vec::<i32>::new());
    }

    #[test]
    fn children_lists_agree_with_parents() {
        if !has_children_lists() {
            return;
        }
        let mut kid = std::process::Command::new("sleep")
            .arg("2")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let tree = tree_by_children(&[me]);
        let _ = kid.kill();
        let _ = kid.wait();
        assert_eq!(tree.first(), Some(&me));
        assert!(tree.contains(&(kid.id() as i32)), "{tree:?}");
        assert_eq!(tree_by_children(&[i32::MAX]), Vec::<i32>::new());
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let st = stat(me).unwrap();
        assert_eq!(st.pid, me);
        assert!(rss_kib(me).unwrap() > 0 && pss_kib(me).unwrap() > 0);
        let all = all();
        assert_eq!(tree(&[me], &all).first().map(|s| s.pid), Some(me));
    }
}

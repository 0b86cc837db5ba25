//! CPU accounting by control group, for the servers that are not ours: all the CPU
//! of every process in the group, however it ends. /proc cannot give that for a
//! server that ignores SIGCHLD (fcgiwrap does): the kernel then reaps its children
//! itself and never adds their time to the parent's `cutime`, so a tree's sum misses
//! every script. A group is made next to the report's own (cgroup v2 `cpu.stat`, or
//! v1 `cpuacct.usage`), a server started into it (its child writes itself into
//! `cgroup.procs` before exec, so everything it starts is inside), and removed
//! after. Where no hierarchy is writable (not root, no delegation) there is none,
//! and the report says the figure is incomplete where it is.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// `cpu.stat`'s `usage_usec`.
    V2,
    /// `cpuacct.usage`, in nanoseconds.
    V1,
}

/// A control group the report made for one server.
#[derive(Debug)]
pub struct Accounting {
    dir: PathBuf,
    version: Version,
    /// Its `cgroup.procs`, open for the children to write themselves into.
    procs: File,
}

static MADE: AtomicUsize = AtomicUsize::new(0);

/// The mount point of the cgroup2 hierarchy, or of the v1 one with cpuacct.
fn mount(mountinfo: &str, version: Version) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let options = r.nth(1).unwrap_or("");
        let fits = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && options.split(',').any(|o| o == "cpuacct"),
        };
        fits.then(|| PathBuf::from(point))
    })
}

/// Our own group's path within that hierarchy, from /proc/self/cgroup.
fn own_path(cgroups: &str, version: Version) -> Option<String> {
    cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let fits = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "cpuacct"),
        };
        fits.then(|| path.to_owned())
    })
}

impl Accounting {
    /// A new group beside the report's own, or `None` where none can be made.
    pub fn new() -> Option<Accounting> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
        [Version::V2, Version::V1].into_iter().find_map(|version| {
            let base = mount(&mountinfo, version)?;
            let own = own_path(&cgroups, version)?;
            let n = MADE.fetch_add(1, Ordering::Relaxed);
            let dir = base
                .join(own.trim_start_matches('/'))
                .join(format!("cgi-testbed-report-{}-{n}", std::process::id()));
            fs::create_dir(&dir).ok()?;
            let made = (|| {
                let procs = OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
                    .ok()?;
                let a = Accounting {
                    dir: dir.clone(),
                    version,
                    procs,
                };
                a.usage()?;
                crate::children::remove_cgroup_on_interrupt(&a.dir);
                Some(a)
            })();
            if made.is_none() {
                let _ = fs::remove_dir(&dir);
            }
            made
        })
    }

    /// Makes `cmd`'s process join the group before it execs, so all it starts is in.
    pub fn start_inside(&self, cmd: &mut Command) {
        let fd = self.procs.as_raw_fd();
        // SAFETY: write(2) on an open descriptor is async-signal-safe, and the
        // buffer is static. "0" means the writing process.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The CPU every process in the group has used, so far.
    pub fn usage(&self) -> Option<Duration> {
        match self.version {
            Version::V2 => {
                let stat = fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
                let us: u64 = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Some(Duration::from_micros(us))
            }
            Version::V1 => {
                let ns: u64 = fs::read_to_string(self.dir.join("cpuacct.usage"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                Some(Duration::from_nanos(ns))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // Its processes were stopped and reaped, but the kernel lets go of exited
        // tasks a moment later and refuses the removal (EBUSY) until then. If it
        // never empties, the group stays, which costs nothing.
        for _ in 0..100 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return,
            }
        }
    }
}

/// Does a process of `pids` ignore SIGCHLD (so its children's CPU never reaches
/// its `cutime`)?
pub fn ignores_sigchld(pids: &[i32]) -> bool {
    pids.iter().any(|pid| {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let mask = s.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (libc::SIGCHLD - 1)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `cmd` with SIGCHLD ignored (a disposition exec keeps), as fcgiwrap
    /// sets it for itself.
    fn ignore_sigchld(cmd: &mut Command) {
        // SAFETY: signal(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                Ok(())
            });
        }
    }

    #[test]
    fn hierarchies_from_mountinfo_and_cgroup() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            mount(mountinfo, Version::V1),
            Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            mount(mountinfo, Version::V2),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let cgroups = "4:memory:/x\n2:cpuacct:/a/b\n0::/c\n";
        assert_eq!(own_path(cgroups, Version::V1).as_deref(), Some("/a/b"));
        assert_eq!(own_path(cgroups, Version::V2).as_deref(), Some("/c"));
        assert_eq!(own_path("4:memory:/x\n", Version::V2), None);
    }

    #[test]
    fn a_group_counts_the_cpu_of_children_nobody_waits_for() {
        let Some(acct) = Accounting::new() else {
            eprintln!("skipped: no writable cgroup hierarchy here");
            return;
        };
        // A shell that ignores SIGCHLD (so /proc would not see its children's CPU)
        // runs a child that burns about 100 ms (its wait blocks until the child is
        // gone, then fails, which is how an ignored SIGCHLD behaves).
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            "sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'; true",
        ]);
        ignore_sigchld(&mut cmd);
        acct.start_inside(&mut cmd);
        let before = acct.usage().unwrap();
        let status = cmd.status().unwrap();
        assert!(status.success());
        let used = acct.usage().unwrap() - before;
        assert!(
            used >= Duration::from_millis(30),
            "{used:?} in {}",
            acct.dir().display()
        );
        // Removed once dropped.
        let dir = acct.dir().to_path_buf();
        drop(acct);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn sees_who_ignores_sigchld() {
        assert!(!ignores_sigchld(&[std::process::id() as i32]));
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        ignore_sigchld(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let seen = ignores_sigchld(&[child.id() as i32]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen);
    }
}

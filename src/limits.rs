//! Per-script resource limits (`--limit-cpu`, `--limit-memory`, `--limit-procs`;
//! `--limit-output` is the relay's). CPU time is an rlimit. Processes and memory use a
//! cgroup per script (pids and memory controllers, v2 or v1), because the rlimits
//! cannot do it: RLIMIT_NPROC counts per user and root ignores it, and RLIMIT_AS fails
//! allocations without telling us why a script died. Where no cgroup can be made the
//! rlimits are the fallback, and the server says so once at start.
//!
//! The child joins its cgroup and sets its rlimits itself, between fork and exec, so
//! nothing it starts escapes them.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::logger::Logger;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpu: Option<Duration>,
    pub memory: Option<u64>,
    pub procs: Option<u64>,
    pub output: Option<u64>,
}

impl Limits {
    fn needs_cgroup(&self) -> bool {
        self.memory.is_some() || self.procs.is_some()
    }

    pub fn any_for_process(&self) -> bool {
        self.cpu.is_some() || self.needs_cgroup()
    }
}

/// Where this server makes its per-script cgroups.
#[derive(Debug)]
enum Hierarchy {
    /// One cgroup v2 directory holding both controllers.
    V2(PathBuf),
    /// cgroup v1: separate pids and memory hierarchies.
    V1 {
        pids: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
}

/// The server's side of the limits: settings plus the cgroup parent, if any.
#[derive(Debug)]
pub struct Enforcer {
    pub limits: Limits,
    hierarchy: Option<Hierarchy>,
    next: AtomicU64,
}

impl Enforcer {
    /// Prepares the cgroup parent when memory or process limits are asked for.
    pub fn new(limits: Limits, log: &Logger) -> Arc<Enforcer> {
        let hierarchy = if limits.needs_cgroup() {
            match make_parent(&limits) {
                Ok(h) => Some(h),
                Err(e) => {
                    log.log(&format!(
                        "limits: no cgroup for --limit-memory/--limit-procs ({e}); \
                         falling back to RLIMIT_AS/RLIMIT_NPROC, which root ignores for processes"
                    ));
                    None
                }
            }
        } else {
            None
        };
        Arc::new(Enforcer {
            limits,
            hierarchy,
            next: AtomicU64::new(0),
        })
    }

    /// Removes this server's cgroup parents (empty once every script is reaped).
    pub fn remove_cgroups(&self) {
        let dirs: Vec<&PathBuf> = match &self.hierarchy {
            Some(Hierarchy::V2(d)) => vec![d],
            Some(Hierarchy::V1 { pids, memory }) => pids.iter().chain(memory.iter()).collect(),
            None => Vec::new(),
        };
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
    }

    /// Are memory and process limits enforced by a cgroup (rather than rlimits)?
    pub fn uses_cgroup(&self) -> bool {
        self.hierarchy.is_some()
    }

    /// What one new process needs: its rlimits and, if used, its own cgroup.
    pub fn for_process(&self) -> io::Result<ProcessLimits> {
        let l = &self.limits;
        let mut rlimits = Vec::new();
        if let Some(cpu) = l.cpu {
            // SIGXCPU at the soft limit; the hard limit one second later is SIGKILL.
            let s = cpu.as_secs().max(1);
            rlimits.push((libc::RLIMIT_CPU as i32, s, s + 1));
        }
        let mut cgroup = None;
        match &self.hierarchy {
            Some(h) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                cgroup = Some(Cgroup::create(h, n, l)?);
            }
            None => {
                if let Some(m) = l.memory {
                    rlimits.push((libc::RLIMIT_AS as i32, m, m));
                }
                if let Some(p) = l.procs {
                    rlimits.push((libc::RLIMIT_NPROC as i32, p, p));
                }
            }
        }
        let join = match &cgroup {
            Some(c) => c.open_procs_files()?,
            None => Vec::new(),
        };
        Ok(ProcessLimits {
            rlimits,
            join,
            cgroup,
        })
    }

    /// Which limit a process that died with `signal`, having used `cpu`, ran into.
    pub fn verdict(&self, p: &ProcessLimits, signal: Option<i32>, cpu: Duration) -> Option<String> {
        let l = &self.limits;
        if let Some(limit) = l.cpu {
            let by_signal = signal == Some(libc::SIGXCPU);
            let killed_at_hard = signal == Some(libc::SIGKILL) && cpu >= limit;
            if by_signal || killed_at_hard {
                return Some(format!("--limit-cpu {}", humantime::format_duration(limit)));
            }
        }
        let c = p.cgroup.as_ref()?;
        if let Some(m) = l.memory
            && c.memory_hit()
        {
            return Some(format!(
                "--limit-memory {}",
                bytesize::ByteSize(m).display().iec()
            ));
        }
        if let Some(n) = l.procs
            && c.pids_hit()
        {
            return Some(format!("--limit-procs {n}"));
        }
        None
    }
}

/// The cgroup v2 directory we are in, or the v1 pids/memory ones, plus a child for us.
fn make_parent(limits: &Limits) -> io::Result<Hierarchy> {
    // Unique per server, not just per process: tests run several servers at once.
    static SERVERS: AtomicU64 = AtomicU64::new(0);
    let own = fs::read_to_string("/proc/self/cgroup")?;
    let n = SERVERS.fetch_add(1, Ordering::Relaxed);
    let name = format!("cgi-testbed-{}-{n}", std::process::id());
    let v1 = |controller: &str| -> Option<PathBuf> {
        let rel = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })?;
        let base = Path::new("/sys/fs/cgroup").join(controller);
        let dir = base.join(rel.trim_start_matches('/')).join(&name);
        fs::create_dir_all(&dir).ok().map(|_| dir)
    };
    let pids = limits.procs.and_then(|_| v1("pids"));
    let memory = limits.memory.and_then(|_| v1("memory"));
    if pids.is_some() || memory.is_some() {
        return Ok(Hierarchy::V1 { pids, memory });
    }
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::other("no cgroup v2 membership"))?;
    let base = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let controllers = fs::read_to_string(base.join("cgroup.controllers"))?;
    let want: Vec<&str> = [
        ("pids", limits.procs.is_some()),
        ("memory", limits.memory.is_some()),
    ]
    .into_iter()
    .filter_map(|(c, on)| on.then_some(c))
    .collect();
    if want
        .iter()
        .any(|c| !controllers.split_whitespace().any(|x| x == *c))
    {
        return Err(io::Error::other(format!(
            "cgroup v2 at {} lacks {want:?}",
            base.display()
        )));
    }
    let dir = base.join(&name);
    fs::create_dir_all(&dir)?;
    let enable: String = want.iter().map(|c| format!("+{c} ")).collect();
    fs::write(dir.join("cgroup.subtree_control"), enable.trim())?;
    Ok(Hierarchy::V2(dir))
}

/// One script's cgroup directories; removed (best effort) when dropped.
#[derive(Debug)]
struct Cgroup {
    pids: Option<PathBuf>,
    memory: Option<PathBuf>,
    v2: bool,
}

impl Cgroup {
    fn create(h: &Hierarchy, n: u64, l: &Limits) -> io::Result<Cgroup> {
        let leaf = format!("s{n}");
        let (pids, memory, v2) = match h {
            Hierarchy::V2(dir) => {
                let d = dir.join(&leaf);
                fs::create_dir(&d)?;
                (
                    l.procs.map(|_| d.clone()),
                    l.memory.map(|_| d.clone()),
                    true,
                )
            }
            Hierarchy::V1 { pids, memory } => {
                let mk = |base: &Option<PathBuf>| -> io::Result<Option<PathBuf>> {
                    base.as_ref()
                        .map(|b| {
                            let d = b.join(&leaf);
                            fs::create_dir(&d).map(|_| d)
                        })
                        .transpose()
                };
                (mk(pids)?, mk(memory)?, false)
            }
        };
        let c = Cgroup { pids, memory, v2 };
        if let (Some(d), Some(n)) = (&c.pids, l.procs) {
            fs::write(d.join("pids.max"), n.to_string())?;
        }
        if let (Some(d), Some(m)) = (&c.memory, l.memory) {
            if v2 {
                fs::write(d.join("memory.max"), m.to_string())?;
                // Swap would let a hog dodge the limit instead of being stopped.
                let _ = fs::write(d.join("memory.swap.max"), "0");
            } else {
                fs::write(d.join("memory.limit_in_bytes"), m.to_string())?;
                let _ = fs::write(d.join("memory.memsw.limit_in_bytes"), m.to_string());
            }
        }
        Ok(c)
    }

    fn dirs(&self) -> Vec<&PathBuf> {
        let mut d: Vec<&PathBuf> = self.pids.iter().chain(self.memory.iter()).collect();
        d.dedup();
        d
    }

    fn open_procs_files(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs()
            .into_iter()
            .map(|d| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .map(OwnedFd::from)
            })
            .collect()
    }

    fn counter(&self, dir: &Option<PathBuf>, file: &str, key: &str) -> u64 {
        let Some(d) = dir else { return 0 };
        let text = fs::read_to_string(d.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn memory_hit(&self) -> bool {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.counter(&self.memory, file, "oom_kill ") > 0
    }

    fn pids_hit(&self) -> bool {
        self.counter(&self.pids, "pids.events", "max ") > 0
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in self.dirs() {
            // Empty once the group is reaped; a straggler may take a moment to go.
            for _ in 0..50 {
                if fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Everything a new process must do to itself before exec, prepared up front.
#[derive(Debug)]
pub struct ProcessLimits {
    rlimits: Vec<(i32, u64, u64)>,
    /// `cgroup.procs` files to write our pid into.
    join: Vec<OwnedFd>,
    cgroup: Option<Cgroup>,
}

impl ProcessLimits {
    pub fn none() -> ProcessLimits {
        ProcessLimits {
            rlimits: Vec::new(),
            join: Vec::new(),
            cgroup: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rlimits.is_empty() && self.join.is_empty()
    }

    /// The part that runs in the child: plain data, copied into the closure.
    pub fn in_child(&self) -> ChildSide {
        ChildSide {
            rlimits: self.rlimits.clone(),
            join: self.join.iter().map(|f| f.as_raw_fd()).collect(),
        }
    }
}

/// Runs between fork and exec: only async-signal-safe calls, no allocation.
#[derive(Debug, Clone)]
pub struct ChildSide {
    rlimits: Vec<(i32, u64, u64)>,
    join: Vec<RawFd>,
}

impl ChildSide {
    /// # Safety
    /// Call only in a freshly forked child, before exec.
    pub unsafe fn apply(&self) -> io::Result<()> {
        let mut digits = [0u8; 20];
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() } as u64;
        let text = format_decimal(pid, &mut digits);
        for &fd in &self.join {
            // SAFETY: writing a stack buffer to a descriptor we keep open.
            if unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for &(resource, soft, hard) in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit with a valid struct.
            if unsafe { libc::setrlimit(resource as _, &lim) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut b = [0u8; 20];
        assert_eq!(format_decimal(0, &mut b), b"0");
        assert_eq!(format_decimal(4_194_304, &mut b), b"4194304");
        assert_eq!(format_decimal(u64::MAX, &mut b), b"18446744073709551615");
    }
}

//! A started script or worker as a process group we own: exit detection through a
//! pidfd that the event loop watches, killing the whole group, reaping with `wait4` for
//! its rusage, and the registry that lets shutdown kill every group still alive.
//! Dropping a [`Child`] never leaves a zombie.

use std::collections::HashSet;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::sys;

/// Process groups started by one server and not yet reaped, and totals over those
/// reaped (for `/server-status`, which the report reads around each run).
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashSet<i32>>,
    started: AtomicU64,
    reaped: AtomicU64,
    /// User + system CPU of the reaped leaders (with whatever they reaped), µs.
    reaped_cpu_us: AtomicU64,
    /// Their lifetimes from the return of the spawn call to reap, summed, µs.
    reaped_lifetime_us: AtomicU64,
    /// How long their spawn calls took, summed, µs: each process appeared at some
    /// point within its call (the fork), so its true lifetime is the above plus up
    /// to this.
    reaped_spawn_us: AtomicU64,
}

/// What [`Registry::totals`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub started: u64,
    pub running: usize,
    pub reaped: u64,
    pub reaped_cpu: Duration,
    pub reaped_lifetime: Duration,
    pub reaped_spawn: Duration,
}

impl Registry {
    pub fn count(&self) -> usize {
        self.live.lock().map_or(0, |l| l.len())
    }

    pub fn totals(&self) -> Totals {
        let us = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        Totals {
            started: self.started.load(Ordering::Relaxed),
            running: self.count(),
            reaped: self.reaped.load(Ordering::Relaxed),
            reaped_cpu: us(&self.reaped_cpu_us),
            reaped_lifetime: us(&self.reaped_lifetime_us),
            reaped_spawn: us(&self.reaped_spawn_us),
        }
    }

    /// Sends `sig` to every live group.
    pub fn signal_all(&self, sig: i32) {
        if let Ok(live) = self.live.lock() {
            for &pgid in live.iter() {
                // SAFETY: plain kill(2); the group leader is unreaped, so its id is ours.
                unsafe { libc::kill(-pgid, sig) };
            }
        }
    }

    fn insert(&self, pid: i32) {
        self.started.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.live.lock() {
            l.insert(pid);
        }
    }

    fn remove(&self, pid: i32) {
        if let Ok(mut l) = self.live.lock() {
            l.remove(&pid);
        }
    }

    fn count_reaped(&self, exit: &ExitInfo, lifetime: Duration, spawn: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.reaped.fetch_add(1, Ordering::Relaxed);
        self.reaped_cpu_us
            .fetch_add(us(exit.user + exit.system), Ordering::Relaxed);
        self.reaped_lifetime_us
            .fetch_add(us(lifetime), Ordering::Relaxed);
        self.reaped_spawn_us.fetch_add(us(spawn), Ordering::Relaxed);
    }
}

/// How a script ended, with what it cost (from `wait4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or `128 + signal` when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub user: Duration,
    pub system: Duration,
    pub max_rss_kib: i64,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(s) => write!(f, "killed by signal {s}"),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

/// How we learn that the leader exited.
enum ExitWatch {
    /// A pidfd in the event loop of the thread that adopted the child.
    Loop(AsyncFd<OwnedFd>),
    /// A pidfd outside any loop (shutdown paths); waited on with poll(2).
    Plain(OwnedFd),
    /// No pidfd (kernels before 5.3): polled every few milliseconds.
    None,
}

impl ExitWatch {
    fn raw(&self) -> Option<RawFd> {
        match self {
            ExitWatch::Loop(fd) => Some(fd.as_raw_fd()),
            ExitWatch::Plain(fd) => Some(fd.as_raw_fd()),
            ExitWatch::None => None,
        }
    }
}

/// `Child::seen_exit` before any exit was seen, and for one not by a signal.
const NOT_SEEN: i32 = -2;
const EXITED: i32 = -1;

/// Without a pidfd, how often exit is checked.
const EXIT_POLL: Duration = Duration::from_millis(10);

pub struct Child {
    pid: i32,
    watch: ExitWatch,
    registry: Arc<Registry>,
    exit: Option<ExitInfo>,
    adopted: Instant,
    /// How long the spawn call took (zero when unknown).
    spawn: Duration,
    /// The leader's exit as `waitid` reported it (before reaping): [`NOT_SEEN`],
    /// [`EXITED`], or the signal that killed it.
    seen_exit: AtomicI32,
}

impl Child {
    /// Takes ownership of the process group led by `pid` (it must be our child). Inside
    /// an event loop its exit is watched by that loop.
    pub fn adopt(pid: i32, registry: Arc<Registry>) -> Child {
        Child::adopt_since(pid, registry, Instant::now())
    }

    /// [`Child::adopt`] for a process whose spawn call began at `spawn_started`: the
    /// registry's totals then also know the window in which it appeared (its fork
    /// happened somewhere in the call, and under load the call can take long).
    pub fn adopt_since(pid: i32, registry: Arc<Registry>, spawn_started: Instant) -> Child {
        registry.insert(pid);
        let adopted = Instant::now();
        let watch = match sys::pidfd_open(pid) {
            Ok(fd) if tokio::runtime::Handle::try_current().is_ok() => {
                // SAFETY: an OwnedFd we own stays open and the same until it drops.
                match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                {
                    Ok(fd) => ExitWatch::Loop(fd),
                    Err(_) => ExitWatch::None,
                }
            }
            Ok(fd) => ExitWatch::Plain(fd),
            Err(_) => ExitWatch::None,
        };
        Child {
            pid,
            watch,
            registry,
            exit: None,
            adopted,
            spawn: adopted.saturating_duration_since(spawn_started),
            seen_exit: AtomicI32::new(NOT_SEEN),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Registers `cx` to be woken when the leader exits; ready once it has. Without a
    /// loop-watched pidfd this is never ready: callers also wake on a timer.
    pub fn poll_exit(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.exit.is_some() {
            return Poll::Ready(());
        }
        match &self.watch {
            // The pidfd stays readable once the process is gone, so readiness is never
            // cleared: later polls are ready at once, as they should be.
            ExitWatch::Loop(fd) => fd.poll_read_ready(cx).map(|_| ()),
            _ => Poll::Pending,
        }
    }

    /// When to look again if exit cannot be watched.
    pub fn exit_poll_interval(&self) -> Option<Duration> {
        matches!(self.watch, ExitWatch::None).then_some(EXIT_POLL)
    }

    /// Has the leader exited? Does not reap, so the group id stays reserved.
    pub fn has_exited(&self) -> bool {
        self.exit.is_some() || self.peek().is_some()
    }

    /// The signal that killed the leader, if it has exited that way (without reaping).
    pub fn killed_by(&self) -> Option<i32> {
        match self.exit {
            Some(e) => e.signal,
            None => self.peek().flatten(),
        }
    }

    /// `Some(signal or None)` once the leader has exited; does not reap. An exit seen
    /// is remembered: it cannot change until the reaping, and asking again costs a
    /// system call each time.
    fn peek(&self) -> Option<Option<i32>> {
        match self.seen_exit.load(Ordering::Relaxed) {
            NOT_SEEN => {}
            EXITED => return Some(None),
            signal => return Some(Some(signal)),
        }
        // SAFETY: waitid with WNOWAIT only reads the child's state into `info`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let r = unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags) };
        // SAFETY: for a waitid result, si_pid and si_status are the fields filled in.
        if r != 0 || unsafe { info.si_pid() } == 0 {
            return None;
        }
        let killed = matches!(info.si_code, libc::CLD_KILLED | libc::CLD_DUMPED);
        let seen = killed.then(|| unsafe { info.si_status() });
        self.seen_exit
            .store(seen.unwrap_or(EXITED), Ordering::Relaxed);
        Some(seen)
    }

    pub fn signal_group(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: plain kill(2) on our own unreaped group.
            unsafe { libc::kill(-self.pid, sig) };
        }
    }

    /// Kills what is left of the group and reaps the leader. The leader must have
    /// exited or been sent SIGKILL (this waits for it).
    pub fn reap(&mut self) -> ExitInfo {
        if let Some(e) = self.exit {
            return e;
        }
        // Stragglers (a daemonized grandchild holding our pipe) die with the group,
        // before the leader's id is released by reaping it.
        self.signal_group(libc::SIGKILL);
        // Out of the registry before the id is released: once reaped, the id can name
        // someone else's new process group, which a shutdown's `signal_all` running
        // between the two steps would kill.
        self.registry.remove(self.pid);
        let e = wait4(self.pid);
        self.registry
            .count_reaped(&e, self.adopted.elapsed(), self.spawn);
        self.exit = Some(e);
        e
    }

    /// Waits up to `timeout` for the leader to exit by itself, without holding the
    /// thread: the loop watches the pidfd.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if self.has_exited() {
                return true;
            }
            let step = match self.exit_poll_interval() {
                Some(every) => tokio::time::timeout_at(until, tokio::time::sleep(every)).await,
                None => {
                    tokio::time::timeout_at(until, std::future::poll_fn(|cx| self.poll_exit(cx)))
                        .await
                }
            };
            if step.is_err() {
                return self.has_exited();
            }
        }
    }

    /// Blocking wait, for the shutdown path that runs outside the loops.
    pub fn wait_exit_blocking(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.has_exited() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match self.watch.raw() {
                Some(fd) => {
                    let _ = sys::wait_one(fd, sys::READ, until - now);
                }
                None => std::thread::sleep(EXIT_POLL.min(until - now)),
            }
        }
    }

    /// SIGTERM to the group, up to `grace` to go, then SIGKILL; reaps.
    pub async fn terminate(&mut self, grace: Duration) -> ExitInfo {
        if !self.has_exited() {
            self.signal_group(libc::SIGTERM);
            self.wait_exit(grace).await;
        }
        self.reap()
    }

    /// [`Child::terminate`] for the shutdown path outside the loops.
    pub fn terminate_blocking(&mut self, grace: Duration) -> ExitInfo {
        if !self.has_exited() {
            self.signal_group(libc::SIGTERM);
            self.wait_exit_blocking(grace);
        }
        self.reap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.reap();
    }
}

fn wait4(pid: i32) -> ExitInfo {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    ExitInfo {
        code: signal.map_or(libc::WEXITSTATUS(status), |s| 128 + s),
        signal,
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deregistered_before_the_leader_is_reaped() {
        // Not a group leader, so `reap`'s SIGKILL to the group finds no group and its
        // wait4 lasts until the process ends by itself: time to look at the registry.
        let registry = Arc::new(Registry::default());
        #[allow(clippy::zombie_processes, reason = "Child::reap reaps it")]
        let sleeper = std::process::Command::new("/bin/sleep")
            .arg("3")
            .spawn()
            .unwrap();
        let mut child = Child::adopt(sleeper.id() as i32, registry.clone());
        assert_eq!(registry.count(), 1);
        let reaper = std::thread::spawn(move || child.reap());
        let until = Instant::now() + Duration::from_secs(2);
        while registry.count() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(registry.count(), 0, "still registered while being reaped");
        assert!(
            !reaper.is_finished(),
            "registry emptied only after the reap"
        );
        assert_eq!(reaper.join().unwrap().code, 0);
    }

    #[test]
    fn the_registry_totals_what_it_reaped() {
        let registry = Arc::new(Registry::default());
        // A child that burns a little CPU, so the rusage is not all zeros. Reaped
        // by `Child::reap` (wait4), not by std.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let mut c = Child::adopt(child.id() as i32, registry.clone());
        let t = registry.totals();
        assert_eq!((t.started, t.running, t.reaped), (1, 1, 0));
        assert!(c.wait_exit_blocking(Duration::from_secs(30)));
        let exit = c.reap();
        let t = registry.totals();
        assert_eq!((t.started, t.running, t.reaped), (1, 0, 1));
        assert_eq!(
            t.reaped_cpu.as_micros(),
            (exit.user + exit.system).as_micros()
        );
        assert!(t.reaped_cpu > Duration::ZERO && t.reaped_lifetime >= t.reaped_cpu / 2);
        // Reaping again (or dropping) counts nothing twice.
        c.reap();
        drop(c);
        assert_eq!(registry.totals().reaped, 1);
    }
}

//! The processes the report starts (our server, gunicorn, uvicorn, lighttpd, nginx,
//! fcgiwrap, FastCGI workers), each in a process group of its own so that a Ctrl-C
//! at the terminal reaches only the report: a [`Group`] is stopped (SIGTERM to the
//! group, SIGKILL after a grace period) and reaped when dropped, and [`install`]
//! makes the report stop and reap every group still running when it is interrupted,
//! and adopt (as a child subreaper) the members a group's leader leaves behind, so
//! they are reaped too rather than left as zombies of init.

use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::cgroup::Accounting;

/// Process group ids of the groups started and not yet stopped.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Set (under RUNNING's lock) once the report is interrupted: no group may start
/// after the groups to stop were listed.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// What to remove when interrupted, since the owners are not dropped when the
/// process exits from the signal thread: (directory, is it a control group).
static LITTER: Mutex<Vec<(std::path::PathBuf, bool)>> = Mutex::new(Vec::new());

/// Has `dir` (and all in it) removed if the report is interrupted.
pub fn remove_on_interrupt(dir: &std::path::Path) {
    litter(dir, false);
}

/// Has control group `dir` removed if the report is interrupted (after its
/// processes are stopped; a control group is removed with rmdir alone).
pub fn remove_cgroup_on_interrupt(dir: &std::path::Path) {
    litter(dir, true);
}

fn litter(dir: &std::path::Path, cgroup: bool) {
    LITTER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((dir.to_path_buf(), cgroup));
}

/// Between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

fn running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A process we started as the leader of a new process group.
pub struct Group {
    child: Child,
    stopped: bool,
}

impl Group {
    /// Starts `cmd` as the leader of a new process group, inside control group
    /// `acct` if given (for its CPU accounting).
    pub fn spawn_in(cmd: &mut Command, acct: Option<&Accounting>) -> io::Result<Group> {
        if let Some(a) = acct {
            a.start_inside(cmd);
        }
        Group::spawn(cmd)
    }

    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> io::Result<Group> {
        use std::os::unix::process::CommandExt;
        // Registered while the lock is held, so an interrupt arriving meanwhile
        // either sees the group or happens before it exists, and then none starts.
        let mut list = running();
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the report is stopping",
            ));
        }
        let child = cmd.process_group(0).spawn()?;
        list.push(child.id() as i32);
        Ok(Group {
            child,
            stopped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Has the leader exited (without reaping it)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, SIGKILL to what is
    /// left of the group, and the leader reaped.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.pid();
        stop_group(pgid, grace, || {
            matches!(self.child.try_wait(), Ok(Some(_)) | Err(_))
        });
        let _ = self.child.wait();
        reap_group(pgid);
        running().retain(|&p| p != pgid);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// SIGTERM to group `pgid`, waits until `gone()` or `grace` passes, then SIGKILL to
/// the group (workers left behind by a leader that exited first go with it).
fn stop_group(pgid: i32, grace: Duration, mut gone: impl FnMut() -> bool) {
    // SAFETY: plain kill(2) on a group we started; its leader is unreaped until we
    // reap it, so the id is still ours. A group with no members gives ESRCH.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let until = Instant::now() + grace;
    while !gone() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Reaps what is left of group `pgid` after SIGKILL: members whose leader exited
/// before them were reparented to us (we are their subreaper, see [`install`]).
/// Gives up after a second, or at once if they went to another reaper.
fn reap_group(pgid: i32) {
    let until = Instant::now() + Duration::from_secs(1);
    // SAFETY: kill with signal 0 only probes whether the group has members.
    while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < until {
        let mut status = 0;
        // SAFETY: waitpid on members of our own group; ECHILD when none is ours.
        let r = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if r < 0 {
            return;
        }
        if r == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Makes the report the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER),
/// blocks SIGINT, SIGTERM and SIGHUP in the calling thread (call it before any other
/// thread starts, so every thread inherits the mask) and starts a thread that waits
/// for them: it stops and reaps every group still running, then exits with 130.
/// Children get a clean signal mask from std's spawn.
pub fn install() -> io::Result<()> {
    // SAFETY: prctl with an integer argument; it fails only on ancient kernels.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(io::Error::from)?;
    std::thread::Builder::new()
        .name("report-signals".into())
        .spawn(move || {
            let Ok(sig) = set.wait() else { return };
            eprintln!("cgi-testbed report: {sig}: stopping the servers it started");
            stop_all(Duration::from_secs(3));
            for (dir, cgroup) in LITTER.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                if *cgroup {
                    // Exited tasks leave a control group a moment after reaping.
                    for _ in 0..100 {
                        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                } else {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            std::process::exit(130);
        })?;
    Ok(())
}

/// Stops and reaps every group still running (the leaders are our children).
fn stop_all(grace: Duration) {
    let groups: Vec<i32> = {
        let list = running();
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        list.clone()
    };
    let groups_all = groups.clone();
    for &pgid in &groups {
        // SAFETY: as in stop_group.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
    }
    let until = Instant::now() + grace;
    let mut left = groups;
    while !left.is_empty() && Instant::now() < until {
        left.retain(|&pid| !reaped(pid, false));
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &left {
        // SAFETY: as in stop_group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        reaped(pid, true);
    }
    for pgid in groups_all {
        reap_group(pgid);
    }
}

/// Reaps `pid` if it has exited (or waits for it with `block`); true once it is gone.
fn reaped(pid: i32, block: bool) -> bool {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: waitpid on a child of ours; ECHILD (already reaped) means gone.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    r == pid || r < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_group_is_gone_with_its_members() {
        // A leader that leaves a member behind in its group, then ignores SIGTERM.
        let mut g = Group::spawn(
            Command::new("/bin/sh")
                .args(["-c", "trap '' TERM; sleep 30 & wait"])
                .stdout(std::process::Stdio::null()),
        )
        .unwrap();
        let leader = g.pid();
        std::thread::sleep(Duration::from_millis(100));
        assert!(running().contains(&leader));
        g.stop(Duration::from_millis(200));
        assert!(!running().contains(&leader));
        // The group empties (the orphaned sleep is reaped by init once killed):
        // kill(-pgid, 0) finds no one.
        let until = Instant::now() + Duration::from_secs(5);
        // SAFETY: a probe with signal 0.
        while unsafe { libc::kill(-leader, 0) } == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::kill(-leader, 0) },
            -1,
            "group {leader} survived"
        );
    }
}

//! CPU time: of a serving process tree between two instants, from /proc, and of
//! this process and thread (the load generator, the sampler) from getrusage.
//!
//! A tree's CPU over a run is the change in the sum, over the processes in it, of
//! each one's own time plus what it has reaped (`utime + stime + cutime + cstime`).
//! A script that runs and is reaped within the run appears only in its parent's
//! `cutime` at the end; a worker alive throughout appears with its own times at both
//! ends; one alive at the start and reaped later moves from its own times into its
//! parent's. The sum is read when the tree is idle (before the load starts, after it
//! ends and the last script is reaped), so no process moves while it is read.

use std::time::{Duration, Instant};

use crate::procfs;

/// A tree's CPU so far, split by where the kernel keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeCpu {
    /// The roots' own user + system time (all their threads).
    pub roots_self: Duration,
    /// What the roots have reaped: their children and what those reaped.
    pub roots_reaped: Duration,
    /// The processes below the roots still alive: own time plus what they reaped.
    pub others: Duration,
}

impl TreeCpu {
    pub fn total(&self) -> Duration {
        self.roots_self + self.roots_reaped + self.others
    }

    /// What was used between `before` and `self` (a later reading).
    pub fn since(&self, before: &TreeCpu) -> TreeCpu {
        TreeCpu {
            roots_self: self.roots_self.saturating_sub(before.roots_self),
            roots_reaped: self.roots_reaped.saturating_sub(before.roots_reaped),
            // Workers that ended meanwhile move into roots_reaped, so this part
            // alone can shrink; the total cannot.
            others: self.others.saturating_sub(before.others),
        }
    }
}

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / procfs::ticks_per_sec())
}

/// The tree under `roots`, now.
pub fn read_tree(roots: &[i32]) -> TreeCpu {
    let all = procfs::all();
    let mut cpu = TreeCpu::default();
    for p in procfs::tree(roots, &all) {
        if roots.contains(&p.pid) {
            cpu.roots_self += ticks(p.utime + p.stime);
            cpu.roots_reaped += ticks(p.cutime + p.cstime);
        } else {
            cpu.others += ticks(p.cpu_with_reaped());
        }
    }
    cpu
}

/// The tree under `roots` once it is still: read until two readings 20 ms apart
/// agree (at most `patience`), so no script is caught between exit and reaping.
pub fn read_settled(roots: &[i32], patience: Duration) -> TreeCpu {
    let until = Instant::now() + patience;
    let mut last = read_tree(roots);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = read_tree(roots);
        if now == last || Instant::now() >= until {
            return now;
        }
        last = now;
    }
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and out-pointer.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// User + system CPU of the calling thread so far.
pub fn this_thread() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

/// User + system CPU of this whole process so far (not of its children).
pub fn this_process() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let t0 = this_thread();
        while this_thread() - t0 < d {
            std::hint::black_box(0);
        }
    }

    #[test]
    fn our_own_cpu_shows() {
        let (p0, t0) = (this_process(), this_thread());
        spin(Duration::from_millis(30));
        assert!(this_thread() - t0 >= Duration::from_millis(30));
        assert!(this_process() - p0 >= Duration::from_millis(30));
    }

    #[test]
    fn a_reaped_childs_cpu_moves_into_the_root() {
        // A child of ours that burns about 100 ms, reaped by us: the tree under us
        // grows by at least that (our own threads add to it, never take away).
        let me = std::process::id() as i32;
        let before = read_tree(&[me]);
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = read_tree(&[me]);
        let used = after.since(&before);
        assert!(used.roots_reaped >= Duration::from_millis(50), "{used:?}");
        assert!(used.total() >= used.roots_reaped);
    }
}

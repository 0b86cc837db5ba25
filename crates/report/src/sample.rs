//! The processes and memory of a serving process tree during a run.
//!
//! Three threads read /proc. One counts, every [`EVERY`], the processes of the tree
//! below the roots (the server, or an external server's master) by asking each
//! member's threads for their children (`/proc/PID/task/TID/children`): a script
//! counts if it is alive (or exited and not yet reaped) when its parent's list is
//! read, so none is missed because it exited before it could be classified. It
//! reads nothing else, so its rhythm does not depend on what it finds: a pass that
//! took longer when there were more scripts would sample the quiet moments more
//! often, and the mean would come out low. Another reads the memory of each process
//! beyond the roots, as often; a script gone before its memory is read counts with
//! the run's mean per script. The third reads the roots' own memory every
//! [`ROOTS_EVERY`].
//!
//! Why apart, and why children lists: PSS comes from `smaps_rollup`, which walks
//! every mapping of a process under its mmap lock. For a server with a hundred
//! threads busy allocating, that walk took up to 1.6 s here. The old sampler listed
//! every process's stat, then read the root's memory, then its scripts': by then
//! every script seen in the stat pass (alive for a few milliseconds) had exited and
//! was dropped, and a whole run could report one process. Reading every process's
//! stat to learn its parent has the same race in small: under load a quarter of
//! the new scripts exited between the listing of /proc and the read of their stat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cpu;
use crate::procfs;

/// How often the tree's processes are counted (and their memory read).
pub const EVERY: Duration = Duration::from_millis(20);
/// How often the roots' memory is read.
pub const ROOTS_EVERY: Duration = Duration::from_millis(200);

/// One pass of the fast thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub at: Option<Instant>,
    /// Processes in the tree, roots included.
    pub procs: usize,
    /// Processes beyond the roots: scripts, workers.
    pub others: usize,
    /// Of those, how many still existed when their memory was read, and its sum.
    pub others_read: usize,
    pub others_rss_kib: u64,
    pub others_pss_kib: u64,
}

/// One reading of the roots' memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RootsMemory {
    pub at: Instant,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Peaks and means over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub samples: u32,
    pub peak_procs: usize,
    pub mean_procs: f64,
    /// Processes beyond the roots (scripts or workers).
    pub peak_others: usize,
    pub mean_others: f64,
    pub peak_rss_kib: u64,
    pub mean_rss_kib: u64,
    /// PSS: shared pages (the interpreter's code, say) split between the processes
    /// that map them, so the sum is what the tree really costs. A process whose PSS
    /// the kernel won't show counts with its RSS.
    pub peak_pss_kib: u64,
    pub mean_pss_kib: u64,
    /// Share of the processes beyond the roots whose memory could not be read (they
    /// exited between the count and the read): counted with the run's mean per
    /// process instead.
    pub estimated: f64,
    /// CPU the sampling threads used.
    pub sampler_cpu: Duration,
}

/// The memory of the tree at reading `r`: the roots' last reading at or before it
/// (else the first one) plus the processes beyond them, those that exited before
/// their memory was read counted with `per_other` (RSS, PSS) each.
fn tree_memory(r: &Reading, roots: &[RootsMemory], per_other: (f64, f64)) -> (u64, u64) {
    let at = r.at;
    let root = roots
        .iter()
        .rev()
        .find(|m| at.is_some_and(|a| m.at <= a))
        .or(roots.first());
    let (root_rss, root_pss) = root.map_or((0, 0), |m| (m.rss_kib, m.pss_kib));
    let unread = r.others.saturating_sub(r.others_read) as f64;
    (
        root_rss + r.others_rss_kib + (unread * per_other.0) as u64,
        root_pss + r.others_pss_kib + (unread * per_other.1) as u64,
    )
}

/// The readings taken within `window` (all of them if none is).
fn within(readings: &[Reading], window: Option<(Instant, Instant)>) -> Vec<&Reading> {
    let inside: Vec<&Reading> = readings
        .iter()
        .filter(|r| match (window, r.at) {
            (Some((from, to)), Some(at)) => at >= from && at <= to,
            _ => true,
        })
        .collect();
    if inside.is_empty() {
        readings.iter().collect()
    } else {
        inside
    }
}

/// Folds the counts and the memory readings taken within `window` into peaks and
/// means: processes from `counts`, memory from `memory` (with `roots`).
pub fn summarize(
    counts: &[Reading],
    memory: &[Reading],
    roots: &[RootsMemory],
    window: Option<(Instant, Instant)>,
) -> Memory {
    let counts = within(counts, window);
    let memory = within(memory, window);
    let n = counts.len();
    let mut out = Memory {
        samples: n as u32,
        ..Memory::default()
    };
    if n > 0 {
        out.peak_procs = counts.iter().map(|r| r.procs).max().unwrap_or(0);
        out.mean_procs = counts.iter().map(|r| r.procs).sum::<usize>() as f64 / n as f64;
        out.peak_others = counts.iter().map(|r| r.others).max().unwrap_or(0);
        out.mean_others = counts.iter().map(|r| r.others).sum::<usize>() as f64 / n as f64;
    }
    let m = memory.len();
    if m == 0 {
        return out;
    }
    let read: usize = memory.iter().map(|r| r.others_read).sum();
    let others: usize = memory.iter().map(|r| r.others).sum();
    let per_other = if read > 0 {
        (
            memory.iter().map(|r| r.others_rss_kib).sum::<u64>() as f64 / read as f64,
            memory.iter().map(|r| r.others_pss_kib).sum::<u64>() as f64 / read as f64,
        )
    } else {
        (0.0, 0.0)
    };
    let mem: Vec<(u64, u64)> = memory
        .iter()
        .map(|r| tree_memory(r, roots, per_other))
        .collect();
    let mean = |v: u64| v / m as u64;
    out.peak_rss_kib = mem.iter().map(|m| m.0).max().unwrap_or(0);
    out.mean_rss_kib = mean(mem.iter().map(|m| m.0).sum());
    out.peak_pss_kib = mem.iter().map(|m| m.1).max().unwrap_or(0);
    out.mean_pss_kib = mean(mem.iter().map(|m| m.1).sum());
    out.estimated = if others > 0 {
        1.0 - read as f64 / others as f64
    } else {
        0.0
    };
    out
}

/// The processes of the tree under `roots` now, roots first: from the children
/// lists where the kernel has them (`CONFIG_PROC_CHILDREN`), else from every
/// process's stat (with the race described in the module comment).
pub fn members(roots: &[i32]) -> Vec<i32> {
    if procfs::has_children_lists() {
        procfs::tree_by_children(roots)
    } else {
        let all = procfs::all();
        procfs::tree(roots, &all).iter().map(|s| s.pid).collect()
    }
}

/// One count of the tree (no memory read): cheap and of about constant cost, so
/// the counting thread keeps its 20 ms rhythm whatever it finds.
pub fn count(roots: &[i32]) -> Reading {
    let members = members(roots);
    let others = members.iter().filter(|p| !roots.contains(p)).count();
    Reading {
        at: Some(Instant::now()),
        procs: members.len(),
        others,
        ..Reading::default()
    }
}

/// One pass of the memory thread: the tree, and the memory of what is beyond the
/// roots.
pub fn read(roots: &[i32]) -> Reading {
    let members = members(roots);
    let mut r = Reading {
        at: Some(Instant::now()),
        procs: members.len(),
        ..Reading::default()
    };
    for pid in members.into_iter().filter(|p| !roots.contains(p)) {
        r.others += 1;
        // A zombie's statm reads as zeros: exited, not yet reaped, still counted.
        if let Some(rss) = procfs::rss_kib(pid) {
            let pss = procfs::pss_kib(pid).unwrap_or(rss);
            r.others_read += 1;
            r.others_rss_kib += rss;
            r.others_pss_kib += pss;
        }
    }
    r
}

/// The roots' memory now.
pub fn read_roots(roots: &[i32]) -> RootsMemory {
    let mut m = RootsMemory {
        at: Instant::now(),
        rss_kib: 0,
        pss_kib: 0,
    };
    for &pid in roots {
        if let Some(rss) = procfs::rss_kib(pid) {
            m.rss_kib += rss;
            m.pss_kib += procfs::pss_kib(pid).unwrap_or(rss);
        }
    }
    m
}

/// The sampling threads; [`Sampler::stop`] ends them and returns what they saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    counts: JoinHandle<(Vec<Reading>, Duration)>,
    memory: JoinHandle<(Vec<Reading>, Duration)>,
    roots: JoinHandle<(Vec<RootsMemory>, Duration)>,
}

/// Runs `step` now and every `every` until `stop`, returning its results and the
/// CPU this thread used.
fn every<T: Send + 'static>(
    name: &str,
    every: Duration,
    stop: Arc<AtomicBool>,
    mut step: impl FnMut() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<(Vec<T>, Duration)>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let cpu0 = cpu::this_thread();
            let mut out = Vec::new();
            loop {
                let started = Instant::now();
                out.push(step());
                // Checked after a reading, so even a short run has one.
                if stop.load(Ordering::Relaxed) {
                    return (out, cpu::this_thread().saturating_sub(cpu0));
                }
                std::thread::sleep(every.saturating_sub(started.elapsed()));
            }
        })
}

impl Sampler {
    /// Starts reading the trees under `roots` now.
    pub fn start(roots: Vec<i32>) -> std::io::Result<Sampler> {
        Sampler::start_every(roots, EVERY, ROOTS_EVERY)
    }

    pub fn start_every(
        roots: Vec<i32>,
        fast: Duration,
        slow: Duration,
    ) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let (r1, r2) = (roots.clone(), roots.clone());
        let counts = every("report-count", fast, stop.clone(), move || count(&r1))?;
        let memory = every("report-memory", fast, stop.clone(), move || read(&r2))?;
        let roots = every("report-roots", slow, stop.clone(), move || {
            read_roots(&roots)
        })?;
        Ok(Sampler {
            stop,
            counts,
            memory,
            roots,
        })
    }

    /// Stops sampling; peaks and means over the readings within `window` (the
    /// load generator's run).
    pub fn stop(self, window: Option<(Instant, Instant)>) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        let (counts, cpu_counts) = self.counts.join().unwrap_or_default();
        let (memory, cpu_memory) = self.memory.join().unwrap_or_default();
        let (roots, cpu_roots) = self.roots.join().unwrap_or_default();
        let mut m = summarize(&counts, &memory, &roots, window);
        m.sampler_cpu = cpu_counts + cpu_memory + cpu_roots;
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: Instant, others: usize, read: usize, pss: u64) -> Reading {
        Reading {
            at: Some(at),
            procs: others + 1,
            others,
            others_read: read,
            others_rss_kib: pss * 2,
            others_pss_kib: pss,
        }
    }

    #[test]
    fn peaks_means_and_what_exited_before_its_read() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let roots = [
            RootsMemory {
                at: t,
                rss_kib: 1000,
                pss_kib: 800,
            },
            RootsMemory {
                at: ms(100),
                rss_kib: 2000,
                pss_kib: 1600,
            },
        ];
        let readings = [
            reading(ms(0), 0, 0, 0),
            // 4 scripts, 2 read (100 KiB PSS each): the other 2 count 100 each.
            reading(ms(50), 4, 2, 200),
            reading(ms(150), 2, 2, 200),
            reading(ms(500), 0, 0, 0),
        ];
        let m = summarize(&readings, &readings, &roots, Some((ms(40), ms(200))));
        assert_eq!(m.samples, 2);
        assert_eq!((m.peak_others, m.peak_procs), (4, 5));
        assert!((m.mean_others - 3.0).abs() < 1e-9);
        // At 50 ms: 800 + 200 + 2 × 100; at 150 ms: 1600 + 200.
        assert_eq!(m.peak_pss_kib, 1800);
        assert_eq!(m.mean_pss_kib, 1500);
        assert!((m.estimated - 2.0 / 6.0).abs() < 1e-9);
        // Without a window, every reading counts.
        assert_eq!(summarize(&readings, &readings, &roots, None).samples, 4);
        assert_eq!(summarize(&[], &[], &roots, None), Memory::default());
        // Counts and memory come from their own readings.
        let counts = [reading(ms(60), 7, 0, 0)];
        let m = summarize(&counts, &readings, &roots, Some((ms(40), ms(200))));
        assert_eq!((m.samples, m.peak_others, m.peak_pss_kib), (1, 7, 1800));
    }

    #[test]
    fn samples_a_tree_with_children_and_grandchildren() {
        use std::os::unix::process::CommandExt;
        // Three children of a shell that is a child of ours.
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 3 & sleep 3 & sleep 3 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let root = sh.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        let s = Sampler::start_every(
            vec![root],
            Duration::from_millis(5),
            Duration::from_millis(20),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let m = s.stop(None);
        // SAFETY: the group of our own child: the shell and its sleeps.
        unsafe { libc::kill(-root, libc::SIGKILL) };
        let _ = sh.wait();
        assert!(m.samples >= 2);
        assert_eq!((m.peak_others, m.peak_procs), (3, 4), "{m:?}");
        assert!((m.mean_others - 3.0).abs() < 1e-9, "{m:?}");
        assert!(m.peak_rss_kib > 0 && m.peak_pss_kib > 0);
    }
}

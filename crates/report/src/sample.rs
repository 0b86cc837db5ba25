//! The memory of a whole process tree during a run: a thread reads the tree from
//! /proc (via [`cgi_testbed::proctree`]) at a fixed interval and keeps the peak and the mean
//! of its RSS, PSS and process count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cgi_testbed::proctree;

/// How often the tree is read during a run.
pub const EVERY: Duration = Duration::from_millis(50);

/// Peak and mean of the tree's size over a run, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub samples: u32,
    pub peak_rss_kib: u64,
    pub mean_rss_kib: u64,
    /// PSS: shared pages (the interpreter's code, say) split between the processes
    /// that map them, so the sum is what the tree really costs. A process whose PSS
    /// the kernel won't show counts with its RSS.
    pub peak_pss_kib: u64,
    pub mean_pss_kib: u64,
    pub peak_procs: usize,
    pub mean_procs: f64,
}

/// One reading of the tree under `root`: (RSS KiB, PSS KiB, processes).
pub fn read(root: i32) -> (u64, u64, usize) {
    let tree = proctree::tree(root);
    let rss = tree.iter().map(|p| p.rss_kib).sum();
    let pss = tree.iter().map(|p| p.pss_kib.unwrap_or(p.rss_kib)).sum();
    (rss, pss, tree.len())
}

/// Folds readings into peaks and means.
pub fn summarize(readings: &[(u64, u64, usize)]) -> Memory {
    let n = readings.len();
    if n == 0 {
        return Memory::default();
    }
    let sum = |f: fn(&(u64, u64, usize)) -> u64| readings.iter().map(f).sum::<u64>();
    Memory {
        samples: n as u32,
        peak_rss_kib: readings.iter().map(|r| r.0).max().unwrap_or(0),
        mean_rss_kib: sum(|r| r.0) / n as u64,
        peak_pss_kib: readings.iter().map(|r| r.1).max().unwrap_or(0),
        mean_pss_kib: sum(|r| r.1) / n as u64,
        peak_procs: readings.iter().map(|r| r.2).max().unwrap_or(0),
        mean_procs: sum(|r| r.2 as u64) as f64 / n as f64,
    }
}

/// A sampling thread; [`Sampler::stop`] ends it and returns what it saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, u64, usize)>>,
}

impl Sampler {
    /// Starts reading the tree under `root` now and every `every` after.
    pub fn start(root: i32, every: Duration) -> std::io::Result<Sampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("report-sampler".into())
            .spawn(move || {
                let mut readings = Vec::new();
                loop {
                    readings.push(read(root));
                    // Checked after a reading, so even a short run has one.
                    if flag.load(Ordering::Relaxed) {
                        return readings;
                    }
                    std::thread::sleep(every);
                }
            })?;
        Ok(Sampler { stop, thread })
    }

    pub fn stop(self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        summarize(&self.thread.join().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_and_means() {
        let m = summarize(&[(100, 80, 1), (300, 200, 3), (200, 110, 2)]);
        assert_eq!(m.samples, 3);
        assert_eq!((m.peak_rss_kib, m.mean_rss_kib), (300, 200));
        assert_eq!((m.peak_pss_kib, m.mean_pss_kib), (200, 130));
        assert_eq!(m.peak_procs, 3);
        assert!((m.mean_procs - 2.0).abs() < 1e-9);
        assert_eq!(summarize(&[]), Memory::default());
    }

    #[test]
    fn samples_our_own_process() {
        let s = Sampler::start(std::process::id() as i32, Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let m = s.stop();
        assert!(m.samples >= 2);
        assert!(m.peak_rss_kib > 0 && m.peak_pss_kib > 0 && m.peak_procs >= 1);
    }
}

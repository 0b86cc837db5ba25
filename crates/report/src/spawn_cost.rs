//! What starting one process costs, and how it grows with the parent: a trivial
//! program is started with posix_spawn and with fork+exec (the server's own
//! [`cgi_testbed::spawn`]) while this process holds 0, 256 or 1024 MiB of touched
//! memory. fork copies the parent's page tables, so its cost grows with the parent;
//! posix_spawn (vfork-style in glibc) does not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgi_testbed::gateway::env::{DEFAULT_PATH, MetaVars};
use cgi_testbed::spawn::{self, Command, Input, SpawnMode};

/// One mode at one parent size.
#[derive(Debug, Clone)]
pub struct Cell {
    pub mode: SpawnMode,
    /// Memory touched on purpose before measuring.
    pub ballast_mib: usize,
    /// This process's RSS while measuring.
    pub parent_rss_kib: u64,
    pub samples: usize,
    /// From the call until the child has exec'd (both paths return only then).
    pub median_us: f64,
    pub p90_us: f64,
}

/// The trivial program started: `true`.
pub fn trivial_program() -> Option<PathBuf> {
    ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Starts `program` up to `samples` times per mode (or for `cap` per cell) at each
/// ballast size, the two modes taking turns so both see the same conditions.
pub fn measure(program: &Path, ballast_mib: &[usize], samples: usize, cap: Duration) -> Vec<Cell> {
    let env: MetaVars = [("PATH", DEFAULT_PATH)].into_iter().collect();
    let mut cells = Vec::new();
    for &mib in ballast_mib {
        let ballast = touched(mib << 20);
        let parent_rss_kib = own_rss_kib();
        let modes = [SpawnMode::PosixSpawn, SpawnMode::Fork];
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let until = Instant::now() + cap;
        for _ in 0..samples {
            for (i, &mode) in modes.iter().enumerate() {
                if let Some(t) = once(mode, program, &env) {
                    times[i].push(t.as_secs_f64() * 1e6);
                }
            }
            if Instant::now() >= until {
                break;
            }
        }
        std::hint::black_box(&ballast);
        drop(ballast);
        for (i, mode) in modes.into_iter().enumerate() {
            let mut t = std::mem::take(&mut times[i]);
            t.sort_by(f64::total_cmp);
            if t.is_empty() {
                continue;
            }
            let at = |q: f64| t[((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1];
            cells.push(Cell {
                mode,
                ballast_mib: mib,
                parent_rss_kib,
                samples: t.len(),
                median_us: at(0.5),
                p90_us: at(0.9),
            });
        }
    }
    cells
}

/// One start, timed; the child is reaped before returning.
fn once(mode: SpawnMode, program: &Path, env: &MetaVars) -> Option<Duration> {
    let cmd = Command {
        program,
        args: Vec::new(),
        env,
        cwd: Path::new("/"),
        input: Input::Null,
        limits: None,
    };
    let t0 = Instant::now();
    let child = spawn::spawn(mode, cmd).ok()?;
    let took = t0.elapsed();
    let pid = child.pid;
    drop(child);
    let mut status = 0;
    // SAFETY: waitpid on the child we just started.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Some(took)
}

/// `bytes` of memory with every page written, so it is resident and mapped.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for i in (0..bytes).step_by(4096) {
        v[i] = 1;
    }
    v
}

fn own_rss_kib() -> u64 {
    cgi_testbed::proctree::tree(std::process::id() as i32)
        .first()
        .map_or(0, |p| p.rss_kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_start_the_program() {
        let Some(program) = trivial_program() else {
            return;
        };
        let cells = measure(&program, &[0, 8], 3, Duration::from_secs(5));
        assert_eq!(cells.len(), 4);
        for c in &cells {
            assert_eq!(c.samples, 3);
            assert!(c.median_us > 0.0 && c.p90_us >= c.median_us);
        }
        assert!(cells.iter().all(|c| c.parent_rss_kib > 0));
    }
}

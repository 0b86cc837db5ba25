//! Repeats: every cell (a rung at a concurrency) runs `--repeat` times, and the
//! pages show the median with the lowest and highest value. [`Spread`] is that
//! triple; [`median_runs`] folds a cell's runs into one run of medians, which the
//! plots' lines and the verdicts' sentences use.

use std::time::Duration;

use crate::ladder::Rung;
use crate::sweep::Run;

/// The median of a cell's values and their range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: median_sorted(&v),
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// `median (min–max)` with `fmt` for each number, or just the median for one value.
    pub fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.n < 2 {
            fmt(self.median)
        } else {
            format!("{} ({}–{})", fmt(self.median), fmt(self.min), fmt(self.max))
        }
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

/// The runs of each cell, in the order cells first appear in `runs`.
pub fn cells(runs: &[Run]) -> Vec<(Rung, usize, Vec<&Run>)> {
    let mut out: Vec<(Rung, usize, Vec<&Run>)> = Vec::new();
    for r in runs {
        match out
            .iter_mut()
            .find(|(rung, c, _)| *rung == r.rung && *c == r.concurrency)
        {
            Some((_, _, v)) => v.push(r),
            None => out.push((r.rung, r.concurrency, vec![r])),
        }
    }
    out
}

/// One run per cell whose numbers are the medians of the cell's runs. Memory and
/// process counts come from the runs that passed the Little's-law check (all of
/// them if none did, and then the result is marked as failed).
pub fn median_runs(runs: &[Run]) -> Vec<Run> {
    cells(runs)
        .into_iter()
        .map(|(_, _, group)| median_run(&group))
        .collect()
}

fn median_run(group: &[&Run]) -> Run {
    let med = |f: &dyn Fn(&Run) -> f64| median(group.iter().map(|r| f(r)).collect());
    let dur = |f: &dyn Fn(&Run) -> Duration| Duration::from_secs_f64(med(&|r| f(r).as_secs_f64()));
    let trusted: Vec<&Run> = group.iter().copied().filter(|r| r.trusted()).collect();
    let memory_from = if trusted.is_empty() {
        group
    } else {
        &trusted[..]
    };
    let mem = |f: &dyn Fn(&Run) -> f64| median(memory_from.iter().map(|r| f(r)).collect());
    let mut out = group[0].clone();
    out.throughput = med(&|r| r.throughput);
    out.p50 = dur(&|r| r.p50);
    out.p99 = dur(&|r| r.p99);
    out.ok = med(&|r| r.ok as f64).round() as u64;
    out.non_200 = med(&|r| r.non_200 as f64).round() as u64;
    out.errors = med(&|r| r.errors as f64).round() as u64;
    out.elapsed = dur(&|r| r.elapsed);
    out.spawned = group[0]
        .spawned
        .map(|_| med(&|r| r.spawned.unwrap_or(0) as f64).round() as u64);
    // Per answer, then back to a total for the median answer count.
    let answered = out.answered() as f64;
    out.cpu.tree = Duration::from_secs_f64(med(&|r| r.cpu_ms()) * answered / 1e3);
    out.cpu.client = Duration::from_secs_f64(med(&|r| r.client_cpu_ms()) * answered / 1e3);
    out.memory.peak_pss_kib = mem(&|r| r.memory.peak_pss_kib as f64) as u64;
    out.memory.mean_pss_kib = mem(&|r| r.memory.mean_pss_kib as f64) as u64;
    out.memory.peak_rss_kib = mem(&|r| r.memory.peak_rss_kib as f64) as u64;
    out.memory.peak_procs = mem(&|r| r.memory.peak_procs as f64).round() as usize;
    out.memory.mean_procs = mem(&|r| r.memory.mean_procs);
    if !trusted.is_empty() {
        out.little = trusted[0].little;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.show(|v| format!("{v:.0}")), "2 (1–3)");
        assert_eq!(
            Spread::of([5.0]).unwrap().show(|v| format!("{v:.1}")),
            "5.0"
        );
        assert_eq!(Spread::of([]), None);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}

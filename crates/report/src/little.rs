//! The check that the sampler saw what was there. Little's law: the mean number of
//! requests in a system is the arrival rate times the mean time each spends in it.
//! For CGI each answer has one script process, so the processes the sampler sees
//! beyond the server should average answers/s × the mean time a script is alive,
//! which the server's counters give (from its spawn call to its reaping). For a
//! fixed set of processes (workers, gunicorn's and uvicorn's, nginx's) the mean
//! must match the set's size. A run that fails is marked in the report and left out
//! of the verdicts.
//!
//! The server knows a script's lifetime up to how long its spawn call took: the
//! process appears (forks) somewhere inside the call, which on a saturated machine
//! can take many milliseconds of waiting for a CPU before the fork. So the expected
//! count is a range, from the lifetime after the call (`low`) to the lifetime with
//! the whole call (`high`); on a machine with CPU to spare the two nearly agree.

use std::fmt;

/// How far the sampled mean may be outside the expected range: 25%, or 0.05
/// processes when fewer than 0.2 are expected (20 ms sampling cannot resolve less).
pub const TOLERANCE: f64 = 0.25;
const FLOOR: f64 = 0.05;
/// Counts a run needs before its mean means anything (20 at 20 ms: 0.4 s).
pub const MIN_COUNTS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Little {
    /// A process per answer: expected between `low` and `high` alive on average.
    Scripts {
        low: f64,
        high: f64,
        mean: f64,
        peak: usize,
    },
    /// A fixed set of processes beyond the server.
    Fixed { expected: f64, mean: f64 },
    /// Nothing to compare with (no counters of scripts from this server).
    Unchecked,
    /// Too few counts for a mean (a run shorter than half a second).
    TooShort { counts: u32 },
}

impl Little {
    /// Answers per second, and over the scripts reaped during the run: how many,
    /// their summed lifetimes after the spawn call and their spawn calls' durations.
    pub fn scripts(
        answers_per_sec: f64,
        (reaped, lifetimes_secs, spawns_secs): (u64, f64, f64),
        mean: f64,
        peak: usize,
    ) -> Little {
        let per = |total: f64| {
            if reaped > 0 {
                answers_per_sec * total / reaped as f64
            } else {
                0.0
            }
        };
        Little::Scripts {
            low: per(lifetimes_secs),
            high: per(lifetimes_secs + spawns_secs),
            mean,
            peak,
        }
    }

    /// Did the sampler see what the counters say? `None` when unchecked.
    pub fn holds(&self) -> Option<bool> {
        let slack = |x: f64| (TOLERANCE * x).max(FLOOR);
        match *self {
            // A peak below what must be there on average is exactly the failure
            // this check is for: a sampler that missed the scripts.
            Little::Scripts {
                low,
                high,
                mean,
                peak,
            } => Some(
                mean >= low - slack(low)
                    && mean <= high + slack(high)
                    && peak as f64 >= (1.0 - TOLERANCE) * low,
            ),
            Little::Fixed { expected, mean } => Some((mean - expected).abs() <= slack(expected)),
            Little::Unchecked | Little::TooShort { .. } => None,
        }
    }

    /// This check, or [`Little::TooShort`] when `counts` cannot support it.
    pub fn unless_short(self, counts: u32) -> Little {
        if counts < MIN_COUNTS && self != Little::Unchecked {
            Little::TooShort { counts }
        } else {
            self
        }
    }
}

/// 0.8, 12, 31.
fn count(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

impl fmt::Display for Little {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.holds() {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "",
        };
        match *self {
            Little::Scripts {
                low,
                high,
                mean,
                peak,
            } => {
                let expected = if count(low) == count(high) {
                    count(low)
                } else {
                    format!("{}–{}", count(low), count(high))
                };
                write!(
                    f,
                    "{mark}: {} alive on average (peak {peak}), expected {expected}",
                    count(mean)
                )
            }
            Little::Fixed { expected, mean } => {
                write!(
                    f,
                    "{mark}: {} on average, expected {expected:.0}",
                    count(mean)
                )
            }
            Little::Unchecked => f.write_str("not checked"),
            Little::TooShort { counts } => {
                write!(f, "not checked: {counts} counts, too short a run")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_range_give_or_take_a_quarter() {
        // 1000 answers/s; 4000 scripts alive 40 s in all after their spawn calls,
        // which took 8 s in all: between 10 and 12 alive on average.
        let counted = (4000, 40.0, 8.0);
        let ok = Little::scripts(1000.0, counted, 8.0, 30);
        assert_eq!(ok.holds(), Some(true), "{ok}");
        assert_eq!(
            ok.to_string(),
            "ok: 8.0 alive on average (peak 30), expected 10–12"
        );
        assert_eq!(
            Little::scripts(1000.0, counted, 14.9, 30).holds(),
            Some(true)
        );
        assert_eq!(
            Little::scripts(1000.0, counted, 15.1, 30).holds(),
            Some(false)
        );
        // The bad run: 40 in flight, a peak of 1.
        let missed = Little::scripts(1000.0, (4000, 160.0, 0.0), 1.0, 1);
        assert_eq!(missed.holds(), Some(false));
        assert!(missed.to_string().starts_with("FAILED"));
        // The mean may be right while the peak is impossible.
        assert_eq!(
            Little::scripts(1000.0, counted, 10.0, 5).holds(),
            Some(false)
        );
        assert_eq!(
            Little::Fixed {
                expected: 4.0,
                mean: 4.0
            }
            .holds(),
            Some(true)
        );
        assert_eq!(
            Little::Fixed {
                expected: 4.0,
                mean: 2.5
            }
            .holds(),
            Some(false)
        );
        // Near zero only the floor applies.
        assert_eq!(
            Little::scripts(10.0, (10, 0.01, 0.0), 0.04, 1).holds(),
            Some(true)
        );
        assert_eq!(Little::Unchecked.holds(), None);
        // Three counts make no mean.
        let short = Little::scripts(1000.0, counted, 1.0, 1).unless_short(3);
        assert_eq!(short.holds(), None);
        assert_eq!(short.to_string(), "not checked: 3 counts, too short a run");
        assert_eq!(ok.unless_short(MIN_COUNTS), ok);
    }
}

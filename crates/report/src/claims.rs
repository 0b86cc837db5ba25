//! The seed's four claims about CGI and FastCGI, each checked against this machine's
//! numbers: a verdict and one sentence, both computed from the runs, never written in
//! advance. With repeats, the sentence comes from each cell's medians and the
//! verdict from every repeat on its own: one that does not hold at every repeat is
//! "mixed", and says which repeat found what.

use std::collections::BTreeSet;

use crate::ladder::{Language, Model, Rung};
use crate::sweep::{Run, mib};
use crate::timing::Breakdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Partly,
    DoesNotHold,
    NotMeasured,
    /// The repeats disagree.
    Mixed,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "borne out",
            Verdict::Partly => "partly borne out",
            Verdict::DoesNotHold => "not borne out",
            Verdict::NotMeasured => "not measured",
            Verdict::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub claim: &'static str,
    pub verdict: Verdict,
    pub sentence: String,
    /// The number the verdict turns on (`41×`, `96% kept`), to say what each repeat
    /// found when they disagree.
    pub figure: String,
}

/// Languages in the order the headline prefers: the interpreter with the dearest
/// start first, since that is where the models differ most.
const HEADLINE_ORDER: [Language; 4] = [
    Language::Python,
    Language::Php,
    Language::Perl,
    Language::Rust,
];

/// The concurrency the headline compares at: 8 clients if measured, else the nearest.
const REFERENCE_CLIENTS: usize = 8;

/// All four claims, over every repeat's runs.
pub fn check(runs: &[Run], timing: &[Breakdown]) -> Vec<Claim> {
    let mut claims = check_once(&crate::spread::median_runs(runs), timing);
    let repeats: BTreeSet<usize> = runs.iter().map(|r| r.repeat).collect();
    if repeats.len() < 2 {
        return claims;
    }
    let per_repeat: Vec<(usize, Vec<Claim>)> = repeats
        .iter()
        .map(|&k| {
            let only: Vec<Run> = runs.iter().filter(|r| r.repeat == k).cloned().collect();
            (k, check_once(&only, timing))
        })
        .collect();
    for (i, claim) in claims.iter_mut().enumerate() {
        let found: Vec<(usize, &Claim)> = per_repeat.iter().map(|(k, c)| (*k, &c[i])).collect();
        let first = found[0].1.verdict;
        if found.iter().all(|(_, c)| c.verdict == first) {
            claim.verdict = first;
            continue;
        }
        claim.verdict = Verdict::Mixed;
        claim.sentence += &format!(" Mixed: {}.", disagreement(&found));
    }
    claims
}

/// "borne out in repeats 1 and 3 (41×, 39×), partly borne out in repeat 2 (1.9×)".
fn disagreement(found: &[(usize, &Claim)]) -> String {
    let mut verdicts: Vec<Verdict> = Vec::new();
    for (_, c) in found {
        if !verdicts.contains(&c.verdict) {
            verdicts.push(c.verdict);
        }
    }
    verdicts
        .into_iter()
        .map(|v| {
            let these: Vec<&(usize, &Claim)> =
                found.iter().filter(|(_, c)| c.verdict == v).collect();
            let numbers: Vec<String> = these.iter().map(|(k, _)| k.to_string()).collect();
            let which = match numbers.as_slice() {
                [one] => format!("repeat {one}"),
                [rest @ .., last] => format!("repeats {} and {last}", rest.join(", ")),
                [] => String::new(),
            };
            let figures: Vec<&str> = these
                .iter()
                .map(|(_, c)| c.figure.as_str())
                .filter(|f| !f.is_empty())
                .collect();
            if figures.is_empty() {
                format!("{} in {which}", v.text())
            } else {
                format!("{} in {which} ({})", v.text(), figures.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The four claims from one set of runs (one per cell).
fn check_once(runs: &[Run], timing: &[Breakdown]) -> Vec<Claim> {
    vec![
        process_per_request(runs, timing),
        wastes_memory(runs),
        degrades(runs),
        pool_scales(runs),
    ]
}

/// `rung`'s runs by concurrency.
fn series(runs: &[Run], rung: Rung) -> Vec<&Run> {
    let mut s: Vec<&Run> = runs.iter().filter(|r| r.rung == rung).collect();
    s.sort_by_key(|r| r.concurrency);
    s
}

/// Languages with both a CGI and a FastCGI series, headline first.
fn compared(runs: &[Run]) -> Vec<Language> {
    HEADLINE_ORDER
        .into_iter()
        .filter(|&l| {
            !series(runs, Rung::new(Model::Cgi, l)).is_empty()
                && !series(runs, Rung::new(Model::FastCgi, l)).is_empty()
        })
        .collect()
}

/// (CGI run, FastCGI run) of `l` at the concurrency nearest `clients` both have.
fn pair_near(runs: &[Run], l: Language, clients: usize) -> Option<(&Run, &Run)> {
    let cgi = series(runs, Rung::new(Model::Cgi, l));
    let fcgi = series(runs, Rung::new(Model::FastCgi, l));
    cgi.iter()
        .filter_map(|c| {
            let f = fcgi.iter().find(|f| f.concurrency == c.concurrency)?;
            Some((*c, *f))
        })
        .min_by_key(|(c, _)| c.concurrency.abs_diff(clients))
}

/// 41× or 3.4×.
pub fn times(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.1}×")
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn processes(n: u64) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{} processes", count(n))
    }
}

fn clients(n: usize) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

fn process_per_request(runs: &[Run], timing: &[Breakdown]) -> Claim {
    let claim = "CGI starts a process per request";
    let tally = |model: Model| {
        runs.iter()
            .filter(|r| r.rung.model == model)
            .filter_map(|r| Some((r.spawned?, r.answered())))
            .fold((0, 0), |(s, a), (s2, a2)| (s + s2, a + a2))
    };
    let (cgi_spawned, cgi_answered) = tally(Model::Cgi);
    if cgi_answered == 0 {
        return Claim {
            claim,
            verdict: Verdict::NotMeasured,
            sentence: "No CGI run answered a request.".into(),
            figure: String::new(),
        };
    }
    let per = cgi_spawned as f64 / cgi_answered as f64;
    let verdict = if per >= 0.95 {
        Verdict::Holds
    } else {
        Verdict::DoesNotHold
    };
    let mut sentence = format!(
        "The /cgi-bin/ runs started {} for {} answers ({per:.2} per request)",
        processes(cgi_spawned),
        count(cgi_answered)
    );
    let (fcgi_spawned, fcgi_answered) = tally(Model::FastCgi);
    if fcgi_answered > 0 {
        sentence += &format!(
            "; the /fcgi-bin/ runs served {} answers from pools started before them",
            count(fcgi_answered)
        );
        if fcgi_spawned > 0 {
            // Workers that ended (php-cgi ends itself every 500 requests, say) are
            // replaced; which language did is worth naming.
            let by_language: Vec<String> = HEADLINE_ORDER
                .iter()
                .filter_map(|&l| {
                    let n: u64 = series(runs, Rung::new(Model::FastCgi, l))
                        .iter()
                        .filter_map(|r| r.spawned)
                        .sum();
                    (n > 0).then(|| format!("{} {}", l.name(), count(n)))
                })
                .collect();
            sentence += &format!(
                ", starting {} as workers were replaced ({})",
                processes(fcgi_spawned),
                by_language.join(", ")
            );
        }
    }
    let cgi_cost = HEADLINE_ORDER.iter().find_map(|&l| {
        let b = timing.iter().find(|b| b.rung == Rung::new(Model::Cgi, l))?;
        let warm = timing
            .iter()
            .find(|b| b.rung == Rung::new(Model::FastCgi, l));
        Some((l, b, warm))
    });
    if let Some((l, b, warm)) = cgi_cost {
        sentence += &format!(
            ". Each {} CGI request paid {:.2} ms to start the process and {:.1} ms for the interpreter and script before its first byte",
            l.name(),
            b.spawn,
            b.script()
        );
        if let Some(w) = warm {
            sentence += &format!(", a warm worker {:.2} ms in all", w.ttfb);
        }
    }
    if let Some((l, c, f)) = HEADLINE_ORDER
        .iter()
        .find_map(|&l| pair_near(runs, l, REFERENCE_CLIENTS).map(|(c, f)| (l, c, f)))
    {
        sentence += &format!(
            ". At {} each {} CGI answer cost {:.2} ms of CPU (server and script) against {:.2} ms from a warm worker ({})",
            clients(c.concurrency),
            l.name(),
            c.cpu_ms(),
            f.cpu_ms(),
            times(c.cpu_ms() / f.cpu_ms().max(1e-9))
        );
    }
    sentence.push('.');
    Claim {
        claim,
        verdict,
        sentence,
        figure: format!("{per:.2} per request"),
    }
}

fn wastes_memory(runs: &[Run]) -> Claim {
    let claim = "…wastes memory";
    let langs = compared(runs);
    let Some(&head) = langs.first() else {
        return not_compared(claim);
    };
    let cgi = series(runs, Rung::new(Model::Cgi, head));
    let fcgi = series(runs, Rung::new(Model::FastCgi, head));
    // Peak PSS of the whole tree, per concurrency both measured, from runs whose
    // process count passed the check.
    let untrusted = cgi.iter().chain(&fcgi).filter(|r| !r.trusted()).count();
    let pairs: Vec<(usize, u64, u64)> = cgi
        .iter()
        .filter(|c| c.trusted())
        .filter_map(|c| {
            let f = fcgi
                .iter()
                .find(|f| f.concurrency == c.concurrency && f.trusted())?;
            Some((c.concurrency, c.memory.peak_pss_kib, f.memory.peak_pss_kib))
        })
        .collect();
    let more = pairs.iter().filter(|(_, c, f)| c > f).count();
    let verdict = if more == pairs.len() {
        Verdict::Holds
    } else if more > 0 {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    };
    let (Some(low), Some(high)) = (pairs.first(), pairs.last()) else {
        if untrusted > 0 {
            return Claim {
                claim,
                verdict: Verdict::NotMeasured,
                sentence: format!(
                    "No {} CGI and FastCGI runs at the same concurrency passed the process-count check.",
                    head.name()
                ),
                figure: String::new(),
            };
        }
        return not_compared(claim);
    };
    let ratio = |c: u64, f: u64| c as f64 / f.max(1) as f64;
    let mut sentence = format!(
        "At {} the {} CGI process tree peaked at {:.0} MiB PSS against {:.0} MiB with FastCGI workers ({})",
        clients(high.0),
        head.name(),
        mib(high.1),
        mib(high.2),
        times(ratio(high.1, high.2))
    );
    if low.0 != high.0 {
        sentence += &format!(
            ", at {} {:.0} against {:.0} MiB ({})",
            clients(low.0),
            mib(low.1),
            mib(low.2),
            times(ratio(low.1, low.2))
        );
    }
    sentence += ": CGI's memory follows the number of requests in flight, a pool's its size";
    let others: Vec<String> = langs[1..]
        .iter()
        .filter_map(|&l| {
            let (c, f) = pair_near(runs, l, high.0)?;
            Some(format!(
                "{} {}",
                l.name(),
                times(ratio(c.memory.peak_pss_kib, f.memory.peak_pss_kib))
            ))
        })
        .collect();
    if !others.is_empty() {
        sentence += &format!(
            " (CGI/FastCGI at {}: {})",
            clients(high.0),
            others.join(", ")
        );
    }
    if untrusted > 0 {
        sentence += &format!(
            "; {untrusted} {} run{} left out, {} process count failed the Little's-law check",
            head.name(),
            if untrusted == 1 { " is" } else { "s are" },
            if untrusted == 1 { "its" } else { "their" }
        );
    }
    sentence.push('.');
    Claim {
        claim,
        verdict,
        sentence,
        figure: times(ratio(high.1, high.2)),
    }
}

/// Throughput at the highest concurrency as a share of the series' peak, and where
/// the peak was.
fn retention<'a>(s: &[&'a Run]) -> Option<(f64, &'a Run, &'a Run)> {
    let peak = s
        .iter()
        .max_by(|a, b| a.throughput.total_cmp(&b.throughput))?;
    let last = s.last()?;
    Some((last.throughput / peak.throughput.max(1e-9), *peak, *last))
}

fn degrades(runs: &[Run]) -> Claim {
    let claim = "…and degrades under traffic";
    let head = compared(runs).first().copied().or_else(|| {
        HEADLINE_ORDER
            .into_iter()
            .chain([Language::Sh])
            .find(|&l| !series(runs, Rung::new(Model::Cgi, l)).is_empty())
    });
    let Some(head) = head else {
        return not_compared(claim);
    };
    let cgi = series(runs, Rung::new(Model::Cgi, head));
    let (Some((kept, peak, last)), Some(first)) = (retention(&cgi), cgi.first()) else {
        return not_compared(claim);
    };
    let verdict = if kept < 0.8 {
        Verdict::Holds
    } else if kept < 0.95 {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    };
    let mut sentence = if peak.concurrency == last.concurrency {
        format!(
            "{} CGI's throughput still rose to {:.0} req/s at {} (from {:.0} at {})",
            head.name(),
            last.throughput,
            clients(last.concurrency),
            first.throughput,
            clients(first.concurrency)
        )
    } else {
        format!(
            "{} CGI peaked at {:.0} req/s with {} and gave {:.0} req/s ({:.0}%) at {}",
            head.name(),
            peak.throughput,
            clients(peak.concurrency),
            last.throughput,
            kept * 100.0,
            clients(last.concurrency)
        )
    };
    sentence += &format!(
        ", while its p99 latency went from {:.1} ms to {:.0} ms",
        crate::sweep::ms(first.p99),
        crate::sweep::ms(last.p99)
    );
    let fcgi = series(runs, Rung::new(Model::FastCgi, head));
    if let Some((fkept, fpeak, _)) = retention(&fcgi) {
        sentence += &format!(
            "; FastCGI kept {:.0}% of a {} higher peak",
            fkept * 100.0,
            times(fpeak.throughput / peak.throughput.max(1e-9))
        );
    }
    sentence += match verdict {
        Verdict::Holds => ": it collapses under load.",
        Verdict::Partly => ": it sags under load.",
        _ => ": it saturates rather than collapses, and the cost is latency and a low ceiling.",
    };
    Claim {
        claim,
        verdict,
        sentence,
        figure: format!("{:.0}% kept", kept * 100.0),
    }
}

fn pool_scales(runs: &[Run]) -> Claim {
    let claim = "FastCGI keeps a pool of long-lived processes that scales";
    let langs = compared(runs);
    let Some(&head) = langs.first() else {
        return not_compared(claim);
    };
    let Some((c, f)) = pair_near(runs, head, REFERENCE_CLIENTS) else {
        return not_compared(claim);
    };
    let speedup = f.throughput / c.throughput.max(1e-9);
    let memory = c.memory.peak_pss_kib as f64 / f.memory.peak_pss_kib.max(1) as f64;
    let memory_text = if memory >= 1.1 {
        format!("{} less memory", times(memory))
    } else if memory <= 0.9 {
        format!("{} more memory", times(1.0 / memory))
    } else {
        "about the same memory".into()
    };
    let fcgi = series(runs, Rung::new(Model::FastCgi, head));
    let kept = retention(&fcgi).map_or(0.0, |r| r.0);
    // CPU per answer, CGI over FastCGI: a pool that serves more but burns more CPU
    // per request would not be the better model.
    let cpu = c.cpu_ms() / f.cpu_ms().max(1e-9);
    let verdict = if speedup >= 2.0 && kept >= 0.9 && cpu > 1.0 {
        Verdict::Holds
    } else if speedup >= 1.2 {
        Verdict::Partly
    } else {
        Verdict::DoesNotHold
    };
    let cpu_text = if cpu >= 1.1 {
        format!("{} less CPU per request", times(cpu))
    } else if cpu <= 0.9 {
        format!("{} more CPU per request", times(1.0 / cpu))
    } else {
        "about the same CPU per request".into()
    };
    let mut sentence = format!(
        "Worker mode served {} {} the requests of CGI at {} with {memory_text} and {cpu_text}",
        head.name(),
        times(speedup),
        clients(c.concurrency)
    );
    if let (Some(first), Some(last)) = (fcgi.first(), fcgi.last())
        && first.concurrency != last.concurrency
    {
        sentence += &format!(
            ", and went from {:.0} req/s at {} to {:.0} at {} ({:.0}% of its peak)",
            first.throughput,
            clients(first.concurrency),
            last.throughput,
            clients(last.concurrency),
            kept * 100.0
        );
    }
    let others: Vec<String> = langs[1..]
        .iter()
        .filter_map(|&l| {
            let (c, f) = pair_near(runs, l, REFERENCE_CLIENTS)?;
            Some(format!(
                "{} {}",
                l.name(),
                times(f.throughput / c.throughput.max(1e-9))
            ))
        })
        .collect();
    if !others.is_empty() {
        sentence += &format!(
            " (FastCGI/CGI at {}: {})",
            clients(c.concurrency),
            others.join(", ")
        );
    }
    sentence.push('.');
    Claim {
        claim,
        verdict,
        sentence,
        figure: times(speedup),
    }
}

fn not_compared(claim: &'static str) -> Claim {
    Claim {
        claim,
        verdict: Verdict::NotMeasured,
        sentence: "No language was measured both as CGI and as FastCGI.".into(),
        figure: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::little::Little;
    use crate::sample::Memory;
    use crate::sweep::Cpu;
    use std::time::Duration;

    fn run(model: Model, l: Language, c: usize, tput: f64, pss_mib: u64) -> Run {
        Run {
            rung: Rung::new(model, l),
            concurrency: c,
            throughput: tput,
            p50: Duration::from_millis(10),
            p99: Duration::from_millis(10 * c as u64),
            ok: (tput * 5.0) as u64,
            non_200: 0,
            errors: 0,
            connects: c as u64,
            elapsed: Duration::from_secs(5),
            memory: Memory {
                peak_pss_kib: pss_mib * 1024,
                ..Memory::default()
            },
            spawned: Some(if model == Model::Cgi {
                (tput * 5.0) as u64
            } else {
                0
            }),
            // 10 ms of CPU per CGI answer, 2 per FastCGI one.
            cpu: Cpu {
                tree: Duration::from_secs_f64(
                    tput * 5.0 * if model == Model::Cgi { 0.010 } else { 0.002 },
                ),
                ..Cpu::default()
            },
            little: Little::Unchecked,
            load_before: 0.0,
            load: 0.0,
            repeat: 1,
        }
    }

    #[test]
    fn sentences_come_from_the_numbers() {
        let py = Language::Python;
        let runs = vec![
            run(Model::Cgi, py, 1, 30.0, 20),
            run(Model::Cgi, py, 8, 50.0, 300),
            run(Model::Cgi, py, 64, 48.0, 900),
            run(Model::FastCgi, py, 1, 900.0, 100),
            run(Model::FastCgi, py, 8, 2050.0, 100),
            run(Model::FastCgi, py, 64, 2000.0, 100),
        ];
        let mut runs = runs;
        runs[5].spawned = Some(3);
        let claims = check(&runs, &[]);
        assert_eq!(claims[0].verdict, Verdict::Holds);
        assert!(
            claims[0].sentence.contains("1.00 per request"),
            "{}",
            claims[0].sentence
        );
        assert!(
            claims[0]
                .sentence
                .contains("starting 3 processes as workers were replaced (python 3)"),
            "{}",
            claims[0].sentence
        );
        assert!(
            claims[0]
                .sentence
                .contains("each python CGI answer cost 10.00 ms of CPU (server and script) against 2.00 ms from a warm worker (5.0×)"),
            "{}",
            claims[0].sentence
        );
        assert_eq!(claims[1].verdict, Verdict::Partly);
        assert!(
            claims[1].sentence.contains("9.0×"),
            "{}",
            claims[1].sentence
        );
        assert_eq!(claims[2].verdict, Verdict::DoesNotHold);
        assert!(claims[2].sentence.contains("96%"), "{}", claims[2].sentence);
        assert_eq!(claims[3].verdict, Verdict::Holds);
        assert!(
            claims[3]
                .sentence
                .starts_with("Worker mode served python 41× the requests of CGI at 8 clients with 3.0× less memory and 5.0× less CPU per request"),
            "{}",
            claims[3].sentence
        );

        // A run whose process count failed the check is left out of the memory verdict.
        runs[2].little = Little::Fixed {
            expected: 40.0,
            mean: 1.0,
        };
        let memory = &check(&runs, &[])[1];
        assert_eq!(memory.verdict, Verdict::Partly, "{}", memory.sentence);
        assert!(
            memory.sentence.starts_with("At 8 clients")
                && memory.sentence.contains("1 python run is left out"),
            "{}",
            memory.sentence
        );
    }

    #[test]
    fn repeats_that_disagree_make_a_mixed_verdict() {
        let py = Language::Python;
        let repeat = |k: usize, fcgi_at_8: f64| {
            let mut runs = vec![
                run(Model::Cgi, py, 1, 30.0, 20),
                run(Model::Cgi, py, 8, 50.0, 300),
                run(Model::FastCgi, py, 1, 900.0, 100),
                run(Model::FastCgi, py, 8, fcgi_at_8, 100),
            ];
            for r in &mut runs {
                r.repeat = k;
            }
            runs
        };
        // FastCGI 41× CGI in repeats 1 and 3, only 1.5× in repeat 2.
        let runs: Vec<Run> = [repeat(1, 2050.0), repeat(2, 75.0), repeat(3, 2000.0)].concat();
        let claims = check(&runs, &[]);
        let pool = &claims[3];
        assert_eq!(pool.verdict, Verdict::Mixed);
        assert!(
            pool.sentence
                .ends_with("Mixed: borne out in repeats 1 and 3 (41×, 40×), partly borne out in repeat 2 (1.5×)."),
            "{}",
            pool.sentence
        );
        // The sentence is from the medians: 2000 req/s against 50.
        assert!(
            pool.sentence.starts_with("Worker mode served python 40×"),
            "{}",
            pool.sentence
        );
        // Claims every repeat agrees on keep their verdict.
        assert_eq!(claims[0].verdict, Verdict::Holds);
    }

    #[test]
    fn nothing_to_compare() {
        let claims = check(&[], &[]);
        assert!(claims.iter().all(|c| c.verdict == Verdict::NotMeasured));
    }
}

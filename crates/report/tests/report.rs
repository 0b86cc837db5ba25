//! The report end to end on a tiny sweep: sh as CGI and the static file at 1 and 2
//! clients, a few dozen requests each, twice over, through the library entry point.

use std::path::Path;
use std::time::Duration;

use cgi_testbed_load::Limits;
use cgi_testbed_report::ladder::Language;
use cgi_testbed_report::{self as report, Options, Progress};

/// The numbers in the row of a Markdown table whose first cell is `first`.
fn row(md: &str, first: &str) -> Vec<f64> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{md}"));
    line.split('|')
        .skip(2)
        .filter_map(|c| c.split_whitespace().next()?.parse().ok())
        .collect()
}

fn tiny(out: &Path) -> Options {
    Options {
        languages: vec![Language::Sh],
        concurrency: vec![1, 2],
        limits: Limits {
            requests: 40,
            duration: Duration::from_secs(5),
        },
        warmup: Duration::from_millis(100),
        workers: 2,
        spawn_samples: 5,
        spawn_cap: Duration::from_secs(2),
        ballast_mib: vec![0, 16],
        progress: Progress::Quiet,
        repeat: 2,
        // tests/reference.rs runs those.
        reference: false,
        ..Options::quick(out.to_path_buf())
    }
}

#[test]
fn a_tiny_sweep_writes_both_pages_with_non_zero_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let r = report::run(&tiny(&out)).expect("report");

    // What was measured: both rungs at both concurrencies twice, every request
    // answered.
    assert_eq!(r.runs.len(), 8, "{:#?}", r.notes);
    assert_eq!(r.runs.iter().filter(|r| r.repeat == 2).count(), 4);
    for run in &r.runs {
        assert_eq!(run.ok, 40, "{run:?}");
        assert!(run.throughput > 0.0 && run.p99 >= run.p50 && run.p50 > Duration::ZERO);
        assert!(run.memory.samples >= 1 && run.memory.peak_pss_kib > 0);
        // Our server's own counters were read, and the sampler saw what they say.
        assert!(run.cpu.server.is_some() && run.spawned.is_some(), "{run:?}");
        assert_ne!(run.little.holds(), Some(false), "{run:?}");
    }
    let cgi: Vec<_> = r
        .runs
        .iter()
        .filter(|r| r.rung.label() == "sh CGI")
        .collect();
    assert!(cgi.iter().all(|r| r.spawned == Some(40)), "{cgi:?}");
    // 40 scripts, each a few milliseconds of CPU (measured from wait4, /proc agrees
    // to the 10 ms tick /proc counts in).
    for r in &cgi {
        assert!(r.cpu.tree >= Duration::from_millis(10), "{r:?}");
        let (wait4, proc) = (r.cpu.reaped_wait4.unwrap(), r.cpu.reaped_proc.unwrap());
        assert!(wait4.abs_diff(proc) <= Duration::from_millis(30), "{r:?}");
    }

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in [
        "## The machine",
        "## The seed's claims",
        "## Throughput",
        "## Latency",
        "## CPU time per request",
        "## Memory of the serving process tree",
        "## Where one request's time goes",
        "## Starting each program",
        "## Starting a process: posix_spawn, fork and the parent's size",
        "## Every run",
    ] {
        assert!(md.contains(heading), "no {heading:?} in:\n{md}");
    }
    assert!(md.contains(
        "![Throughput against concurrent clients, per model and language](throughput.svg)"
    ));
    assert!(md.contains("| req/s by clients | 1 | 2 |"), "{md}");
    for first in ["sh CGI", "static file"] {
        let rates = row(&md, first);
        assert_eq!(rates.len(), 2, "{first}: {rates:?}");
        assert!(rates.iter().all(|&v| v > 0.0), "{first}: {rates:?}");
    }
    // Medians with the range of the two repeats: "1234 (1200–1300)".
    let line = md.lines().find(|l| l.starts_with("| sh CGI |")).unwrap();
    assert!(line.contains(" (") && line.contains('–'), "{line}");
    assert!(
        md.contains("| CPU ms per request by clients | 1 | 2 |"),
        "{md}"
    );
    // The Server-Timing breakdown: queue, spawn, script, relay, total, client.
    let timing = md.split("## Where one request's time goes").nth(1).unwrap();
    let t = row(timing, "sh CGI");
    assert_eq!(t.len(), 6, "{t:?}");
    assert!(
        t[1] > 0.0 && t[4] > 0.0 && t[5] > 0.0,
        "spawn and total: {t:?}"
    );
    // sh started directly: its median start and CPU.
    let starts = md.split("## Starting each program").nth(1).unwrap();
    let sh = row(starts, "sh (hello)");
    assert!(sh.len() >= 2 && sh[0] > 0.0 && sh[1] > 0.0, "{sh:?}");
    // fork vs posix_spawn: parent RSS, then the medians.
    for size in ["0 MiB", "16 MiB"] {
        let s = row(&md, size);
        assert!(
            s.len() >= 3 && s[..3].iter().all(|&v| v > 0.0),
            "{size}: {s:?}"
        );
    }
    // Four claims, each with a verdict.
    for claim in [
        "**CGI starts a process per request** — *borne out.*",
        "**…wastes memory**",
        "**…and degrades under traffic**",
        "**FastCGI keeps a pool of long-lived processes that scales**",
    ] {
        assert!(md.contains(claim), "no {claim:?} in:\n{md}");
    }
    assert!(
        md.contains("40 processes for 40 answers") || md.contains("80 processes for 80 answers"),
        "{md}"
    );

    for svg in [
        "throughput.svg",
        "latency-p50.svg",
        "latency-p99.svg",
        "cpu.svg",
        "memory.svg",
        "processes.svg",
    ] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg") && text.contains("sh CGI"), "{svg}");
    }

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 6, "the plots are inline");
    assert!(html.contains("<style>") && html.matches("<table>").count() >= 8);
    assert!(html.contains("<td>sh CGI</td>"));
    // Self-contained: nothing to fetch, nothing to run.
    for external in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(external), "index.html has {external}");
    }
}

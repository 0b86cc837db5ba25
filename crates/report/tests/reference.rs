//! The reference servers, where installed: each answers the rung's request through
//! the same load generator for 0.6 s, its whole process tree is measured, and
//! nothing of it is left once it is dropped. Skipped (with a line on stderr) when
//! not installed.

use std::time::Duration;

use cgi_testbed_load::Limits;
use cgi_testbed_report::ladder::{self, Language, Peers, Rung};
use cgi_testbed_report::reference::Reference;
use cgi_testbed_report::sweep::{self, CpuSource, Target};

#[test]
fn each_reference_server_answers_and_is_measured() {
    let peers = Peers::detect();
    let dir = tempfile::tempdir().unwrap();
    let site = ladder::prepare(dir.path(), &peers).unwrap();
    let languages = if peers.hello_rs.is_some() {
        vec![Language::Rust]
    } else {
        vec![Language::Sh]
    };
    let mut cgi_cpu = Vec::new();
    let accounting = cgi_testbed_report::cgroup::Accounting::new().is_some();
    for rung in ladder::references(&languages) {
        if let Some(why) = peers.missing(rung) {
            eprintln!("skipped {}: {why}", rung.label());
            continue;
        }
        let reference = Reference::start(rung, &site, &peers, 2)
            .unwrap_or_else(|e| panic!("{}: {e}", rung.label()));
        let roots = reference.roots();
        let answer = cgi_testbed_load::get(reference.addr, &rung.path()).unwrap();
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, 200, "{}: {body}", rung.label());
        assert!(body.contains("Hello"), "{}: {body}", rung.label());

        let mut target = Target::Reference(reference, rung.model);
        // Long enough for the process check (20 counts at 20 ms).
        let limits = Limits {
            requests: u64::MAX,
            duration: Duration::from_millis(600),
        };
        let (run, _) =
            sweep::measure(&mut target, rung, &rung.path(), 2, limits, &mut |_, _| {}).unwrap();
        assert!(run.ok >= 10 && run.errors == 0, "{}: {run:?}", rung.label());
        assert!(
            run.memory.peak_procs >= roots.len(),
            "{}: {run:?}",
            rung.label()
        );
        assert!(run.memory.peak_pss_kib > 0, "{}: {run:?}", rung.label());
        // Fixed pools are checked; a CGI reference has no counters to check against.
        assert_ne!(
            run.little.holds(),
            Some(false),
            "{}: {}",
            rung.label(),
            run.little
        );
        assert_eq!(run.little.holds().is_none(), rung.model.is_cgi());
        // With a control group, every server's CPU is complete, fcgiwrap's too.
        if accounting {
            assert_eq!(run.cpu.source, CpuSource::Cgroup, "{}", rung.label());
        }
        if rung.model.is_cgi() && run.cpu_ms().is_finite() {
            cgi_cpu.push((rung.label(), run.cpu_ms()));
        }
        target.stop();
        for pid in roots {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{}: process {pid} outlived its rung",
                rung.label()
            );
        }
    }
    // lighttpd and nginx+fcgiwrap start the same program once per request: neither
    // may look much cheaper than the other (fcgiwrap's scripts went missing from
    // /proc's accounting before the control groups).
    if let [(a, x), (b, y)] = &cgi_cpu[..] {
        assert!(x / y < 2.5 && y / x < 2.5, "{a}: {x:.3} ms, {b}: {y:.3} ms");
    }
}

#[test]
fn a_reference_for_each_model_with_the_cheapest_program() {
    let labels =
        |l: &[Language]| -> Vec<String> { ladder::references(l).iter().map(Rung::label).collect() };
    assert_eq!(
        labels(&[Language::Python, Language::Rust, Language::Sh]),
        [
            "rust CGI · lighttpd",
            "rust CGI · nginx+fcgiwrap",
            "rust FastCGI · nginx",
            "static file · nginx"
        ]
    );
    // sh cannot speak FastCGI: no FastCGI reference for it alone.
    assert_eq!(
        labels(&[Language::Sh]),
        [
            "sh CGI · lighttpd",
            "sh CGI · nginx+fcgiwrap",
            "static file · nginx"
        ]
    );
    let none = Peers::default();
    let why = none
        .missing(ladder::references(&[Language::Sh])[1])
        .unwrap();
    assert!(why.contains("nginx"), "{why}");
}

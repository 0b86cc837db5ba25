//! The report's instruments against known loads, with the real server and real
//! scripts: the process sampler must see scripts that are there, and the CPU
//! accounting must find CPU that was burnt. The tolerances are the issue's.

mod common;

use std::time::Duration;

use cgi_testbed_load::Limits;
use cgi_testbed_report::ladder::{Language, Model, Rung};
use cgi_testbed_report::sweep::{self, Target};

/// 32 scripts that each live one second, all requested at once: the sampler must
/// see at least 28 of them alive at some point, and Little's law must hold.
#[test]
fn the_sampler_sees_32_sleeping_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let site = common::site(
        dir.path(),
        &[(
            "sleeper",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec sleep 1\n",
        )],
    );
    let mut target = Target::Ours(common::start(&site, 32));
    let limits = Limits {
        requests: 32,
        duration: Duration::from_secs(30),
    };
    let rung = Rung::new(Model::Cgi, Language::Sh);
    let (run, _) = sweep::measure(
        &mut target,
        rung,
        "/cgi-bin/sleeper",
        32,
        limits,
        &mut |_, _| {},
    )
    .unwrap();
    target.stop();
    eprintln!(
        "32 sleepers: peak {} alive; Little's law {}",
        run.memory.peak_others, run.little
    );
    assert_eq!((run.ok, run.errors), (32, 0), "{run:?}");
    assert!(run.memory.peak_others >= 28, "{:?}", run.memory);
    assert_eq!(run.spawned, Some(32));
    assert_eq!(run.little.holds(), Some(true), "{}", run.little);
}

/// A program that burns 50 ms of CPU per request: the report's CPU per request
/// (server and scripts) must come out within 30% of it.
#[test]
fn cpu_per_request_finds_a_known_burn() {
    let dir = tempfile::tempdir().unwrap();
    let site = common::site(dir.path(), &[]);
    let burner = r#"
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec t;
    do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    while (t.tv_sec * 1000000000L + t.tv_nsec < 50000000L);
    fputs("Content-Type: text/plain\r\n\r\nburnt 50 ms\n", stdout);
    return 0;
}
"#;
    if common::compile_c(&site.cgi_dir, "burn", burner).is_none() {
        return;
    }
    let mut target = Target::Ours(common::start(&site, 2));
    let limits = Limits {
        requests: 20,
        duration: Duration::from_secs(60),
    };
    let rung = Rung::new(Model::Cgi, Language::Sh);
    let (run, _) = sweep::measure(
        &mut target,
        rung,
        "/cgi-bin/burn",
        2,
        limits,
        &mut |_, _| {},
    )
    .unwrap();
    target.stop();
    assert_eq!(run.ok, 20, "{run:?}");
    let per = run.cpu_ms();
    eprintln!(
        "50 ms burner: {per:.1} ms of CPU per request ({:?})",
        run.cpu
    );
    assert!(
        (per - 50.0).abs() <= 15.0,
        "{per:.1} ms per request: {:?}",
        run.cpu
    );
    // The server's wait4 counters and /proc's cutime say the same.
    let (wait4, proc) = (run.cpu.reaped_wait4.unwrap(), run.cpu.reaped_proc.unwrap());
    assert!(
        wait4.abs_diff(proc) <= Duration::from_millis(30),
        "{:?}",
        run.cpu
    );
}

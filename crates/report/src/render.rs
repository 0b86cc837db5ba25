//! Writes a [`Report`] as `report.md` (with the plots as SVG files next to it) and as
//! `index.html`, one self-contained page with the same plots inline and inline CSS.
//! Both come from one list of blocks, so the two never say different things.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::Report;
use crate::claims::{Claim, Verdict, times};
use crate::ladder::{Language, Model, Rung};
use crate::plot::{self, Point, Series};
use crate::spawn_cost::Cell;
use crate::spread::Spread;
use crate::sweep::{CpuSource, Run, mib, ms};
use cgi_testbed::html::escape;
use cgi_testbed::spawn::SpawnMode;

/// A table: header, rows, and which columns are numbers (right-aligned).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub numeric: Vec<bool>,
}

enum Block {
    Heading(String),
    /// Text with `code` and **bold** spans.
    Para(String),
    List(Vec<String>),
    Claims(Vec<Claim>),
    Table(Table),
    /// A plot: file name, alt text, SVG.
    Plot(String, String, String),
    Code(String),
}

/// Writes index.html, report.md and the SVG plots into `out`.
pub fn write(report: &Report, out: &Path) -> Result<(), String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let blocks = blocks(report)?;
    let put = |name: &str, text: &str| {
        fs::write(out.join(name), text).map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    for b in &blocks {
        if let Block::Plot(name, _, svg) = b {
            put(name, svg)?;
        }
    }
    put("report.md", &markdown(&blocks))?;
    put("index.html", &html(&blocks))?;
    Ok(())
}

/// The rungs that have runs, in ladder order.
fn measured_rungs(report: &Report) -> Vec<Rung> {
    let mut rungs: Vec<Rung> = Vec::new();
    for r in &report.runs {
        if !rungs.contains(&r.rung) {
            rungs.push(r.rung);
        }
    }
    rungs
}

/// The runs of one cell (every repeat).
fn cell(report: &Report, rung: Rung, clients: usize) -> Vec<&Run> {
    report
        .runs
        .iter()
        .filter(|r| r.rung == rung && r.concurrency == clients)
        .collect()
}

/// 1234 req/s → "1234", 45.67 → "45.7".
fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Milliseconds with about three significant digits.
fn millis(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// What a pivot table marks: runs whose process count failed the check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Marks {
    None,
    Untrusted,
}

/// A rung × concurrency table of `value`: the median over the repeats and, with
/// more than one, the range; ✗ on cells with a run that failed the process check.
fn pivot(
    report: &Report,
    first: &str,
    value: impl Fn(&Run) -> f64,
    fmt: impl Fn(f64) -> String,
    marks: Marks,
) -> Table {
    let clients = &report.settings.concurrency;
    let mut header = vec![first.to_owned()];
    header.extend(clients.iter().map(|c| c.to_string()));
    let rows = measured_rungs(report)
        .into_iter()
        .map(|rung| {
            let mut row = vec![rung.label()];
            row.extend(clients.iter().map(|&c| {
                let runs = cell(report, rung, c);
                let Some(spread) = Spread::of(runs.iter().map(|r| value(r))) else {
                    return "–".into();
                };
                let bad = marks == Marks::Untrusted && runs.iter().any(|r| !r.trusted());
                format!("{}{}", spread.show(&fmt), if bad { " ✗" } else { "" })
            }));
            row
        })
        .collect();
    let mut numeric = vec![true; header.len()];
    numeric[0] = false;
    Table {
        header,
        rows,
        numeric,
    }
}

/// One line per rung: the median of each cell, with its range as an error bar.
fn series(report: &Report, value: impl Fn(&Run) -> f64) -> Vec<Series> {
    measured_rungs(report)
        .into_iter()
        .map(|rung| Series {
            rung,
            points: report
                .settings
                .concurrency
                .iter()
                .filter_map(|&c| {
                    let spread = Spread::of(cell(report, rung, c).iter().map(|r| value(r)))?;
                    Some(Point {
                        clients: c,
                        value: spread.median,
                        low: spread.min,
                        high: spread.max,
                    })
                })
                .collect(),
        })
        .collect()
}

fn blocks(report: &Report) -> Result<Vec<Block>, String> {
    let m = &report.machine;
    let s = &report.settings;
    let clients = &s.concurrency;
    let mut b = Vec::new();
    b.push(Block::Para(format!(
        "Measured by `{}` on {}; the measuring took {:.0} s. Every number below was measured on this machine, and every verdict is computed from them.",
        report.options.command,
        m.date,
        report.took.as_secs_f64()
    )));

    b.push(Block::Heading("The machine".into()));
    b.push(Block::Table(Table {
        header: vec!["".into(), "".into()],
        numeric: vec![false, false],
        rows: vec![
            vec![
                "CPU".into(),
                format!("{} ({} cores available)", m.cpu, m.cores),
            ],
            vec![
                "Memory".into(),
                format!("{:.1} GiB", mib(m.memory_kib) / 1024.0),
            ],
            vec!["Kernel".into(), format!("Linux {} ({})", m.kernel, m.os)],
            vec!["Date".into(), m.date.clone()],
            vec![
                "Load average (1, 5, 15 min)".into(),
                format!(
                    "{} before, {} after; {:.1} on average at the end of each run",
                    m.load,
                    report.load_after,
                    report.runs.iter().map(|r| r.load).sum::<f64>()
                        / report.runs.len().max(1) as f64
                ),
            ],
            vec!["Server build".into(), m.build.into()],
            vec![
                "One CPUID instruction".into(),
                report.cpuid_us.map_or_else(
                    || "not measured (not x86-64)".into(),
                    |us| {
                        format!(
                            "{us:.2} µs{}",
                            if us > 1.0 {
                                " (it traps to a hypervisor: see \"Starting each program\")"
                            } else {
                                ""
                            }
                        )
                    },
                ),
            ],
        ],
    }));
    b.push(Block::Para(format!(
        "The server measured is `{}`, in a process of its own; the load generator runs in the report's process, and both share these {} cores. The load average shows what else ran meanwhile: the numbers are this machine's at that time, not a benchmark of the hardware. A load average well above the core count means other work competed for the CPU; rerun on a quiet machine for cleaner numbers.",
        s.server.path.display(),
        m.cores
    )));

    b.push(Block::Heading("The seed's claims".into()));
    b.push(Block::Para(
        "\"CGI starts a process per request, wastes memory and degrades under traffic; FastCGI keeps a pool of long-lived processes that scales.\" Each part, checked:".into(),
    ));
    b.push(Block::Claims(report.claims.clone()));

    let tput = series(report, |r| r.throughput);
    b.push(Block::Heading("Throughput".into()));
    b.push(Block::Para(format!(
        "Answers with status 200 per second, by concurrent keep-alive clients in a closed loop (each sends its next request when the last answer is complete). Every run stops after {} requests or {:.1} s, whichever comes first. Solid lines are our server (circles: CGI, triangles: FastCGI workers), dashed lines the Python servers and our static file, the ceiling of the HTTP layer itself; dotted lines with open markers the reference servers (lighttpd, nginx). Error bars span the repeats.",
        s.limits.requests,
        s.limits.duration.as_secs_f64()
    )));
    b.push(Block::Plot(
        "throughput.svg".into(),
        "Throughput against concurrent clients, per model and language".into(),
        plot::chart("Throughput", "answers per second", clients, &tput)?,
    ));
    b.push(Block::Table(pivot(
        report,
        "req/s by clients",
        |r| r.throughput,
        rate,
        Marks::None,
    )));

    b.push(Block::Heading(
        "Production servers on the same machine".into(),
    ));
    b.push(Block::Para(reference_text(report)));

    b.push(Block::Heading("Latency".into()));
    b.push(Block::Para(
        "Per request as the client sees it, from sending the request to the end of the answer (a reconnect included): the median and the 99th percentile.".into(),
    ));
    b.push(Block::Plot(
        "latency-p50.svg".into(),
        "Median latency against concurrent clients".into(),
        plot::chart(
            "Median latency (p50)",
            "milliseconds",
            clients,
            &series(report, |r| ms(r.p50)),
        )?,
    ));
    b.push(Block::Plot(
        "latency-p99.svg".into(),
        "99th percentile latency against concurrent clients".into(),
        plot::chart(
            "Tail latency (p99)",
            "milliseconds",
            clients,
            &series(report, |r| ms(r.p99)),
        )?,
    ));
    b.push(Block::Table(pivot(
        report,
        "p50 ms by clients",
        |r| ms(r.p50),
        millis,
        Marks::None,
    )));
    b.push(Block::Table(pivot(
        report,
        "p99 ms by clients",
        |r| ms(r.p99),
        millis,
        Marks::None,
    )));

    b.push(Block::Heading("CPU time per request".into()));
    b.push(Block::Para(
        "The most direct cost of a process per request: user + system CPU of the serving tree during a run, divided by the answers. For our server that is its own process (from /proc) plus every script it reaped (the `wait4` rusage it keeps for each) plus its live workers (from /proc); for the other servers, the control group the report started them in (all their processes, however they end), or where no control group could be made their tree from /proc (each process's own time and what it reaped). A server that ignores SIGCHLD, as fcgiwrap does, has its children reaped by the kernel, whose CPU then never reaches /proc: without a control group its figure is left out (–) rather than shown too low. The load generator's own CPU, in the report's process, is apart (last table).".into(),
    ));
    b.push(Block::Plot(
        "cpu.svg".into(),
        "CPU time per request of the serving process tree against concurrent clients".into(),
        plot::chart(
            "CPU per request (server and scripts or workers)",
            "milliseconds",
            clients,
            &series(report, Run::cpu_ms),
        )?,
    ));
    b.push(Block::Table(pivot(
        report,
        "CPU ms per request by clients",
        Run::cpu_ms,
        millis,
        Marks::None,
    )));
    b.push(Block::Table(pivot(
        report,
        "load generator CPU ms per request",
        Run::client_cpu_ms,
        millis,
        Marks::None,
    )));

    b.push(Block::Heading("Memory of the serving process tree".into()));
    b.push(Block::Para(format!(
        "The whole tree that serves, read from /proc during each run: our server's process with every script and worker below it (the load generator is not in it); for gunicorn and uvicorn their master and workers. The processes are counted every {} ms from each process's list of children, their memory read right after; the roots' own memory every {} ms (a big, busy process's PSS takes long to read). PSS splits shared pages (an interpreter's code) between the processes sharing them, so it is what the tree really costs; RSS counts them once per process. FastCGI pools and the Python servers run {} workers.",
        crate::sample::EVERY.as_millis(),
        crate::sample::ROOTS_EVERY.as_millis(),
        s.workers
    )));
    b.push(Block::Plot(
        "memory.svg".into(),
        "Peak PSS of the serving process tree against concurrent clients".into(),
        plot::chart(
            "Process tree memory (peak PSS)",
            "MiB",
            clients,
            &series(report, |r| mib(r.memory.peak_pss_kib)),
        )?,
    ));
    b.push(Block::Table(pivot(
        report,
        "peak PSS MiB by clients",
        |r| mib(r.memory.peak_pss_kib),
        |v| format!("{v:.1}"),
        Marks::Untrusted,
    )));
    b.push(Block::Plot(
        "processes.svg".into(),
        "Peak number of processes in the serving tree against concurrent clients".into(),
        plot::chart(
            "Processes in the tree (peak)",
            "processes",
            clients,
            &series(report, |r| r.memory.peak_procs as f64),
        )?,
    ));
    b.push(Block::Table(pivot(
        report,
        "peak processes by clients",
        |r| r.memory.peak_procs as f64,
        |v| format!("{v:.0}"),
        Marks::Untrusted,
    )));
    b.push(Block::Table(pivot(
        report,
        "mean processes by clients",
        |r| r.memory.mean_procs,
        |v| format!("{v:.1}"),
        Marks::Untrusted,
    )));
    b.push(Block::Para(format!(
        "Checked in every run with Little's law: for CGI the processes seen beyond the server must average answers/s × the time a script is alive (from the server's own counters: from its spawn call, which the fork happens somewhere inside, to its reaping), within {:.0}%; for a fixed pool, its size. A run marked ✗ failed the check: its process count and memory are shown but not used in the verdicts. {}",
        crate::little::TOLERANCE * 100.0,
        little_summary(report)
    )));

    b.push(Block::Heading("Where one request's time goes".into()));
    b.push(Block::Para(
        "From the server's own `Server-Timing` header, the median of several single requests on an idle server: `spawn` is starting the process (0 for a warm worker), `ttfb − spawn` the interpreter's start and the script's work until its first byte, `total − ttfb` relaying the answer. The client column is the whole exchange over loopback, connection included.".into(),
    ));
    b.push(Block::Table(timing_table(report)));

    b.push(Block::Heading("Starting each program".into()));
    b.push(Block::Para(starts_text(report)));
    b.push(Block::Table(starts_table(report)));

    b.push(Block::Heading(
        "Starting a process: posix_spawn, fork and the parent's size".into(),
    ));
    b.push(Block::Para(format!(
        "`{}` started with the server's own spawner, posix_spawn (std) and fork+exec (nix), the two taking turns, while this process holds the given amount of touched memory; the time is from the call until the child has exec'd. fork copies the parent's page tables, so it slows down as the server grows; posix_spawn does not.",
        report
            .spawn_program
            .as_ref()
            .map_or("(none)".into(), |p| p.display().to_string())
    )));
    b.push(Block::Table(spawn_table(&report.spawn)));

    b.push(Block::Heading("How it was measured".into()));
    let mut how = vec![
        format!(
            "Concurrency: {}; each run at most {} requests or {:.1} s; {:.1} s of warm-up load before each rung's first run (pools started, caches warm). The whole sweep ran {} time(s), every server started anew each time: tables show the median and, in brackets, the lowest and highest of the repeats; plots draw the median with the range as an error bar.",
            clients
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            s.limits.requests,
            s.limits.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            s.repeat
        ),
        format!(
            "Our server runs as a child process (`cgi-testbed --listen 127.0.0.1:0 ...`), a fresh one per rung, with {} FastCGI workers per script (fixed: minimum = maximum) and one connection thread and script slot per client; it is stopped and reaped after its rung, and when the report is interrupted.",
            s.workers
        ),
        "CGI and FastCGI run the same files: `hello-rs` (compiled Rust, the library's FastCGI app module), `hello` (sh, CGI only: a shell script cannot speak FastCGI), `hello.fcgi.pl` (Perl FCGI), `hello.php` (php-cgi) and `greetings.py` (one WSGI app answering `Greetings universe`: wsgiref's CGIHandler as CGI, flup as FastCGI).".into(),
        format!(
            "gunicorn serves the same `greetings.py` with {w} gthread workers (1 thread each, so connections stay alive as with every other rung); uvicorn serves its ASGI twin `greetings_asgi.py` with {w} workers. Both on their own loopback port, started before their runs and stopped after.",
            w = s.workers
        ),
        format!(
            "Reference servers, each on its own loopback port for its rung only, driven by the same load generator: lighttpd with mod_cgi; nginx ({workers} worker processes: `worker_processes auto`) in front of fcgiwrap with {fcgiwrap} processes (each runs one script at a time); nginx in front of {w} processes of the same FastCGI program sharing one socket, as spawn-fcgi or php-fpm start them; nginx serving the static file. Keep-alive without a request limit, logs off.",
            workers = report.machine.cores,
            fcgiwrap = crate::reference::FCGIWRAP_PROCESSES,
            w = s.workers
        ),
        "Processes started, scripts reaped, their CPU (`wait4`) and how long they lived are counted by the server and read from `/server-status?json` before and after each run.".into(),
        format!(
            "Sampling /proc costs CPU too, more with more processes in the tree; it runs in the report's process (its threads' CPU is not in the load generator's figure) and took {:.1}% of one core on average.",
            sampler_share(report) * 100.0
        ),
    ];
    if let Some(py) = &report.peers.python {
        how.push(format!("Python: {}.", py.display()));
    }
    b.push(Block::List(how));

    if !report.notes.is_empty() {
        b.push(Block::Heading("Skipped rungs and notes".into()));
        b.push(Block::List(report.notes.clone()));
    }

    b.push(Block::Heading("Every run".into()));
    b.push(Block::Para(
        "`load` is the machine's 1-minute load average as the run ended: above the core count, other work was competing for the CPU.".into(),
    ));
    b.push(Block::Table(runs_table(report)));

    b.push(Block::Heading("Reproduce".into()));
    b.push(Block::Para(
        "From the source tree (a release build; `--quick` takes 1–2 minutes):".into(),
    ));
    b.push(Block::Code(
        "cargo run --release -- report            # writes report/index.html and report/report.md"
            .into(),
    ));
    Ok(b)
}

fn timing_table(report: &Report) -> Table {
    let header = [
        "request",
        "queue ms",
        "spawn ms",
        "interpreter + script ms (ttfb − spawn)",
        "relay ms (total − ttfb)",
        "total ms",
        "client ms",
    ];
    let rows = report
        .timing
        .iter()
        .map(|t| {
            let mode = if t.rung.model == Model::FastCgi {
                " (warm worker)"
            } else {
                ""
            };
            vec![
                format!("{}{mode}", t.rung.label()),
                millis(t.queue),
                millis(t.spawn),
                millis(t.script()),
                millis(t.relay()),
                millis(t.total),
                millis(t.client),
            ]
        })
        .collect();
    table(&header, rows)
}

/// The starts table's rows: each program, how it is linked, its start and CPU.
fn starts_table(report: &Report) -> Table {
    let header = [
        "program",
        "how it runs",
        "start ms (median, p90)",
        "CPU ms per start",
        "against sh",
        "starts",
    ];
    let sh = report
        .starts
        .iter()
        .find(|s| s.language == Language::Sh)
        .map(|s| s.wall.median);
    let rows = report
        .starts
        .iter()
        .map(|s| {
            vec![
                format!(
                    "{} ({})",
                    s.language.name(),
                    s.program
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                ),
                s.linkage.to_string(),
                format!("{} ({})", millis(s.wall.median), millis(s.wall_p90)),
                millis(s.cpu.median),
                sh.map_or_else(
                    || "–".into(),
                    |sh| {
                        let x = sh / s.wall.median.max(1e-9);
                        if x >= 1.0 {
                            format!("{} faster", times(x))
                        } else {
                            format!("{} slower", times(1.0 / x))
                        }
                    },
                ),
                s.wall.n.to_string(),
            ]
        })
        .collect();
    let mut t = table(&header, rows);
    t.numeric[1] = false;
    t
}

/// What the starts table shows, computed: the compiled programs against sh, and
/// what CPUID costs here.
fn starts_text(report: &Report) -> String {
    let mut text = String::from(
        "Each bundled program run directly, without a server, as a CGI script answering a GET: from posix_spawn to reaped, its output read through a pipe, the programs taking turns. This is what a process per request pays before any work of its own.",
    );
    let find = |l: Language| report.starts.iter().find(|s| s.language == l);
    if let (Some(rs), Some(sh)) = (find(Language::Rust), find(Language::Sh)) {
        text += &format!(
            " The compiled hello-rs ({}) takes {} ms, the sh hello {} ms: {}",
            rs.linkage,
            millis(rs.wall.median),
            millis(sh.wall.median),
            if rs.wall.median * 2.0 <= sh.wall.median {
                format!(
                    "{} faster.",
                    times(sh.wall.median / rs.wall.median.max(1e-9))
                )
            } else {
                "not the 2× a compiled program should manage (is hello-rs statically linked? see build.rs).".into()
            }
        );
    }
    if let Some(c) = find(Language::C) {
        text += &format!(
            " The C hello, {} with the system's C library, takes {} ms.",
            c.linkage,
            millis(c.wall.median)
        );
    }
    if let Some(us) = report.cpuid_us
        && us > 1.0
    {
        text += &format!(
            " One CPUID instruction costs {us:.1} µs on this machine (on bare metal a few hundredths): it traps to the hypervisor. glibc's start-up runs CPUID dozens of times to choose its string functions and cache sizes, in the dynamic loader or in a static binary's own start code, so every program linked with glibc (sh, perl, python, php, and the C hello unless built against musl) pays that before `main`; hello-rs, linked statically against musl by `build.rs` when that Rust target is installed, does not."
        );
    }
    text
}

fn spawn_table(cells: &[Cell]) -> Table {
    let header = [
        "parent holds",
        "parent RSS MiB",
        "posix_spawn µs (p90)",
        "fork+exec µs (p90)",
        "fork / posix_spawn",
        "starts each",
    ];
    let mut sizes: Vec<usize> = cells.iter().map(|c| c.ballast_mib).collect();
    sizes.dedup();
    let rows = sizes
        .into_iter()
        .filter_map(|size| {
            let get = |mode| {
                cells
                    .iter()
                    .find(|c| c.ballast_mib == size && c.mode == mode)
            };
            let (p, f) = (get(SpawnMode::PosixSpawn)?, get(SpawnMode::Fork)?);
            Some(vec![
                format!("{size} MiB"),
                format!("{:.0}", mib(p.parent_rss_kib)),
                format!("{:.0} ({:.0})", p.median_us, p.p90_us),
                format!("{:.0} ({:.0})", f.median_us, f.p90_us),
                times(f.median_us / p.median_us.max(1e-9)),
                format!("{}", p.samples.min(f.samples)),
            ])
        })
        .collect();
    table(&header, rows)
}

fn runs_table(report: &Report) -> Table {
    let header = [
        "rung",
        "clients",
        "repeat",
        "answers",
        "req/s",
        "p50 ms",
        "p99 ms",
        "not 200",
        "errors",
        "connections",
        "processes started",
        "peak RSS MiB",
        "peak PSS MiB",
        "mean PSS MiB",
        "peak procs",
        "Little's law",
        "CPU ms/answer",
        "CPU from",
        "server CPU ms/answer",
        "load generator CPU ms/answer",
        "seconds",
        "load before, after",
    ];
    let rows = report
        .runs
        .iter()
        .map(|r| {
            let answers = r.answered().max(1) as f64;
            vec![
                r.rung.label(),
                r.concurrency.to_string(),
                r.repeat.to_string(),
                r.answered().to_string(),
                rate(r.throughput),
                millis(ms(r.p50)),
                millis(ms(r.p99)),
                r.non_200.to_string(),
                r.errors.to_string(),
                r.connects.to_string(),
                r.spawned.map_or_else(|| "–".into(), |n| n.to_string()),
                format!("{:.1}", mib(r.memory.peak_rss_kib)),
                format!("{:.1}", mib(r.memory.peak_pss_kib)),
                format!("{:.1}", mib(r.memory.mean_pss_kib)),
                r.memory.peak_procs.to_string(),
                r.little.to_string(),
                if r.cpu_ms().is_finite() {
                    millis(r.cpu_ms())
                } else {
                    "–".into()
                },
                match r.cpu.source {
                    CpuSource::Counters => "/proc + wait4",
                    CpuSource::Cgroup => "cgroup",
                    CpuSource::Proc => "/proc",
                    CpuSource::Incomplete => "/proc, incomplete",
                }
                .into(),
                r.cpu
                    .server
                    .map_or_else(|| "–".into(), |d| millis(ms(d) / answers)),
                millis(r.client_cpu_ms()),
                format!("{:.1}", r.elapsed.as_secs_f64()),
                format!("{:.1}, {:.1}", r.load_before, r.load),
            ]
        })
        .collect();
    table(&header, rows)
}

/// What the reference servers did beside ours, at the concurrency nearest 8 that
/// both measured; which were not installed otherwise.
fn reference_text(report: &Report) -> String {
    let mut text = String::from(
        "Drawn as dotted lines with open markers in every plot, and listed in every table: lighttpd and nginx running the same programs on this machine in the same run, for scale.",
    );
    let ours_for = |rung: Rung| -> Rung {
        let model = match rung.model {
            Model::Lighttpd | Model::NginxFcgiwrap => Model::Cgi,
            Model::NginxFastCgi => Model::FastCgi,
            _ => Model::Static,
        };
        Rung {
            model,
            language: rung.language,
        }
    };
    let mut compared = Vec::new();
    for rung in measured_rungs(report)
        .into_iter()
        .filter(|r| r.model.is_reference())
    {
        let ours = ours_for(rung);
        let both: Vec<usize> = report
            .settings
            .concurrency
            .iter()
            .copied()
            .filter(|&c| !cell(report, rung, c).is_empty() && !cell(report, ours, c).is_empty())
            .collect();
        let Some(&c) = both.iter().min_by_key(|c| c.abs_diff(8)) else {
            continue;
        };
        let median = |r: Rung, f: fn(&Run) -> f64| {
            crate::spread::median(cell(report, r, c).iter().map(|x| f(x)).collect())
        };
        compared.push(format!(
            "{} {} req/s at {} ms of CPU per request against our {} {} req/s at {} ms ({c} clients)",
            rung.label(),
            rate(median(rung, |r| r.throughput)),
            millis(median(rung, Run::cpu_ms)),
            ours.label(),
            rate(median(ours, |r| r.throughput)),
            millis(median(ours, Run::cpu_ms)),
        ));
    }
    if compared.is_empty() {
        text += if report.options.reference {
            " None was measured here (see the notes for what is not installed: `apt-get install lighttpd nginx fcgiwrap`)."
        } else {
            " Not measured: the report ran with --no-reference."
        };
    } else {
        text += &format!(" Medians: {}.", compared.join("; "));
    }
    text
}

/// The sampling threads' CPU as a share of one core over the runs.
fn sampler_share(report: &Report) -> f64 {
    let cpu: f64 = report
        .runs
        .iter()
        .map(|r| r.memory.sampler_cpu.as_secs_f64())
        .sum();
    let wall: f64 = report.runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    if wall > 0.0 { cpu / wall } else { 0.0 }
}

/// One sentence on the Little's-law checks: how many passed, which failed.
fn little_summary(report: &Report) -> String {
    let checked: Vec<&Run> = report
        .runs
        .iter()
        .filter(|r| r.little.holds().is_some())
        .collect();
    let failed: Vec<String> = checked
        .iter()
        .filter(|r| !r.trusted())
        .map(|r| {
            format!(
                "{} at {} clients ({})",
                r.rung.label(),
                r.concurrency,
                r.little
            )
        })
        .collect();
    if failed.is_empty() {
        format!("All {} checked runs passed.", checked.len())
    } else {
        format!(
            "{} of {} checked runs failed: {}.",
            failed.len(),
            checked.len(),
            failed.join("; ")
        )
    }
}

/// A table whose first column is text and the rest numbers.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut numeric = vec![true; header.len()];
    numeric[0] = false;
    Table {
        header: header.iter().map(|h| (*h).to_owned()).collect(),
        rows,
        numeric,
    }
}

const TITLE: &str = "What a process per request costs: CGI and FastCGI measured";

fn markdown(blocks: &[Block]) -> String {
    let mut md = format!("# {TITLE}\n\n");
    for b in blocks {
        match b {
            Block::Heading(h) => {
                let _ = writeln!(md, "## {h}\n");
            }
            Block::Para(p) => {
                let _ = writeln!(md, "{p}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(md, "- {i}");
                }
                md.push('\n');
            }
            Block::Claims(claims) => {
                for (i, c) in claims.iter().enumerate() {
                    let _ = writeln!(
                        md,
                        "{}. **{}** — *{}.* {}",
                        i + 1,
                        c.claim,
                        c.verdict.text(),
                        c.sentence
                    );
                }
                md.push('\n');
            }
            Block::Table(t) => md.push_str(&markdown_table(t)),
            Block::Plot(name, alt, _) => {
                let _ = writeln!(md, "![{alt}]({name})\n");
            }
            Block::Code(c) => {
                let _ = writeln!(md, "```sh\n{c}\n```\n");
            }
        }
    }
    md
}

fn markdown_table(t: &Table) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| {} |",
        t.header
            .iter()
            .map(|h| cell(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(
        md,
        "|{}|",
        t.numeric
            .iter()
            .map(|&n| if n { " ---: " } else { " --- " })
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in &t.rows {
        let _ = writeln!(
            md,
            "| {} |",
            row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    md.push('\n');
    md
}

/// Escapes `text` and turns its `code` and **bold** spans into HTML.
fn inline_html(text: &str) -> String {
    let mut out = String::new();
    let (mut code, mut bold) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[1..];
        } else if !code && rest.starts_with("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[2..];
        } else {
            out.push_str(&escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

const CSS: &str = "
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
pre { background: #f3f3f3; padding: .8em 1em; overflow-x: auto; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f6f6f6; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
ol.claims li { margin: .6em 0; }
.verdict { font-weight: 600; padding: 0 .4em; border-radius: 3px; }
.holds { background: #d9f2d9; } .partly { background: #fff1c2; }
.not { background: #f8d7d7; } .unknown { background: #e8e8e8; }
.mixed { background: #e3dcf5; }
";

fn html(blocks: &[Block]) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(TITLE),
        escape(TITLE)
    );
    for b in blocks {
        match b {
            Block::Heading(t) => {
                let _ = writeln!(h, "<h2>{}</h2>", escape(t));
            }
            Block::Para(p) => {
                let _ = writeln!(h, "<p>{}</p>", inline_html(p));
            }
            Block::List(items) => {
                h.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(h, "<li>{}</li>", inline_html(i));
                }
                h.push_str("</ul>\n");
            }
            Block::Claims(claims) => {
                h.push_str("<ol class=\"claims\">\n");
                for c in claims {
                    let class = match c.verdict {
                        Verdict::Holds => "holds",
                        Verdict::Partly => "partly",
                        Verdict::DoesNotHold => "not",
                        Verdict::NotMeasured => "unknown",
                        Verdict::Mixed => "mixed",
                    };
                    let _ = writeln!(
                        h,
                        "<li><strong>{}</strong> <span class=\"verdict {class}\">{}</span> {}</li>",
                        escape(c.claim),
                        escape(c.verdict.text()),
                        inline_html(&c.sentence)
                    );
                }
                h.push_str("</ol>\n");
            }
            Block::Table(t) => h.push_str(&html_table(t)),
            Block::Plot(_, alt, svg) => {
                let _ = writeln!(
                    h,
                    "<figure role=\"img\" aria-label=\"{}\">\n{svg}\n</figure>",
                    escape(alt)
                );
            }
            Block::Code(c) => {
                let _ = writeln!(h, "<pre><code>{}</code></pre>", escape(c));
            }
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn html_table(t: &Table) -> String {
    let mut h = String::from("<div class=\"wide\"><table>\n");
    // A key-value table has no header worth a row (Markdown needs one anyway).
    if t.header.iter().any(|c| !c.is_empty()) {
        h.push_str("<tr>");
        for head in &t.header {
            let _ = write!(h, "<th>{}</th>", escape(head));
        }
        h.push_str("</tr>\n");
    }
    for row in &t.rows {
        h.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if t.numeric.get(i).copied().unwrap_or(false) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(h, "<td{class}>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_spans() {
        assert_eq!(
            inline_html("a `<b>` **c** & d"),
            "a <code>&lt;b&gt;</code> <strong>c</strong> &amp; d"
        );
    }

    #[test]
    fn markdown_tables_escape_pipes() {
        let t = table(&["a", "b"], vec![vec!["x|y".into(), "1".into()]]);
        assert_eq!(
            markdown_table(&t),
            "| a | b |\n| --- | ---: |\n| x\\|y | 1 |\n\n"
        );
    }
}

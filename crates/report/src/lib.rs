//! `cgi-testbed report`: turns the classic claims about CGI and FastCGI into numbers
//! measured on this machine. It serves the bundled hello programs with the real
//! server (the `cgi-testbed` binary in a process of its own, on 127.0.0.1:0) as CGI
//! and as FastCGI workers, the Python app also under gunicorn and uvicorn, and a
//! static file as the ceiling; drives each with a closed-loop load generator at
//! rising concurrency while sampling the processes and memory of the serving
//! process tree and measuring its CPU; measures where one request's time goes and
//! what a process start costs; and writes `index.html` and `report.md` with SVG
//! plots.
//!
//! A crate of its own (binary `cgi-testbed-report`) so that the server does not
//! compile the plotting and progress-bar crates; the server's `report` subcommand
//! runs this binary.

pub mod cgroup;
pub mod children;
pub mod claims;
pub mod cpu;
pub mod external;
pub mod ladder;
pub mod little;
pub mod machine;
pub mod ours;
pub mod plot;
pub mod procfs;
pub mod reference;
pub mod render;
pub mod sample;
pub mod spawn_cost;
pub mod spread;
pub mod starts;
pub mod sweep;
pub mod timing;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cgi_testbed_load::Limits;
use claims::Claim;
use ladder::{ALL_LANGUAGES, Language, Peers};
use machine::Machine;
use sweep::{Run, Settings};
use timing::Breakdown;

/// The source tree the report was built from (bundled scripts, the built hello-rs).
pub const SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The report's command line (also `cgi-testbed report ...`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "cgi-testbed-report",
    version,
    about = "Measure CGI against FastCGI workers (and lighttpd and nginx, where installed) on this machine and write an HTML and a Markdown report with plots (about 25 minutes on 2 cores with everything installed; --quick: 1–2)."
)]
pub struct ReportArgs {
    /// A short sweep (1–2 minutes): rust and python, 1, 4 and 16 clients, 2 s a run.
    #[arg(long)]
    pub quick: bool,

    /// Where index.html, report.md and the plots go.
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub out: PathBuf,

    /// Languages to measure [default: all; --quick: rust,python].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub languages: Option<Vec<Language>>,

    /// Concurrent clients, one run each [default: 1,2,4,8,16,32,64; --quick: 1,4,16].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<Vec<u16>>,

    /// Most requests per run [default: 50000; --quick: 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Longest run, e.g. 3 or 3s or 500ms [default: 3s; --quick: 2s].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,

    /// Runs of each rung at each concurrency: tables show the median and the range,
    /// and a verdict that does not hold at every repeat says "mixed" [default: 3;
    /// --quick: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub repeat: Option<u16>,

    /// Do not measure the reference servers (lighttpd, nginx with fcgiwrap or
    /// FastCGI workers, nginx for the static file), even where they are installed.
    #[arg(long)]
    pub no_reference: bool,

    /// Parent sizes in MiB for the fork vs posix_spawn comparison [default: 0,256,1024].
    #[arg(long, value_name = "MIB", value_delimiter = ',')]
    pub parents: Option<Vec<usize>>,

    /// The cgi-testbed server binary to measure [default: the one next to this
    /// binary, built first when run through cargo in the source tree].
    #[arg(long, value_name = "PATH")]
    pub server: Option<PathBuf>,
}

/// `5` (seconds), `5s`, `500ms`.
fn parse_secs(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err("must be more than 0".into())
        };
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

impl ReportArgs {
    pub fn into_options(self) -> Options {
        let mut o = if self.quick {
            Options::quick(self.out)
        } else {
            Options::full(self.out)
        };
        if let Some(l) = self.languages {
            o.languages = l;
        }
        if let Some(c) = self.concurrency {
            let mut c: Vec<usize> = c.into_iter().map(usize::from).collect();
            c.sort_unstable();
            c.dedup();
            o.concurrency = c;
        }
        if let Some(n) = self.requests {
            o.limits.requests = n;
        }
        if let Some(d) = self.duration {
            o.limits.duration = d;
        }
        if let Some(n) = self.repeat {
            o.repeat = usize::from(n);
        }
        if let Some(p) = self.parents {
            o.ballast_mib = p;
        }
        o.server = self.server;
        o.reference = !self.no_reference;
        o.progress = if std::io::stdout().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        };
        o
    }
}

/// How the report shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar per run and a line per result (on a terminal).
    Bar,
    /// A line per result.
    Lines,
    /// Nothing (tests).
    Quiet,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub languages: Vec<Language>,
    /// Concurrent clients, ascending.
    pub concurrency: Vec<usize>,
    pub limits: Limits,
    pub warmup: Duration,
    /// FastCGI workers per script, and gunicorn/uvicorn workers.
    pub workers: usize,
    /// Process starts per mode and parent size, and the time cap of each (also the
    /// cap of each program's direct starts).
    pub spawn_samples: usize,
    /// Direct starts of each program.
    pub start_samples: usize,
    pub spawn_cap: Duration,
    /// Parent sizes (MiB of touched memory) for fork vs posix_spawn.
    pub ballast_mib: Vec<usize>,
    pub progress: Progress,
    /// The command line that produced the report, shown in it.
    pub command: String,
    /// The server binary to measure (see [`ours::Program::find`]).
    pub server: Option<PathBuf>,
    /// Runs per cell.
    pub repeat: usize,
    /// Measure the reference servers where installed.
    pub reference: bool,
}

impl Options {
    /// The default sweep: about 25 minutes on 2 cores with every language and
    /// reference server installed (17 rungs × 7 concurrencies × 3 repeats × 3 s).
    pub fn full(out: PathBuf) -> Options {
        Options {
            out,
            languages: ALL_LANGUAGES.to_vec(),
            concurrency: vec![1, 2, 4, 8, 16, 32, 64],
            limits: Limits {
                requests: 50_000,
                duration: Duration::from_secs(3),
            },
            warmup: Duration::from_secs(1),
            workers: 4,
            spawn_samples: 200,
            start_samples: 300,
            spawn_cap: Duration::from_secs(4),
            ballast_mib: vec![0, 256, 1024],
            progress: Progress::Quiet,
            command: command_line(),
            server: None,
            repeat: 3,
            reference: true,
        }
    }

    /// `--quick`: 1–2 minutes.
    pub fn quick(out: PathBuf) -> Options {
        Options {
            languages: vec![Language::Rust, Language::Python],
            concurrency: vec![1, 4, 16],
            limits: Limits {
                requests: 10_000,
                duration: Duration::from_secs(2),
            },
            warmup: Duration::from_millis(500),
            spawn_samples: 50,
            start_samples: 50,
            spawn_cap: Duration::from_millis(1500),
            repeat: 1,
            ..Options::full(out)
        }
    }
}

/// The command line, as `cgi-testbed-report ARGS` (without a `--server` path).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("cgi-testbed-report")
        .to_owned();
    let mut out = vec![name];
    let mut rest = args.into_iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--server" {
            rest.next();
        } else if !a.starts_with("--server=") {
            out.push(a);
        }
    }
    out.join(" ")
}

/// Everything measured, as the pages show it.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    /// The load average when the measuring ended.
    pub load_after: String,
    pub took: Duration,
    pub options: Options,
    pub settings: Settings,
    pub peers: Peers,
    pub runs: Vec<Run>,
    /// Skipped rungs, failures and runs with errors.
    pub notes: Vec<String>,
    pub timing: Vec<Breakdown>,
    pub spawn_program: Option<PathBuf>,
    pub spawn: Vec<spawn_cost::Cell>,
    /// Each program started directly, and what one CPUID costs here.
    pub starts: Vec<starts::Starts>,
    pub cpuid_us: Option<f64>,
    pub claims: Vec<Claim>,
}

/// Progress output: bars on a terminal, lines otherwise, nothing in tests.
pub struct Ui {
    progress: Progress,
}

impl Ui {
    pub fn new(progress: Progress) -> Ui {
        Ui { progress }
    }

    /// A bar from 0 to 1000 (per mille of the run's limits), or a hidden one.
    pub fn bar(&self, prefix: &str) -> ProgressBar {
        if self.progress != Progress::Bar {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(prefix.to_owned());
        bar
    }

    pub fn say(&self, line: &str) {
        if self.progress != Progress::Quiet {
            println!("{line}");
        }
    }
}

/// Measures everything `opts` asks for and writes the pages into `opts.out`.
pub fn run(opts: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let ui = Ui::new(opts.progress);
    let machine = machine::describe();
    ui.say(&format!(
        "{} ({} cores), load average {}, {} build",
        machine.cpu, machine.cores, machine.load, machine.build
    ));
    let server = ours::Program::find(opts.server.clone())?;
    ui.say(&format!("measuring the server {}", server.path.display()));
    let peers = Peers::detect();
    let dir = tempfile::Builder::new()
        .prefix("cgi-testbed-report-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    children::remove_on_interrupt(dir.path());
    let site =
        ladder::prepare(dir.path(), &peers).map_err(|e| format!("preparing scripts: {e}"))?;
    let mut rungs = ladder::ladder(&opts.languages);
    if opts.reference {
        rungs.extend(ladder::references(&opts.languages));
    }
    let settings = Settings {
        concurrency: opts.concurrency.clone(),
        limits: opts.limits,
        warmup: opts.warmup,
        workers: opts.workers,
        server,
        repeat: opts.repeat,
    };

    ui.say("Server-Timing of single requests…");
    let runnable: Vec<_> = rungs
        .iter()
        .copied()
        .filter(|&r| peers.missing(r).is_none())
        .collect();
    let timing = timing::measure(&runnable, &site, &settings.server, opts.workers)?;

    let sweep = sweep::sweep(&rungs, &site, &peers, &settings, &ui);

    ui.say("starting each program directly…");
    let starts = starts::measure(
        &site,
        &peers,
        &opts.languages,
        opts.start_samples,
        opts.spawn_cap,
    );
    let cpuid_us = starts::cpuid_us();

    let spawn_program = spawn_cost::trivial_program();
    let mut notes = sweep.notes;
    let spawn = match &spawn_program {
        Some(p) => {
            ui.say(&format!(
                "fork vs posix_spawn of {} with {:?} MiB parents…",
                p.display(),
                opts.ballast_mib
            ));
            spawn_cost::measure(p, &opts.ballast_mib, opts.spawn_samples, opts.spawn_cap)
        }
        None => {
            notes.push("fork vs posix_spawn: skipped, no /bin/true.".into());
            Vec::new()
        }
    };

    let claims = claims::check(&sweep.runs, &timing);
    let report = Report {
        machine,
        load_after: machine::load_average(),
        took: started.elapsed(),
        options: opts.clone(),
        settings,
        peers,
        runs: sweep.runs,
        notes,
        timing,
        spawn_program,
        spawn,
        starts,
        cpuid_us,
        claims,
    };
    render::write(&report, &opts.out)?;
    ui.say(&format!(
        "wrote {} and {} in {:.0} s",
        opts.out.join("index.html").display(),
        opts.out.join("report.md").display(),
        report.took.as_secs_f64()
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<ReportArgs, clap::Error> {
        ReportArgs::try_parse_from(
            std::iter::once("cgi-testbed-report").chain(args.iter().copied()),
        )
    }

    #[test]
    fn defaults_and_options() {
        let o = parse(&[]).unwrap().into_options();
        assert_eq!(o.out.to_str(), Some("report"));
        assert_eq!(o.concurrency, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(o.languages, ALL_LANGUAGES);
        assert_eq!(o.repeat, 3);
        assert_eq!(parse(&["--repeat", "5"]).unwrap().into_options().repeat, 5);
        assert!(parse(&["--repeat", "0"]).is_err());

        let o = parse(&[
            "--quick",
            "--out",
            "/tmp/x",
            "--languages",
            "sh,python",
            "--concurrency",
            "4,1,2",
            "--requests",
            "30",
            "--duration",
            "1.5",
        ])
        .unwrap()
        .into_options();
        assert_eq!(o.languages, [Language::Sh, Language::Python]);
        assert_eq!(o.concurrency, [1, 2, 4]);
        assert_eq!(o.limits.requests, 30);
        assert_eq!(o.limits.duration, Duration::from_millis(1500));

        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--languages", "cobol"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:0"]).is_err());
    }

    #[test]
    fn help_lists_the_options() {
        let help = ReportArgs::command().render_help().to_string();
        for flag in [
            "--quick",
            "--out",
            "--languages",
            "--concurrency",
            "--requests",
            "--duration",
            "--repeat",
            "--server",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        }
    }
}

//! The sweep: every rung of the ladder at every concurrency, each rung against a
//! freshly started server in a process of its own (ours, or gunicorn and uvicorn),
//! and for every run the serving tree's processes, memory and CPU, the load
//! generator's own CPU, and the check that the sampler saw what the server counted.

use std::time::{Duration, Instant};

use cgi_testbed_load::{self as load, Limits, Stats};

use crate::Ui;
use crate::cpu::{self, TreeCpu};
use crate::external::External;
use crate::ladder::{Model, Peers, Rung, Site};
use crate::little::Little;
use crate::ours::{self, Counters, Ours};
use crate::procfs;
use crate::reference::Reference;
use crate::sample::{Memory, Sampler};

/// One rung at one concurrency, in one repeat.
#[derive(Debug, Clone)]
pub struct Run {
    pub rung: Rung,
    pub concurrency: usize,
    /// Which repeat of the sweep (1-based).
    pub repeat: usize,
    /// Answers with status 200 per second.
    pub throughput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub ok: u64,
    pub non_200: u64,
    pub errors: u64,
    pub connects: u64,
    pub elapsed: Duration,
    /// The serving process tree: the server (our binary, or an external server's
    /// master) and every script and worker below it. Not the load generator.
    pub memory: Memory,
    /// Processes our server started during the run (scripts and workers); `None`
    /// for an external server.
    pub spawned: Option<u64>,
    pub cpu: Cpu,
    pub little: Little,
    /// The 1-minute load average before and after the run: how busy the machine was.
    pub load_before: f64,
    pub load: f64,
}

/// CPU time used during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// The serving tree: the server and its scripts or workers.
    pub tree: Duration,
    /// Of it, our server's own process (`None` for other servers).
    pub server: Option<Duration>,
    /// Our server's reaped children as its `wait4` counters and as /proc's
    /// `cutime + cstime` say (they should agree).
    pub reaped_wait4: Option<Duration>,
    pub reaped_proc: Option<Duration>,
    /// The load generator: the report's process, less its sampling threads.
    pub client: Duration,
    /// Where `tree` comes from.
    pub source: CpuSource,
}

/// How a run's tree CPU was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CpuSource {
    /// Our server: its process from /proc, its scripts from its wait4 counters.
    #[default]
    Counters,
    /// The control group the server ran in.
    Cgroup,
    /// /proc: each process's time plus what it reaped.
    Proc,
    /// /proc, but a process of the tree ignores SIGCHLD, so the CPU of the children
    /// the kernel reaped for it is missing: not shown.
    Incomplete,
}

impl Run {
    /// Requests that got a complete answer.
    pub fn answered(&self) -> u64 {
        self.ok + self.non_200
    }

    /// The serving tree's CPU per answer, in milliseconds (NaN when incomplete).
    pub fn cpu_ms(&self) -> f64 {
        if self.cpu.source == CpuSource::Incomplete {
            return f64::NAN;
        }
        per_answer_ms(self.cpu.tree, self.answered())
    }

    /// The load generator's CPU per answer, in milliseconds.
    pub fn client_cpu_ms(&self) -> f64 {
        per_answer_ms(self.cpu.client, self.answered())
    }

    /// Is the run's process count trustworthy (or not checkable)?
    pub fn trusted(&self) -> bool {
        self.little.holds() != Some(false)
    }
}

fn per_answer_ms(d: Duration, answers: u64) -> f64 {
    if answers == 0 {
        0.0
    } else {
        d.as_secs_f64() * 1e3 / answers as f64
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: Vec<usize>,
    pub limits: Limits,
    /// Load before the first measured run of a rung (workers started, caches warm).
    pub warmup: Duration,
    /// FastCGI workers per script, and gunicorn/uvicorn workers.
    pub workers: usize,
    /// The server binary measured.
    pub server: ours::Program,
    /// How many times the whole sweep runs (each repeat starts every server anew).
    pub repeat: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub runs: Vec<Run>,
    /// Skipped or failed rungs, and runs with errors, each with the reason.
    pub notes: Vec<String>,
}

/// A server serving one rung, in processes of its own.
pub enum Target {
    Ours(Ours),
    /// gunicorn or uvicorn.
    Theirs(External),
    /// lighttpd or nginx (with fcgiwrap or workers), and which rung.
    Reference(Reference, Model),
}

impl Target {
    pub fn start(rung: Rung, site: &Site, peers: &Peers, s: &Settings) -> Result<Target, String> {
        match rung.model {
            Model::Cgi | Model::FastCgi | Model::Static => {
                let flags = ours::Flags {
                    workers: s.workers,
                    clients: s.concurrency.iter().copied().max().unwrap_or(1),
                };
                let log = site.logs.join(format!("server-{}.log", rung.slug()));
                Ours::start(&s.server, site, &flags, &log).map(Target::Ours)
            }
            Model::Gunicorn | Model::Uvicorn => {
                let python = peers.python.as_deref().ok_or("no python3")?;
                let log = site.logs.join(format!("{}.log", rung.slug()));
                External::start(rung.model, python, &site.apps, s.workers, &log).map(Target::Theirs)
            }
            Model::Lighttpd | Model::NginxFcgiwrap | Model::NginxFastCgi | Model::NginxStatic => {
                Reference::start(rung, site, peers, s.workers)
                    .map(|r| Target::Reference(r, rung.model))
            }
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        match self {
            Target::Ours(o) => o.addr,
            Target::Theirs(e) => e.addr,
            Target::Reference(r, _) => r.addr,
        }
    }

    /// The processes whose trees serve.
    pub fn roots(&self) -> Vec<i32> {
        match self {
            Target::Ours(o) => vec![o.pid()],
            Target::Theirs(e) => vec![e.pid()],
            Target::Reference(r, _) => r.roots(),
        }
    }

    fn counters(&self) -> Option<Counters> {
        match self {
            Target::Ours(o) => o.counters().ok(),
            _ => None,
        }
    }

    /// The CPU its control group used so far (not ours: counted differently).
    fn cgroup_usage(&self) -> Option<Duration> {
        match self {
            Target::Ours(_) => None,
            Target::Theirs(e) => e.cgroup_usage(),
            Target::Reference(r, _) => r.cgroup_usage(),
        }
    }

    /// Does this server start a process per request that no counter of ours sees
    /// (lighttpd's mod_cgi, fcgiwrap)? Then the process count cannot be checked.
    fn uncounted_scripts(&self) -> bool {
        matches!(self, Target::Reference(_, m) if m.is_cgi())
    }

    /// The first few distinct lines our server logged since the last call.
    pub fn errors(&mut self) -> Vec<String> {
        match self {
            Target::Ours(o) => o.errors(),
            _ => Vec::new(),
        }
    }

    pub fn stop(self) {
        match self {
            Target::Ours(o) => o.stop(),
            Target::Theirs(e) => drop(e),
            Target::Reference(r, _) => drop(r),
        }
    }
}

/// Runs every rung in `rungs` at every concurrency in `s`, the whole ladder
/// `s.repeat` times over: a repeat is a sweep of its own, so what changes on the
/// machine meanwhile spreads over every rung alike.
pub fn sweep(rungs: &[Rung], site: &Site, peers: &Peers, s: &Settings, ui: &Ui) -> Sweep {
    let mut out = Sweep::default();
    let runnable: Vec<Rung> = rungs
        .iter()
        .copied()
        .filter(|&r| match peers.missing(r) {
            Some(why) => {
                out.notes.push(format!("{}: skipped, {why}.", r.label()));
                false
            }
            None => true,
        })
        .collect();
    let repeats = s.repeat.max(1);
    let per_repeat = runnable.len() * s.concurrency.len();
    let mut progress = Progress {
        total: repeats * per_repeat,
        done: 0,
    };
    for repeat in 1..=repeats {
        for &rung in &runnable {
            let place = Place { repeat, repeats };
            match sweep_rung(rung, site, peers, s, ui, place, &mut progress) {
                Ok((mut runs, mut notes)) => {
                    out.runs.append(&mut runs);
                    out.notes.append(&mut notes);
                }
                Err(e) => {
                    let what = format!("{}{}", rung.label(), place.suffix());
                    ui.say(&format!("{what}: failed: {e}"));
                    out.notes.push(format!("{what}: failed, {e}"));
                }
            }
        }
    }
    out
}

/// How far the sweep is, for the progress lines.
struct Progress {
    total: usize,
    done: usize,
}

/// Which repeat a run belongs to.
#[derive(Debug, Clone, Copy)]
struct Place {
    repeat: usize,
    repeats: usize,
}

impl Place {
    /// ", repeat 2 of 3", or nothing without repeats.
    fn suffix(&self) -> String {
        if self.repeats > 1 {
            format!(", repeat {} of {}", self.repeat, self.repeats)
        } else {
            String::new()
        }
    }
}

fn sweep_rung(
    rung: Rung,
    site: &Site,
    peers: &Peers,
    s: &Settings,
    ui: &Ui,
    place: Place,
    progress: &mut Progress,
) -> Result<(Vec<Run>, Vec<String>), String> {
    let mut target = Target::start(rung, site, peers, s)?;
    let result = runs_of(&mut target, rung, s, ui, place, progress);
    target.stop();
    result
}

fn runs_of(
    target: &mut Target,
    rung: Rung,
    s: &Settings,
    ui: &Ui,
    place: Place,
    progress: &mut Progress,
) -> Result<(Vec<Run>, Vec<String>), String> {
    let addr = target.addr();
    let path = rung.path();
    let first = load::get(addr, &path).map_err(|e| format!("GET {path}: {e}"))?;
    if first.status != 200 {
        let body = String::from_utf8_lossy(&first.body);
        return Err(format!(
            "GET {path} answered {}: {} {}",
            first.status,
            body.trim(),
            target.errors().join(" / ")
        ));
    }
    let warm = Limits {
        requests: u64::MAX,
        duration: s.warmup,
    };
    load::run(addr, &path, s.workers.max(1), warm);
    // What the warm-up logged (a worker's start-up, say) is not about any run.
    target.errors();

    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for &clients in &s.concurrency {
        progress.done += 1;
        let label = format!(
            "[{}/{}] {} × {clients}{}",
            progress.done,
            progress.total,
            rung.label(),
            place.suffix()
        );
        let bar = ui.bar(&label);
        let (run, stats) = measure(target, rung, &path, clients, s.limits, &mut |n, t0| {
            // Whichever limit is nearer decides how far along the run is.
            let by_count = n as f64 / s.limits.requests as f64;
            let by_time = t0.elapsed().as_secs_f64() / s.limits.duration.as_secs_f64();
            bar.set_message(format!("{n} requests"));
            bar.set_position((by_count.max(by_time).min(1.0) * 1000.0) as u64);
        })?;
        let run = Run {
            repeat: place.repeat,
            ..run
        };
        bar.finish_and_clear();
        ui.say(&format!(
            "{label}: {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms, {} not 200, {} errors, {:.1} MiB PSS, {} processes (mean {:.1}), CPU {:.3} ms/answer, Little's law {}",
            run.throughput,
            ms(run.p50),
            ms(run.p99),
            run.non_200,
            run.errors,
            mib(run.memory.peak_pss_kib),
            run.memory.peak_procs,
            run.memory.mean_procs,
            run.cpu_ms(),
            run.little
        ));
        if run.non_200 + run.errors > 0 {
            let client = stats
                .first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" First client error: {e}."));
            notes.push(format!(
                "{} at {clients} clients{}: {} answers not 200 and {} errors.{client} Server log: {}",
                rung.label(),
                place.suffix(),
                run.non_200,
                run.errors,
                target.errors().join(" / ")
            ));
        }
        runs.push(run);
    }
    Ok((runs, notes))
}

/// One run of `clients` clients fetching `path` (`rung`'s, or a test's script) from
/// `target`, measured: the load, the tree's
/// processes, memory and CPU, the counters before and after.
pub fn measure(
    target: &mut Target,
    rung: Rung,
    path: &str,
    clients: usize,
    limits: Limits,
    tick: &mut dyn FnMut(u64, Instant),
) -> Result<(Run, Stats), String> {
    let roots = target.roots();
    let load_before = crate::machine::load_1min();
    // Counters first and last, so reading them is not part of the run's CPU.
    let counters0 = target.counters();
    let cpu0 = cpu::read_settled(&roots, Duration::from_millis(300));
    let cgroup0 = target.cgroup_usage();
    let fixed0 = others_now(&roots);
    let client0 = cpu::this_process();
    let sampler = Sampler::start(roots.clone()).map_err(|e| format!("sampler: {e}"))?;
    let t0 = Instant::now();
    let stats = load::run_with(target.addr(), path, clients, limits, &mut |n| tick(n, t0));
    let memory = sampler.stop(Some((t0, t0 + stats.elapsed)));
    let client = cpu::this_process()
        .saturating_sub(client0)
        .saturating_sub(memory.sampler_cpu);
    let cpu1 = cpu::read_settled(&roots, Duration::from_millis(300));
    let cgroup1 = target.cgroup_usage();
    let counters1 = target.counters();
    let used: TreeCpu = cpu1.since(&cpu0);
    let counted = match (counters0, counters1) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    let answers_per_sec = if stats.elapsed.is_zero() {
        0.0
    } else {
        (stats.ok + stats.non_200) as f64 / stats.elapsed.as_secs_f64()
    };
    let (cpu, little, spawned) = match counted {
        // Our server: its own process from /proc, its reaped children from wait4,
        // what still lives below it (workers) from /proc.
        Some(c) => {
            let cpu = Cpu {
                tree: used.roots_self + c.reaped_cpu + used.others,
                server: Some(used.roots_self),
                reaped_wait4: Some(c.reaped_cpu),
                reaped_proc: Some(used.roots_reaped),
                client,
                source: CpuSource::Counters,
            };
            let little = if rung.model == Model::Cgi {
                Little::scripts(
                    answers_per_sec,
                    (
                        c.reaped,
                        c.reaped_lifetime.as_secs_f64(),
                        c.reaped_spawn.as_secs_f64(),
                    ),
                    memory.mean_others,
                    memory.peak_others,
                )
            } else {
                Little::Fixed {
                    expected: c.running as f64,
                    mean: memory.mean_others,
                }
            };
            (cpu, little, Some(c.started))
        }
        None => {
            let cpu = match (cgroup0, cgroup1) {
                (Some(a), Some(b)) => Cpu {
                    tree: b.saturating_sub(a),
                    client,
                    source: CpuSource::Cgroup,
                    ..Cpu::default()
                },
                _ => Cpu {
                    tree: used.total(),
                    client,
                    source: if crate::cgroup::ignores_sigchld(&crate::sample::members(&roots)) {
                        CpuSource::Incomplete
                    } else {
                        CpuSource::Proc
                    },
                    ..Cpu::default()
                },
            };
            let little = if target.uncounted_scripts() {
                Little::Unchecked
            } else {
                Little::Fixed {
                    expected: fixed0 as f64,
                    mean: memory.mean_others,
                }
            };
            (cpu, little, None)
        }
    };
    let little = little.unless_short(memory.samples);
    let run = Run {
        rung,
        concurrency: clients,
        repeat: 1,
        throughput: stats.throughput(),
        p50: stats.p50(),
        p99: stats.p99(),
        ok: stats.ok,
        non_200: stats.non_200,
        errors: stats.errors,
        connects: stats.connects,
        elapsed: stats.elapsed,
        memory,
        spawned,
        cpu,
        little,
        load_before,
        load: crate::machine::load_1min(),
    };
    Ok((run, stats))
}

/// Processes below `roots` now (workers, a fixed set for a pool).
fn others_now(roots: &[i32]) -> usize {
    let all = procfs::all();
    procfs::tree(roots, &all)
        .iter()
        .filter(|p| !roots.contains(&p.pid))
        .count()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

//! The sweep: every rung of the ladder at every concurrency, each against a freshly
//! started server (ours in-process, or gunicorn/uvicorn as children), with the
//! memory of the serving process tree sampled throughout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Ui;
use crate::external::External;
use crate::ladder::{Model, Peers, Rung, Site};
use crate::sample::{self, Memory, Sampler};
use cgi_testbed::logger::LogTarget;
use cgi_testbed::{Config, Running, Server};
use cgi_testbed_load::{self as load, Limits};

/// One rung at one concurrency.
#[derive(Debug, Clone)]
pub struct Run {
    pub rung: Rung,
    pub concurrency: usize,
    /// Answers with status 200 per second.
    pub throughput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub ok: u64,
    pub non_200: u64,
    pub errors: u64,
    pub connects: u64,
    pub elapsed: Duration,
    /// The serving process tree: our process (server, load generator) and its
    /// scripts and workers, or the external server's master and workers.
    pub memory: Memory,
    /// Processes our server started during the run (scripts and workers); `None`
    /// for an external server.
    pub spawned: Option<u64>,
    /// The 1-minute load average when the run ended: how busy the machine was.
    pub load: f64,
}

impl Run {
    /// Requests that got a complete answer.
    pub fn answered(&self) -> u64 {
        self.ok + self.non_200
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
}

#[derive(Debug, Clone, Default)]
pub struct Sweep {
    pub runs: Vec<Run>,
    /// Skipped or failed rungs, and runs with errors, each with the reason.
    pub notes: Vec<String>,
}

/// Our server's configuration for the sweep, logging its errors to memory.
pub fn server_config(
    site: &Site,
    workers: usize,
    clients: usize,
) -> (Config, Arc<Mutex<Vec<String>>>) {
    let (target, errors) = LogTarget::memory();
    let mut c = Config::new(&site.cgi_dir);
    c.document_root = Some(site.public.clone());
    c.error_log = target;
    // One connection thread and one script slot per client, so neither limit is
    // what the sweep measures.
    c.threads = c.threads.max(clients + 8);
    c.max_procs = c.max_procs.max(clients + 8);
    // A fixed pool, like gunicorn's and uvicorn's fixed worker count.
    c.workers.min = workers;
    c.workers.max = workers;
    (c, errors)
}

enum Target {
    Ours(Running, Arc<Mutex<Vec<String>>>),
    Theirs(External),
}

impl Target {
    fn start(rung: Rung, site: &Site, peers: &Peers, s: &Settings) -> Result<Target, String> {
        match rung.model {
            Model::Cgi | Model::FastCgi | Model::Static => {
                let clients = s.concurrency.iter().copied().max().unwrap_or(1);
                let (config, errors) = server_config(site, s.workers, clients);
                let running = Server::bind(config)
                    .and_then(Server::start)
                    .map_err(|e| format!("cannot start the server: {e}"))?;
                Ok(Target::Ours(running, errors))
            }
            Model::Gunicorn | Model::Uvicorn => {
                let python = peers.python.as_deref().ok_or("no python3")?;
                let log = site.apps.join(format!("{}.log", rung.model.name()));
                External::start(rung.model, python, &site.apps, s.workers, &log).map(Target::Theirs)
            }
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Target::Ours(r, _) => r.addr,
            Target::Theirs(e) => e.addr,
        }
    }

    /// The root of the process tree that serves.
    fn root(&self) -> i32 {
        match self {
            Target::Ours(..) => std::process::id() as i32,
            Target::Theirs(e) => e.pid(),
        }
    }

    /// Processes started so far by our server.
    fn spawned(&self) -> Option<u64> {
        match self {
            Target::Ours(r, _) => {
                let s = cgi_testbed::status::snapshot(r.shared()).spawns;
                Some(s.cgi_total + s.workers_total)
            }
            Target::Theirs(_) => None,
        }
    }

    /// The first few distinct lines our server logged since the last call.
    fn errors(&self) -> Vec<String> {
        let Target::Ours(_, log) = self else {
            return Vec::new();
        };
        let logged: Vec<String> = log
            .lock()
            .map(|mut l| l.drain(..).collect())
            .unwrap_or_default();
        let mut lines: Vec<String> = Vec::new();
        for mut l in logged {
            // Enough to recognise the failure; the rest is the same for every request.
            if let Some((cut, _)) = l.char_indices().nth(240) {
                l.truncate(cut);
                l.push('…');
            }
            if lines.len() < 3 && !lines.contains(&l) {
                lines.push(l);
            }
        }
        lines
    }
}

/// Runs every rung in `rungs` at every concurrency in `s`.
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
    let total = runnable.len() * s.concurrency.len();
    for (i, &rung) in runnable.iter().enumerate() {
        match sweep_rung(rung, site, peers, s, ui, (i * s.concurrency.len(), total)) {
            Ok((mut runs, mut notes)) => {
                out.runs.append(&mut runs);
                out.notes.append(&mut notes);
            }
            Err(e) => {
                ui.say(&format!("{}: failed: {e}", rung.label()));
                out.notes.push(format!("{}: failed, {e}", rung.label()));
            }
        }
    }
    out
}

fn sweep_rung(
    rung: Rung,
    site: &Site,
    peers: &Peers,
    s: &Settings,
    ui: &Ui,
    (done, total): (usize, usize),
) -> Result<(Vec<Run>, Vec<String>), String> {
    let target = Target::start(rung, site, peers, s)?;
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
    for (j, &clients) in s.concurrency.iter().enumerate() {
        let label = format!("[{}/{total}] {} × {clients}", done + j + 1, rung.label());
        let bar = ui.bar(&label);
        let before = target.spawned();
        let sampler =
            Sampler::start(target.root(), sample::EVERY).map_err(|e| format!("sampler: {e}"))?;
        let t0 = Instant::now();
        let stats = load::run_with(addr, &path, clients, s.limits, &mut |n| {
            // Whichever limit is nearer decides how far along the run is.
            let by_count = n as f64 / s.limits.requests as f64;
            let by_time = t0.elapsed().as_secs_f64() / s.limits.duration.as_secs_f64();
            bar.set_message(format!("{n} requests"));
            bar.set_position((by_count.max(by_time).min(1.0) * 1000.0) as u64);
        });
        let memory = sampler.stop();
        bar.finish_and_clear();
        let spawned = match (before, target.spawned()) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let run = Run {
            rung,
            concurrency: clients,
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
            load: crate::machine::load_1min(),
        };
        ui.say(&format!(
            "{label}: {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms, {} not 200, {} errors, tree {:.1} MiB PSS, {} processes",
            run.throughput,
            ms(run.p50),
            ms(run.p99),
            run.non_200,
            run.errors,
            mib(run.memory.peak_pss_kib),
            run.memory.peak_procs
        ));
        if run.non_200 + run.errors > 0 {
            let client = stats
                .first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" First client error: {e}."));
            notes.push(format!(
                "{} at {clients} clients: {} answers not 200 and {} errors.{client} Server log: {}",
                rung.label(),
                run.non_200,
                run.errors,
                target.errors().join(" / ")
            ));
        }
        runs.push(run);
    }
    Ok((runs, notes))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

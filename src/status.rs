//! Live server status, as Apache's mod_status shows it: request counters by model and
//! status, the scripts running now, worker pools, spawn rate and what the whole process
//! tree costs in memory — rendered as HTML or JSON for `/server-status`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::fastcgi::pool::PoolStatus;
use crate::handlers::{Handlers, Runner};
use crate::html::escape;
use crate::proctree::{self, Proc};
use crate::stats::{Model, Stats};

/// Everything the status page shows, as one value (the JSON is this, serialized).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub server: String,
    pub pid: u32,
    pub started: String,
    pub uptime_secs: f64,
    pub requests: Requests,
    pub running: Vec<RunningView>,
    /// Scripts run in place, by extension (`--cgi-ext`, `--fcgi-ext`).
    pub handlers: Vec<HandlerView>,
    pub pools: Vec<PoolView>,
    pub spawns: Spawns,
    pub children: Children,
    pub memory: Memory,
}

/// Every process group the server started (scripts and workers) and reaped, with
/// the rusage `wait4` gave for each: the report reads these before and after a run.
#[derive(Debug, Serialize)]
pub struct Children {
    pub started: u64,
    /// Started and not yet reaped: running now, or exited a moment ago.
    pub running: usize,
    pub reaped: u64,
    /// User + system CPU of the reaped processes (including what they reaped).
    pub reaped_cpu_us: u64,
    /// Their lifetimes from the return of the spawn call to reap, summed: over a
    /// run, divided by the number reaped, the mean time a script is known alive.
    pub reaped_lifetime_us: u64,
    /// Their spawn calls' durations, summed: each process appeared (forked) within
    /// its call, so it was alive up to this much longer.
    pub reaped_spawn_us: u64,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    pub total: u64,
    /// model → status → count.
    pub by_model: BTreeMap<&'static str, BTreeMap<u16, u64>>,
}

#[derive(Debug, Serialize)]
pub struct RunningView {
    pub id: u64,
    pub model: Model,
    pub method: String,
    /// The request's path, without the query string.
    pub path: String,
    pub script: String,
    /// The script's process, found in /proc by its command line and start time; only
    /// for CGI, and `None` until it has started.
    pub pid: Option<i32>,
    pub age_ms: u64,
    pub client: String,
}

#[derive(Debug, Serialize)]
pub struct HandlerView {
    /// `.php`.
    pub extension: String,
    pub model: &'static str,
    /// What runs the files.
    pub runs: String,
    /// The worker pool that serves them, as named under `pools` (`--fcgi-ext
    /// EXT=PROGRAM` only).
    pub pool: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub busy: usize,
    pub idle: usize,
    pub spawned: u64,
    pub served: u64,
    pub failures: u32,
    pub last_failure: Option<String>,
    pub workers: Vec<WorkerView>,
}

#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub pid: i32,
    pub state: &'static str,
    /// Its answer to FCGI_GET_VALUES, if it gave one.
    pub values: Option<String>,
    pub served: u64,
    pub idle_ms: u64,
    pub rss_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Spawns {
    /// CGI processes started since the server started.
    pub cgi_total: u64,
    pub cgi_last_minute: u64,
    /// CGI starts per second over the last minute (or the uptime, if shorter).
    pub cgi_per_sec: f64,
    /// FastCGI worker processes started since the server started.
    pub workers_total: u64,
    /// Every process start per second since the server started.
    pub per_sec_since_start: f64,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    /// The server and every process below it.
    pub processes: usize,
    pub rss_kib: u64,
    /// Sum of PSS where readable (`None` if no process's was).
    pub pss_kib: Option<u64>,
    /// Process groups of scripts and workers not yet reaped.
    pub script_groups: usize,
    pub tree: Vec<Proc>,
}

/// What the page is made from, besides /proc.
pub struct Sources {
    pub stats: std::sync::Arc<Stats>,
    pub pools: Vec<PoolStatus>,
    /// Worker processes in all pools (`--workers-total` bounds it).
    pub workers_alive: usize,
    /// Process groups of scripts and workers not yet reaped.
    pub script_groups: usize,
    /// What the server started and reaped so far.
    pub children: crate::process::Totals,
    pub handlers: Handlers,
}

/// Reads everything the page shows, now. Walks /proc, so it runs off the event loop.
pub fn snapshot(src: Sources) -> Snapshot {
    let stats = &src.stats;
    let uptime = stats.uptime();
    let me = std::process::id();
    let tree = proctree::tree(me as i32);
    let by_model = stats.counts();
    let total = by_model.values().flat_map(|m| m.values()).sum();
    let running = stats
        .running_now()
        .into_iter()
        .map(|(id, r)| RunningView {
            id,
            model: r.model,
            method: r.method,
            path: r.path,
            script: r.script,
            pid: r.pid,
            age_ms: r.started.elapsed().as_millis() as u64,
            client: r.client.to_string(),
        })
        .collect();
    let handlers = src
        .handlers
        .iter()
        .map(|h| HandlerView {
            extension: format!(".{}", h.ext),
            model: h.runner.model(),
            runs: h.runner.describe(),
            pool: match &h.runner {
                Runner::Pool(program) => Some(src.handlers.pool_name(program)),
                _ => None,
            },
        })
        .collect();
    let pools: Vec<PoolView> = src
        .pools
        .into_iter()
        .map(|p| PoolView {
            idle: p.workers.iter().filter(|w| !w.busy).count(),
            workers: p
                .workers
                .iter()
                .map(|w| WorkerView {
                    pid: w.pid,
                    values: w.values.clone(),
                    state: if w.busy { "busy" } else { "idle" },
                    served: w.served,
                    idle_ms: if w.busy { 0 } else { w.for_.as_millis() as u64 },
                    rss_kib: tree.iter().find(|t| t.pid == w.pid).map(|t| t.rss_kib),
                })
                .collect(),
            name: p.name,
            busy: p.busy,
            spawned: p.spawned,
            served: p.served,
            failures: p.failures,
            last_failure: p.last_failure,
        })
        .collect();
    let cgi_total = stats.cgi_spawns();
    let workers_total: u64 = pools.iter().map(|p| p.spawned).sum();
    let cgi_last_minute = stats.spawns_last_minute();
    let window = uptime.as_secs_f64().clamp(1.0, Stats::WINDOW_SECS as f64);
    let secs = uptime.as_secs_f64().max(1e-3);
    let pss: Vec<u64> = tree.iter().filter_map(|p| p.pss_kib).collect();
    Snapshot {
        server: crate::http::response::server_header(),
        pid: me,
        started: httpdate::fmt_http_date(stats.started_at()),
        uptime_secs: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
        requests: Requests { total, by_model },
        running,
        handlers,
        pools,
        spawns: Spawns {
            cgi_total,
            cgi_last_minute,
            cgi_per_sec: round2(cgi_last_minute as f64 / window),
            workers_total,
            per_sec_since_start: round2((cgi_total + workers_total) as f64 / secs),
        },
        children: {
            let t = src.children;
            let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            Children {
                started: t.started,
                running: t.running,
                reaped: t.reaped,
                reaped_cpu_us: us(t.reaped_cpu),
                reaped_lifetime_us: us(t.reaped_lifetime),
                reaped_spawn_us: us(t.reaped_spawn),
            }
        },
        memory: Memory {
            processes: tree.len(),
            rss_kib: tree.iter().map(|p| p.rss_kib).sum(),
            pss_kib: (!pss.is_empty()).then(|| pss.iter().sum()),
            script_groups: src.script_groups,
            tree,
        },
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The page as JSON.
pub fn json(snap: &Snapshot) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(snap)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()).into_bytes());
    out.push(b'\n');
    out
}

fn kib(n: u64) -> String {
    bytesize::ByteSize::kib(n).display().iec().to_string()
}

fn ms(n: u64) -> String {
    humantime::format_duration(Duration::from_millis(n)).to_string()
}

/// The page as HTML: plain tables, no scripts.
pub fn html(snap: &Snapshot) -> String {
    let mut h = String::with_capacity(8192);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Server status — cgi-testbed</title><style>{}</style></head><body>\n\
         <h1>Server status</h1>\n<p>{} · pid {} · up {} (since {}) · \
         <a href=\"/server-status?json\">JSON</a> · <a href=\"/\">scripts</a></p>\n",
        crate::landing::STYLE,
        escape(&snap.server),
        snap.pid,
        ms((snap.uptime_secs * 1000.0) as u64),
        escape(&snap.started)
    );
    let _ = writeln!(h, "<h2>Requests: {}</h2>", snap.requests.total);
    if snap.requests.by_model.is_empty() {
        h.push_str("<p>None yet.</p>\n");
    } else {
        h.push_str("<table><tr><th>model</th><th>status</th><th>requests</th></tr>\n");
        for (model, statuses) in &snap.requests.by_model {
            for (status, n) in statuses {
                let _ = writeln!(
                    h,
                    "<tr><td>{model}</td><td>{status}</td><td class=\"n\">{n}</td></tr>"
                );
            }
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h2>Running scripts: {}</h2>", snap.running.len());
    if !snap.running.is_empty() {
        h.push_str(
            "<table><tr><th>request</th><th>model</th><th>script</th><th>pid</th>\
             <th>age</th><th>client</th><th>request</th></tr>\n",
        );
        for r in &snap.running {
            let _ = writeln!(
                h,
                "<tr><td class=\"n\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td>{}</td><td><code>{} {}</code></td></tr>",
                r.id,
                r.model.name(),
                escape(&r.script),
                r.pid.map_or("–".into(), |p| p.to_string()),
                ms(r.age_ms),
                escape(&r.client),
                escape(&r.method),
                escape(&r.path)
            );
        }
        h.push_str("</table>\n");
    }
    if !snap.handlers.is_empty() {
        h.push_str(
            "<h2>Scripts by extension</h2>\n<table><tr><th>extension</th><th>model</th>\
             <th>runs as</th><th>pool</th></tr>\n",
        );
        for x in &snap.handlers {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&x.extension),
                x.model,
                escape(&x.runs),
                x.pool
                    .as_deref()
                    .map_or("–".into(), |p| format!("<code>{}</code>", escape(p)))
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h2>Worker pools: {}</h2>", snap.pools.len());
    for p in &snap.pools {
        let _ = write!(
            h,
            "<h3><code>{}</code></h3>\n<p>{} busy, {} idle · {} started · {} requests served · {} failures{}</p>\n",
            escape(&p.name),
            p.busy,
            p.idle,
            p.spawned,
            p.served,
            p.failures,
            p.last_failure
                .as_deref()
                .map(|f| format!(" (last: {})", escape(f)))
                .unwrap_or_default()
        );
        if !p.workers.is_empty() {
            h.push_str("<table><tr><th>pid</th><th>state</th><th>served</th><th>idle for</th><th>RSS</th></tr>\n");
            for w in &p.workers {
                let _ = writeln!(
                    h,
                    "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    w.pid,
                    w.state,
                    w.served,
                    ms(w.idle_ms),
                    w.rss_kib.map_or("–".into(), kib)
                );
            }
            h.push_str("</table>\n");
        }
    }
    let s = &snap.spawns;
    let _ = write!(
        h,
        "<h2>Process starts</h2>\n<p>{} CGI processes ({} in the last minute, {}/s) · \
         {} FastCGI workers · {}/s since start</p>\n",
        s.cgi_total, s.cgi_last_minute, s.cgi_per_sec, s.workers_total, s.per_sec_since_start
    );
    let m = &snap.memory;
    let _ = write!(
        h,
        "<h2>Memory of the process tree</h2>\n<p>{} processes · RSS {} · PSS {} · {} script process groups</p>\n\
         <table><tr><th>pid</th><th>parent</th><th>name</th><th>age</th><th>RSS</th><th>PSS</th></tr>\n",
        m.processes,
        kib(m.rss_kib),
        m.pss_kib.map_or("unreadable".into(), kib),
        m.script_groups
    );
    for p in &m.tree {
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            p.pid,
            p.ppid,
            escape(&p.name),
            ms(p.age.as_millis() as u64),
            kib(p.rss_kib),
            p.pss_kib.map_or("–".into(), kib)
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

//! Live server status, as Apache's mod_status shows it: request counters by model and
//! status, the scripts running now, worker pools, spawn rate and what the whole process
//! tree costs in memory — rendered as HTML or JSON for `/server-status`. Also who may
//! read it (loopback, plus `--status-allow`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::html::escape;
use crate::proctree::{self, Proc};
use crate::server::Shared;

/// Which part of the server answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Refused before any route took it (bad head, bad path, nothing there).
    #[default]
    None,
    /// A process per request under a script mount.
    Cgi,
    /// A pooled or external FastCGI worker under `/fcgi-bin/`.
    FastCgi,
    /// A file from the document root.
    Static,
    /// The server's own pages: landing page, status, directory redirects.
    Builtin,
}

const MODELS: [Model; 5] = [
    Model::None,
    Model::Cgi,
    Model::FastCgi,
    Model::Static,
    Model::Builtin,
];
/// Statuses 0..=599 each have a counter; anything else counts as 0.
const STATUSES: usize = 600;
const WINDOW_SECS: u64 = 60;

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::None => "none",
            Model::Cgi => "cgi",
            Model::FastCgi => "fastcgi",
            Model::Static => "static",
            Model::Builtin => "builtin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A request running a script right now.
#[derive(Debug, Clone)]
struct Running {
    model: Model,
    method: String,
    target: String,
    script: String,
    client: SocketAddr,
    started: Instant,
    /// The script's process, or the worker serving it, once known.
    pid: Option<i32>,
}

/// Counters and the in-flight table every connection thread updates. Counting a
/// request is one relaxed atomic add; only script starts and ends take a lock.
pub struct Stats {
    started: Instant,
    started_at: SystemTime,
    /// `MODELS.len() * STATUSES` counters, by model then status.
    counts: Vec<AtomicU64>,
    cgi_spawns: AtomicU64,
    /// CGI spawns per second over the last minute: (second since start, count).
    recent_spawns: Mutex<VecDeque<(u64, u64)>>,
    inflight: Mutex<HashMap<u64, Running>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// Takes a script out of the in-flight table when its request ends, however it ends.
pub struct InFlight<'a> {
    stats: &'a Stats,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.stats.inflight).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            started_at: SystemTime::now(),
            counts: (0..MODELS.len() * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            cgi_spawns: AtomicU64::new(0),
            recent_spawns: Mutex::new(VecDeque::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one answered request.
    pub fn finished(&self, model: Model, status: u16) {
        let status = usize::from(status);
        let status = if status < STATUSES { status } else { 0 };
        self.counts[model.index() * STATUSES + status].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one CGI process started.
    pub fn spawned(&self) {
        self.cgi_spawns.fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_secs();
        let mut recent = lock(&self.recent_spawns);
        match recent.back_mut() {
            Some((sec, n)) if *sec == now => *n += 1,
            _ => recent.push_back((now, 1)),
        }
        while recent
            .front()
            .is_some_and(|(sec, _)| sec + WINDOW_SECS <= now)
        {
            recent.pop_front();
        }
    }

    /// Lists a script as running until the returned guard drops.
    pub fn running(
        &self,
        id: u64,
        model: Model,
        req: &crate::http::head::Request,
        script: &crate::route::Script,
        client: SocketAddr,
    ) -> InFlight<'_> {
        lock(&self.inflight).insert(
            id,
            Running {
                model,
                method: req.method.clone(),
                target: req.target.clone(),
                script: script.script_name.clone(),
                client,
                started: Instant::now(),
                pid: None,
            },
        );
        InFlight { stats: self, id }
    }

    /// Records which process serves in-flight request `id`.
    pub fn set_pid(&self, id: u64, pid: i32) {
        if let Some(r) = lock(&self.inflight).get_mut(&id) {
            r.pid = Some(pid);
        }
    }

    /// Requests answered so far, by model and status.
    pub fn counts(&self) -> BTreeMap<&'static str, BTreeMap<u16, u64>> {
        let mut out = BTreeMap::new();
        for model in MODELS {
            let by_status: BTreeMap<u16, u64> = (0..STATUSES)
                .filter_map(|s| {
                    let n = self.counts[model.index() * STATUSES + s].load(Ordering::Relaxed);
                    (n > 0).then_some((s as u16, n))
                })
                .collect();
            if !by_status.is_empty() {
                out.insert(model.name(), by_status);
            }
        }
        out
    }

    fn spawns_last_minute(&self) -> u64 {
        let now = self.started.elapsed().as_secs();
        lock(&self.recent_spawns)
            .iter()
            .filter(|(sec, _)| sec + WINDOW_SECS > now)
            .map(|(_, n)| n)
            .sum()
    }
}

/// An address or a CIDR block allowed to read the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 client seen through a dual-stack socket (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// May `client` read the status page? Loopback always; others only when allowed.
pub fn allowed(client: IpAddr, allow: &[IpNet]) -> bool {
    let client = canonical(client);
    client.is_loopback() || allow.iter().any(|net| net.contains(client))
}

/// Everything the status page shows, as one value (the JSON is this, serialized).
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub server: String,
    pub pid: u32,
    pub started: String,
    pub uptime_secs: f64,
    pub requests: Requests,
    pub running: Vec<RunningView>,
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
    pub target: String,
    pub script: String,
    /// The script's process, found in /proc by its command line and start time; only
    /// for CGI, and `None` until it has started.
    pub pid: Option<i32>,
    pub age_ms: u64,
    pub client: String,
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

/// Reads everything the page shows, now.
pub fn snapshot(shared: &Shared) -> Snapshot {
    let stats = &shared.stats;
    let uptime = stats.started.elapsed();
    let me = std::process::id();
    let tree = proctree::tree(me as i32);
    let by_model = stats.counts();
    let total = by_model.values().flat_map(|m| m.values()).sum();
    let mut running: Vec<(u64, Running)> = lock(&stats.inflight)
        .iter()
        .map(|(id, r)| (*id, r.clone()))
        .collect();
    running.sort_by_key(|(_, r)| r.started);
    let running = running
        .into_iter()
        .map(|(id, r)| RunningView {
            id,
            model: r.model,
            method: r.method,
            target: r.target,
            script: r.script,
            pid: r.pid,
            age_ms: r.started.elapsed().as_millis() as u64,
            client: r.client.to_string(),
        })
        .collect();
    let pools: Vec<PoolView> = shared
        .pools
        .status()
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
    let cgi_total = stats.cgi_spawns.load(Ordering::Relaxed);
    let workers_total: u64 = pools.iter().map(|p| p.spawned).sum();
    let cgi_last_minute = stats.spawns_last_minute();
    let window = uptime.as_secs_f64().clamp(1.0, WINDOW_SECS as f64);
    let secs = uptime.as_secs_f64().max(1e-3);
    let pss: Vec<u64> = tree.iter().filter_map(|p| p.pss_kib).collect();
    Snapshot {
        server: crate::http::response::server_header(),
        pid: me,
        started: httpdate::fmt_http_date(stats.started_at),
        uptime_secs: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
        requests: Requests { total, by_model },
        running,
        pools,
        spawns: Spawns {
            cgi_total,
            cgi_last_minute,
            cgi_per_sec: round2(cgi_last_minute as f64 / window),
            workers_total,
            per_sec_since_start: round2((cgi_total + workers_total) as f64 / secs),
        },
        children: {
            let t = shared.children.totals();
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
            script_groups: shared.children.count(),
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
             <th>age</th><th>client</th><th>request line</th></tr>\n",
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
                escape(&r.target)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let nets: Vec<IpNet> = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(ip("127.0.0.1"), &[]));
        assert!(allowed(ip("127.9.9.9"), &[]));
        assert!(allowed(ip("::1"), &[]));
        assert!(allowed(ip("::ffff:127.0.0.1"), &[]));
        assert!(!allowed(ip("10.1.2.3"), &[]));
        assert!(allowed(ip("10.1.2.3"), &nets));
        assert!(allowed(ip("::ffff:10.1.2.3"), &nets));
        assert!(!allowed(ip("10.2.0.1"), &nets));
        assert!(allowed(ip("192.0.2.7"), &nets));
        assert!(!allowed(ip("192.0.2.8"), &nets));
        assert!(allowed(ip("2001:db8:1::5"), &nets));
        assert!(!allowed(ip("2001:db9::5"), &nets));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn parsing_nets() {
        assert_eq!(
            "10.0.0.0/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
        assert!("10.0.0.0/x".parse::<IpNet>().is_err());
    }

    #[test]
    fn counting() {
        let s = Stats::new();
        s.finished(Model::Cgi, 200);
        s.finished(Model::Cgi, 200);
        s.finished(Model::Static, 304);
        s.finished(Model::None, 999);
        let c = s.counts();
        assert_eq!(c["cgi"][&200], 2);
        assert_eq!(c["static"][&304], 1);
        assert_eq!(c["none"][&0], 1);
        assert!(!c.contains_key("fastcgi"));
        s.spawned();
        s.spawned();
        assert_eq!(s.spawns_last_minute(), 2);
    }
}

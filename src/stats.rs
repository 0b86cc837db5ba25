//! Request counters by model and status, the requests running a script now, and the
//! process-start rate: what every connection updates and `/server-status` reads.
//! Counting a request is one relaxed atomic add; only script starts and ends lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use serde::Serialize;

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
pub struct Running {
    pub model: Model,
    pub method: String,
    /// The target's path: never its query, which may carry tokens or passwords.
    pub path: String,
    pub script: String,
    pub client: SocketAddr,
    pub started: Instant,
    /// The script's process, or the worker serving it, once known.
    pub pid: Option<i32>,
}

/// Counters and the in-flight table every connection updates.
pub struct Stats {
    started: Instant,
    started_at: SystemTime,
    /// `MODELS.len() * STATUSES` counters, by model then status.
    counts: Vec<AtomicU64>,
    cgi_spawns: AtomicU64,
    /// CGI spawns per second over the last minute: (second since start, count).
    recent_spawns: Mutex<VecDeque<(u64, u64)>>,
    /// The in-flight table in shards, one per event loop: each loop updates its own,
    /// so loops never wait for each other's lock; the status page reads them all.
    inflight: Vec<Mutex<HashMap<u64, Running>>>,
}

/// Shards of the in-flight table (loops beyond this share).
const SHARDS: usize = 8;

/// The shard of the thread calling.
fn shard() -> usize {
    crate::event_loop::current() % SHARDS
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
    shard: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.stats.inflight[self.shard]).remove(&self.id);
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
            inflight: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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
    pub fn running(&self, id: u64, running: Running) -> InFlight<'_> {
        let shard = shard();
        lock(&self.inflight[shard]).insert(id, running);
        InFlight {
            stats: self,
            id,
            shard,
        }
    }

    /// Records which process serves in-flight request `id` (of this thread's loop).
    pub fn set_pid(&self, id: u64, pid: i32) {
        if let Some(r) = lock(&self.inflight[shard()]).get_mut(&id) {
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

    /// The requests running a script now, oldest first.
    pub fn running_now(&self) -> Vec<(u64, Running)> {
        let mut running: Vec<(u64, Running)> = self
            .inflight
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .iter()
                    .map(|(id, r)| (*id, r.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        running.sort_by_key(|(_, r)| r.started);
        running
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// CGI processes started since the server started.
    pub fn cgi_spawns(&self) -> u64 {
        self.cgi_spawns.load(Ordering::Relaxed)
    }

    /// The length of the spawn-rate window, in seconds.
    pub const WINDOW_SECS: u64 = WINDOW_SECS;

    pub fn spawns_last_minute(&self) -> u64 {
        let now = self.started.elapsed().as_secs();
        lock(&self.recent_spawns)
            .iter()
            .filter(|(sec, _)| sec + WINDOW_SECS > now)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

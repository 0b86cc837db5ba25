//! The process manager: per script, long-running FastCGI workers, each listening on
//! its own AF_UNIX socket passed as fd 0 (as mod_fcgid does), each with one kept
//! connection. A request only goes to an idle worker; workers start on demand up to
//! `--workers-max` per script and `--workers-total` in all, idle ones above the
//! minimum retire, and a program that keeps failing is restarted with a doubling
//! back-off while requests get 503 at once. Waiting for a worker is a wait in the
//! event loop.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::Notify;

use super::client::{StdStream, Stream};
use crate::error::Error;
use crate::event_loop;
use crate::gateway::env::MetaVars;
use crate::limits::{Enforcer, ProcessLimits};
use crate::logger::Logger;
use crate::process::{Child, Registry};
use crate::script_log::ScriptLog;
use crate::spawn::WorkerSched;

/// When every worker is busy, how long a request waits for one to come free before
/// starting another: a worker is often released a moment after its client has the
/// answer, and reusing it is far cheaper than a new process.
const SPAWN_DELAY: Duration = Duration::from_millis(10);
/// Between SIGTERM and SIGKILL when a worker retires.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long we wait for a dead worker's last words before judging it.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub min: usize,
    pub max: usize,
    /// `--workers-total`: worker processes in all pools together.
    pub total: usize,
    pub idle: Duration,
    /// Recycle a worker after this many requests; 0 means never.
    pub max_requests: u64,
    /// How long a request waits for a free worker before 503.
    pub wait: Duration,
    /// `--worker-sched`: the workers' scheduling policy.
    pub sched: WorkerSched,
}

/// What every pool shares: settings, the sockets' directory, and the count of all
/// workers against `--workers-total`.
struct Common {
    settings: PoolSettings,
    /// Workers' environment: a clean base plus `--env`, and PHP_FCGI_CHILDREN=0.
    env: MetaVars,
    sockets: tempfile::TempDir,
    log: Arc<Logger>,
    registry: Arc<Registry>,
    limits: Arc<Enforcer>,
    stopping: AtomicBool,
    next_worker: AtomicU64,
    /// Workers alive or starting, in all pools.
    total: AtomicUsize,
    /// How many event loops there are: a pool keeps a wait queue for each.
    loops: usize,
    /// Woken when a worker goes, so a pool waiting for room under the total can grow.
    room: Notify,
    pools: Mutex<HashMap<PathBuf, Arc<Pool>>>,
}

impl Common {
    /// Counts a worker about to start against `--workers-total`.
    fn reserve(&self) -> bool {
        let max = self.settings.total.max(1);
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn unreserve(&self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.room.notify_one();
    }

    /// Retires the longest-idle worker of another pool to make room under
    /// `--workers-total`; false when there is none.
    fn evict_idle(&self, except: &Pool) -> bool {
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        let mut oldest: Option<(Instant, Arc<Pool>)> = None;
        for p in pools {
            if std::ptr::eq(Arc::as_ptr(&p), except) {
                continue;
            }
            let st = lock(&p.state);
            if let Some(w) = st.idle.first()
                && oldest.as_ref().is_none_or(|(t, _)| w.last_used < *t)
            {
                oldest = Some((w.last_used, p.clone()));
            }
        }
        let Some((_, pool)) = oldest else {
            return false;
        };
        let mut st = lock(&pool.state);
        if st.idle.is_empty() {
            return false;
        }
        let w = st.idle.remove(0);
        st.total -= 1;
        drop(st);
        self.log.log(&format!(
            "[fcgi {}] retiring idle worker pid {} to make room for {} (--workers-total {})",
            pool.name, w.pid, except.name, self.settings.total
        ));
        w.retire(self);
        true
    }
}

/// All pools of one server, one per script.
pub struct Pools {
    common: Arc<Common>,
}

/// What the status page shows of one pool.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub name: String,
    pub workers: Vec<WorkerStatus>,
    pub busy: usize,
    pub spawned: u64,
    pub served: u64,
    pub failures: u32,
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub pid: i32,
    /// `FCGI_MAX_CONNS=1, ...` as the worker answered FCGI_GET_VALUES (idle ones).
    pub values: Option<String>,
    pub served: u64,
    /// Busy (serving a request) or idle.
    pub busy: bool,
    /// How long it has been in that state.
    pub for_: Duration,
}

impl Pools {
    pub fn new(
        settings: PoolSettings,
        env: MetaVars,
        log: Arc<Logger>,
        registry: Arc<Registry>,
        limits: Arc<Enforcer>,
        loops: usize,
    ) -> io::Result<Arc<Pools>> {
        let sockets = tempfile::Builder::new()
            .prefix("cgi-testbed-fcgi-")
            .tempdir()?;
        Ok(Arc::new(Pools {
            common: Arc::new(Common {
                settings,
                env,
                sockets,
                log,
                registry,
                limits,
                stopping: AtomicBool::new(false),
                next_worker: AtomicU64::new(0),
                total: AtomicUsize::new(0),
                loops: loops.max(1),
                room: Notify::new(),
                pools: Mutex::new(HashMap::new()),
            }),
        }))
    }

    /// The pool for `key` — a script's file, or the program that serves a whole
    /// extension — created on first use; `command` is how to start its workers, in
    /// `cwd`.
    pub fn pool(
        &self,
        name: &str,
        key: &Path,
        cwd: &Path,
        command: (PathBuf, Vec<PathBuf>),
    ) -> Arc<Pool> {
        let mut pools = lock(&self.common.pools);
        if let Some(p) = pools.get(key) {
            return p.clone();
        }
        let pool = Arc::new(Pool {
            name: name.to_owned(),
            program: command.0,
            args: command.1,
            cwd: cwd.to_path_buf(),
            common: self.common.clone(),
            state: Mutex::new(State {
                waiting: vec![0; self.common.loops],
                ..State::default()
            }),
            freed: (0..self.common.loops).map(|_| Notify::new()).collect(),
        });
        pools.insert(key.to_path_buf(), pool.clone());
        pool
    }

    pub fn status(&self) -> Vec<PoolStatus> {
        self.all().iter().map(|p| p.status()).collect()
    }

    /// Worker processes alive or starting in all pools.
    pub fn total(&self) -> usize {
        self.common.total.load(Ordering::Relaxed)
    }

    fn all(&self) -> Vec<Arc<Pool>> {
        lock(&self.common.pools).values().cloned().collect()
    }

    /// Retires idle and dead workers and keeps each pool's minimum warm; runs in a
    /// loop every [`SWEEP_EVERY`].
    pub async fn sweep(&self) {
        for p in self.all() {
            p.sweep().await;
        }
    }

    pub fn stopping(&self) -> bool {
        self.common.stopping.load(Ordering::Relaxed)
    }

    /// Stops every idle worker (busy ones go as their requests end): SIGTERM to all,
    /// up to the grace period for all of them together, then SIGKILL. Runs outside
    /// the loops, at shutdown.
    pub fn shutdown(&self) {
        self.common.stopping.store(true, Ordering::SeqCst);
        let mut leaving = Vec::new();
        for p in self.all() {
            let mut st = lock(&p.state);
            st.total -= st.idle.len();
            leaving.append(&mut st.idle);
            for f in &p.freed {
                f.notify_waiters();
            }
        }
        let mut children = Vec::new();
        for w in leaving {
            children.push(w.let_go());
            self.common.total.fetch_sub(1, Ordering::AcqRel);
        }
        let until = Instant::now() + RETIRE_GRACE;
        for (child, _) in &children {
            child.wait_exit_blocking(until.saturating_duration_since(Instant::now()));
        }
        for (mut child, limits) in children {
            child.reap();
            drop(limits);
        }
        self.common.room.notify_waiters();
    }

    /// Removes the sockets directory now: the binary exits without dropping the
    /// shared state (the signal thread still holds it), so `TempDir`'s own cleanup
    /// would never run.
    pub fn remove_sockets(&self) {
        let _ = std::fs::remove_dir_all(self.common.sockets.path());
        // The pools hold the common state: let go of them so nothing outlives the
        // server.
        lock(&self.common.pools).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Pool {
    name: String,
    program: PathBuf,
    args: Vec<PathBuf>,
    cwd: PathBuf,
    common: Arc<Common>,
    state: Mutex<State>,
    /// Woken when a worker of this pool comes free or goes: one queue per loop, so a
    /// worker freed in a loop goes to a request waiting in the same loop first (no
    /// thread woken, no connection moved between loops).
    freed: Vec<Notify>,
}

#[derive(Default)]
struct State {
    idle: Vec<Worker>,
    /// Workers that exist: idle, busy or starting.
    total: usize,
    spawned: u64,
    served: u64,
    /// Consecutive workers that died before answering anything.
    failures: u32,
    retry_at: Option<Instant>,
    last_failure: Option<String>,
    /// Requests waiting in `acquire`, by loop; nobody to wake means no wake-up call.
    waiting: Vec<usize>,
    /// Workers out on a request: pid → (requests served, since when).
    busy: HashMap<i32, (u64, Instant)>,
}

/// How a request ended for the worker that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered and the connection is clean: keep it.
    Healthy,
    /// Must go: hung, broken protocol, died mid-request.
    Retire,
    /// Died or misbehaved before answering anything: counts towards the back-off.
    Failed,
}

/// What `acquire` does after looking at the pool.
enum Step {
    Take(Box<Worker>),
    Start,
    /// No room under `--workers-total`: make some, or wait for it.
    NeedRoom,
    Wait(Instant),
}

/// Counts a request in `waiting` for as long as it waits, however the wait ends.
struct Waiting<'a>(&'a Pool, usize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).waiting[self.1] -= 1;
    }
}

impl Pool {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes an idle worker, starts one if below the maximums, or waits (in the loop)
    /// up to `--worker-wait` for one to come free, then 503. While a failing program
    /// is backed off, requests get 503 at once.
    pub async fn acquire(&self) -> Result<Worker, Error> {
        let started = Instant::now();
        let until = started + self.common.settings.wait;
        let here = event_loop::current();
        let queue = self.queue_of(here);
        let mut short_of_room = false;
        loop {
            let freed = pin!(self.freed[queue].notified());
            let room = pin!(self.common.room.notified());
            let (mut freed, mut room) = (freed, room);
            freed.as_mut().enable();
            room.as_mut().enable();
            match self.next_step(started, until, here, short_of_room)? {
                Step::Take(w) => return self.take(*w, here),
                Step::Start => return self.start().await,
                Step::NeedRoom => {
                    if self.common.evict_idle(self) {
                        continue;
                    }
                    short_of_room = true;
                    continue;
                }
                Step::Wait(wake) => {
                    let _waiting = Waiting(self, queue);
                    tokio::select! {
                        _ = freed => {}
                        _ = room => {}
                        _ = tokio::time::sleep_until(wake.into()) => {}
                    }
                }
            }
        }
    }

    /// Decides under the lock; waiting and starting happen outside it.
    fn next_step(
        &self,
        started: Instant,
        until: Instant,
        here: usize,
        short_of_room: bool,
    ) -> Result<Step, Error> {
        let settings = &self.common.settings;
        let mut st = lock(&self.state);
        if self.common.stopping.load(Ordering::Relaxed) {
            return Err(Error::Overloaded("server shutting down".into()));
        }
        while let Some(mut w) = take_idle(&mut st.idle, here) {
            // EOF on the kept connection while idle: the worker left (php-cgi does
            // after PHP_FCGI_MAX_REQUESTS); the request never reached it. A close that
            // races our first write shows as a failed write instead.
            if w.ready() {
                st.busy.insert(w.pid, (w.served, Instant::now()));
                return Ok(Step::Take(Box::new(w)));
            }
            st.total -= 1;
            if w.served == 0 && w.child.has_exited() {
                let why = w.output.last_words("exited before any request");
                self.record_failure(&mut st, &why);
            }
            drop(st);
            w.retire(&self.common);
            st = lock(&self.state);
        }
        let now = Instant::now();
        if let Some(retry) = st.retry_at.filter(|&t| now < t) {
            // A failing program: no start now, and no point waiting for one.
            if st.total == 0 || st.idle.is_empty() && st.busy.is_empty() {
                let why = st.last_failure.clone().unwrap_or_default();
                return Err(Error::WorkerFailing {
                    why: format!(
                        "{} is failing ({why}); not restarting it for another {:.1}s",
                        self.name,
                        (retry - now).as_secs_f64()
                    ),
                    retry_after: retry - now,
                });
            }
        }
        let throttled = st.retry_at.is_some_and(|t| now < t);
        // Alone in the queue: wait a moment for the worker that is about to be
        // released. Others waiting too: the pool is short, so grow it now.
        let nobody_waits = st.waiting.iter().all(|&n| n == 0);
        let patient = st.total > 0 && nobody_waits && now < started + SPAWN_DELAY;
        if st.total < settings.max.max(1) && !throttled && !patient {
            if self.common.reserve() {
                st.total += 1;
                st.spawned += 1;
                return Ok(Step::Start);
            }
            if !short_of_room {
                return Ok(Step::NeedRoom);
            }
        }
        if now >= until {
            return Err(Error::Overloaded(if short_of_room {
                format!(
                    "all {} FastCGI workers busy (--workers-total)",
                    settings.total
                )
            } else {
                format!(
                    "no {} worker free within {} (--workers-max {}, --worker-wait)",
                    self.name,
                    humantime::format_duration(settings.wait),
                    settings.max
                )
            }));
        }
        let mut wake = match st.retry_at {
            Some(t) if t > now => t.min(until),
            _ => until,
        };
        if patient {
            wake = wake.min(started + SPAWN_DELAY);
        }
        st.waiting[self.queue_of(here)] += 1;
        Ok(Step::Wait(wake))
    }

    /// Hands out an idle worker, moving its connection into this thread's loop.
    fn take(&self, mut w: Worker, here: usize) -> Result<Worker, Error> {
        if w.home != here {
            if let Err(e) = w.stream.rehome() {
                self.release(w, Verdict::Retire, None);
                return Err(Error::Internal(e));
            }
            w.home = here;
        }
        Ok(w)
    }

    /// Starts a worker for a request that is waiting for it.
    async fn start(&self) -> Result<Worker, Error> {
        match self.spawn(true) {
            Ok(w) => {
                lock(&self.state).busy.insert(w.pid, (0, Instant::now()));
                Ok(w)
            }
            Err((e, watch)) => Err(self.start_failed(e, watch).await),
        }
    }

    /// A worker that did not start: counted out and as a failure (the back-off), its
    /// room given back, and the next waiting request woken to decide again. Returns
    /// the error, explained by the process's last words when it got that far.
    async fn start_failed(&self, e: Error, watch: Option<Arc<OutputWatch>>) -> Error {
        let why = match &watch {
            Some(watch) => watch.reason(&e.to_string()).await,
            None => e.to_string(),
        };
        let mut st = lock(&self.state);
        st.total -= 1;
        self.record_failure(&mut st, &why);
        let next = self.next_waiter(&st);
        drop(st);
        self.common.unreserve();
        if let Some(q) = next {
            self.freed[q].notify_one();
        }
        match e {
            Error::WorkerLost(_) => Error::WorkerLost(why),
            other => other,
        }
    }

    /// Gives a worker back after a request.
    pub fn release(&self, mut w: Worker, verdict: Verdict, why: Option<&str>) {
        let mut st = lock(&self.state);
        st.busy.remove(&w.pid);
        let wake = self.next_waiter(&st);
        w.last_used = Instant::now();
        match verdict {
            Verdict::Healthy => {
                w.served += 1;
                st.served += 1;
                st.failures = 0;
                st.retry_at = None;
                let max = self.common.settings.max_requests;
                let recycle = max > 0 && w.served >= max;
                if recycle || self.common.stopping.load(Ordering::Relaxed) {
                    st.total -= 1;
                    drop(st);
                    w.retire(&self.common);
                } else {
                    st.idle.push(w);
                }
            }
            Verdict::Retire | Verdict::Failed => {
                st.total -= 1;
                if verdict == Verdict::Failed {
                    self.record_failure(&mut st, why.unwrap_or("no answer"));
                }
                drop(st);
                w.retire(&self.common);
            }
        }
        if let Some(q) = wake {
            self.freed[q].notify_one();
        }
    }

    /// The wait queue a request in loop `here` uses.
    fn queue_of(&self, here: usize) -> usize {
        if here < self.freed.len() { here } else { 0 }
    }

    /// Whose turn it is when a worker comes free: a request of this loop if one waits,
    /// else one of another loop.
    fn next_waiter(&self, st: &State) -> Option<usize> {
        let here = self.queue_of(event_loop::current());
        if st.waiting[here] > 0 {
            return Some(here);
        }
        st.waiting.iter().position(|&n| n > 0)
    }

    /// One more consecutive failure: the next start waits twice as long as the last
    /// (up to a cap). Only a worker that answers resets it.
    fn record_failure(&self, st: &mut State, why: &str) {
        st.failures += 1;
        let backoff = BACKOFF_FIRST
            .saturating_mul(1 << (st.failures - 1).min(16))
            .min(BACKOFF_MAX);
        st.retry_at = Some(Instant::now() + backoff);
        st.last_failure = Some(why.to_owned());
        self.common.log.log(&format!(
            "[fcgi {}] worker failed ({why}); next start in {:.1}s",
            self.name,
            backoff.as_secs_f64()
        ));
    }

    /// Starts one worker process, and connects to it when `connect_now` (a request is
    /// waiting for it; a worker kept warm is connected to when first used, since
    /// libfcgi drops a connection that brings no request within two seconds). On
    /// failure, also gives back what watches the process's output (if it got that far)
    /// to explain the failure.
    fn spawn(&self, connect_now: bool) -> Result<Worker, (Error, Option<Arc<OutputWatch>>)> {
        let started = Instant::now();
        let common = &self.common;
        let n = common.next_worker.fetch_add(1, Ordering::Relaxed);
        let socket = common.sockets.path().join(format!("w{n}.sock"));
        let internal = |e: io::Error| (Error::Internal(e), None);
        let listener = UnixListener::bind(&socket).map_err(internal)?;
        let (out_r, out_w) = std::io::pipe().map_err(internal)?;
        let (err_r, err_w) = std::io::pipe().map_err(internal)?;
        let limits = common.limits.for_process().map_err(internal)?;
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(common.env.iter().map(|(k, v)| (k, OsStr::from_bytes(v))))
            .current_dir(&self.cwd)
            .process_group(0)
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(out_w)
            .stderr(err_w);
        if !limits.is_empty() {
            let side = limits.in_child();
            // SAFETY: `apply` only makes async-signal-safe calls on prepared data.
            unsafe { cmd.pre_exec(move || side.apply()) };
        }
        crate::spawn::default_signals(&mut cmd);
        if common.settings.sched == WorkerSched::Batch {
            crate::spawn::batch_scheduling(&mut cmd);
        }
        let child = crate::spawn::retry_text_busy(|| cmd.spawn())
            .map_err(|e| (Error::Spawn(e.into()), None))?;
        drop(cmd);
        let pid = child.id() as i32;
        let child = Child::adopt(pid, common.registry.clone());
        let tag = format!("[fcgi {} pid {pid}]", self.name);
        let output = Arc::new(OutputWatch::default());
        watch_output(
            [OwnedFd::from(out_r), OwnedFd::from(err_r)],
            [
                ScriptLog::for_stream(tag.clone(), common.log.clone(), "stdout"),
                ScriptLog::new(tag.clone(), common.log.clone()),
            ],
            output.clone(),
        );
        let mut worker = Worker {
            pid,
            child,
            stream: Stream::Gone,
            home: event_loop::current(),
            socket,
            served: 0,
            last_used: Instant::now(),
            output,
            tag,
            spawn_took: started.elapsed(),
            limits,
            values: None,
        };
        if !connect_now {
            return Ok(worker);
        }
        if let Err(e) = worker.connect() {
            // Gone before it could accept: the listening socket died with it.
            let _ = std::fs::remove_file(&worker.socket);
            let Worker { child, output, .. } = worker;
            output.set_child(child);
            return Err((
                Error::WorkerLost(format!("could not connect: {e}")),
                Some(output),
            ));
        }
        Ok(worker)
    }

    async fn sweep(&self) {
        let (leaving, warm) = self.sweep_idle();
        for w in leaving {
            w.retire(&self.common);
        }
        if !warm {
            return;
        }
        // Keep the minimum warm.
        match self.spawn(false) {
            Ok(w) => {
                let mut st = lock(&self.state);
                st.idle.insert(0, w);
                let next = self.next_waiter(&st);
                drop(st);
                if let Some(q) = next {
                    self.freed[q].notify_one();
                }
            }
            Err((e, watch)) => {
                self.start_failed(e, watch).await;
            }
        }
    }

    /// Takes out idle workers past `--worker-idle` and dead ones; says whether a
    /// worker is to start to keep the minimum (it is counted already).
    fn sweep_idle(&self) -> (Vec<Worker>, bool) {
        let settings = &self.common.settings;
        let mut st = lock(&self.state);
        let mut leaving = Vec::new();
        // Oldest-idle first: they sit at the front, since we reuse from the back.
        while st.total > settings.min
            && st
                .idle
                .first()
                .is_some_and(|w| w.last_used.elapsed() >= settings.idle)
        {
            leaving.push(st.idle.remove(0));
            st.total -= 1;
        }
        for mut w in std::mem::take(&mut st.idle) {
            if w.usable() {
                st.idle.push(w);
                continue;
            }
            st.total -= 1;
            // A worker that dies before its first request failed, like one that dies
            // answering it: otherwise a broken program kept warm by --workers-min
            // would be restarted as fast as the sweep runs.
            if w.served == 0 && w.child.has_exited() {
                let why = w.output.last_words("exited before any request");
                self.record_failure(&mut st, &why);
            }
            leaving.push(w);
        }
        let throttled = st.retry_at.is_some_and(|t| Instant::now() < t);
        let stopping = self.common.stopping.load(Ordering::Relaxed);
        let warm = st.total < settings.min && !throttled && !stopping && self.common.reserve();
        if warm {
            st.total += 1;
            st.spawned += 1;
        }
        (leaving, warm)
    }

    fn status(&self) -> PoolStatus {
        let st = lock(&self.state);
        PoolStatus {
            name: self.name.clone(),
            workers: st
                .idle
                .iter()
                .map(|w| WorkerStatus {
                    pid: w.pid,
                    values: w.values.as_ref().map(|v| describe_values(v)),
                    served: w.served,
                    busy: false,
                    for_: w.last_used.elapsed(),
                })
                .chain(st.busy.iter().map(|(&pid, &(served, since))| WorkerStatus {
                    pid,
                    values: None,
                    served,
                    busy: true,
                    for_: since.elapsed(),
                }))
                .collect(),
            busy: st.total - st.idle.len(),
            spawned: st.spawned,
            served: st.served,
            failures: st.failures,
            last_failure: st.last_failure.clone(),
        }
    }
}

/// The idle worker to use next: the most recently used one whose connection lives in
/// this loop, else the most recently used one.
fn take_idle(idle: &mut Vec<Worker>, here: usize) -> Option<Worker> {
    match idle.iter().rposition(|w| w.home == here) {
        Some(i) => Some(idle.remove(i)),
        None => idle.pop(),
    }
}

/// One FastCGI worker process and our kept connection to it.
pub struct Worker {
    pub pid: i32,
    child: Child,
    pub stream: Stream,
    /// The loop the connection is registered with.
    home: usize,
    socket: PathBuf,
    /// Requests answered.
    pub served: u64,
    last_used: Instant,
    output: Arc<OutputWatch>,
    pub tag: String,
    /// How long starting it took (reported as `spawn` for its first request).
    pub spawn_took: Duration,
    /// Its cgroup lives as long as the worker.
    limits: ProcessLimits,
    /// Its answer to FCGI_GET_VALUES, when it gave one.
    pub values: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Worker {
    /// Alive, and its idle connection still good (or, for one not yet used, still to
    /// be made).
    fn usable(&mut self) -> bool {
        if self.child.has_exited() {
            return false;
        }
        matches!(self.stream, Stream::Gone) || self.stream.idle_check() || self.connect().is_ok()
    }

    /// Ready to take a request on a good connection: connects a worker not yet used,
    /// and connects again to one alive that closed its idle connection (libfcgi drops
    /// one that brings no request within two seconds).
    fn ready(&mut self) -> bool {
        if matches!(self.stream, Stream::Gone) || !self.stream.idle_check() {
            return !self.child.has_exited() && self.connect().is_ok();
        }
        true
    }

    /// Connects to the worker's listening socket, in this thread's loop.
    fn connect(&mut self) -> io::Result<()> {
        let s = UnixStream::connect(&self.socket)?;
        self.stream = StdStream::Unix(s).into_loop()?;
        self.home = event_loop::current();
        Ok(())
    }

    /// Why a worker that never answered failed, in words a user can act on.
    pub async fn failure_reason(&self, what: &str) -> String {
        self.child.wait_exit(LAST_WORDS_WAIT).await;
        let exited = self
            .child
            .has_exited()
            .then(|| match self.child.killed_by() {
                Some(s) => format!("; it was killed by signal {s}"),
                None => "; it exited".to_owned(),
            });
        self.output
            .describe(&format!("{what}{}", exited.unwrap_or_default()))
            .await
    }

    /// SIGTERM, then SIGKILL after a grace period, in the background of this loop.
    fn retire(self, common: &Common) {
        common.unreserve();
        tokio::spawn(self.retire_now());
    }

    async fn retire_now(self) {
        let (mut child, limits) = self.let_go();
        child.wait_exit(RETIRE_GRACE).await;
        child.reap();
        drop(limits);
    }

    /// Closes our connection, removes the socket and sends SIGTERM; what is left to
    /// wait for (and the cgroup to remove after) comes back. The connection goes
    /// first: php-cgi and flup finish the connection they are on before honouring
    /// SIGTERM.
    fn let_go(self) -> (Child, ProcessLimits) {
        let Worker {
            child,
            stream,
            socket,
            limits,
            ..
        } = self;
        drop(stream);
        let _ = std::fs::remove_file(&socket);
        if !child.has_exited() {
            child.signal_group(libc::SIGTERM);
        }
        (child, limits)
    }
}

/// `FCGI_MAX_CONNS=1, FCGI_MAX_REQS=1, FCGI_MPXS_CONNS=0`.
fn describe_values(pairs: &[(Vec<u8>, Vec<u8>)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the output watcher has seen of a worker.
#[derive(Default)]
struct OutputWatch {
    wrote_stdout: AtomicBool,
    /// The last line it wrote to stderr (its last words, when it dies at start).
    last_stderr: Mutex<Option<String>>,
    /// Both pipes reached end of file.
    done: AtomicBool,
    ended: Notify,
    /// A worker that failed before it was handed out, kept until it is judged.
    child: Mutex<Option<Child>>,
}

impl OutputWatch {
    fn set_child(&self, child: Child) {
        *lock(&self.child) = Some(child);
    }

    /// Why a worker that failed to start failed: waits briefly for it to exit and for
    /// its output, then says what it showed.
    async fn reason(&self, what: &str) -> String {
        let child = lock(&self.child).take();
        let exited = match child {
            Some(mut child) => {
                child.wait_exit(LAST_WORDS_WAIT).await;
                let e = child.has_exited().then(|| match child.killed_by() {
                    Some(s) => format!("; it was killed by signal {s}"),
                    None => "; it exited".to_owned(),
                });
                child.reap();
                e
            }
            None => None,
        };
        self.describe(&format!("{what}{}", exited.unwrap_or_default()))
            .await
    }

    /// `what`, plus what the worker's output says about it.
    async fn describe(&self, what: &str) -> String {
        if !self.done.load(Ordering::Acquire) {
            let ended = self.ended.notified();
            let _ = tokio::time::timeout(LAST_WORDS_WAIT, ended).await;
        }
        self.last_words(what)
    }

    /// `what`, plus its last stderr line and whether it wrote to stdout, as known now.
    fn last_words(&self, what: &str) -> String {
        let mut out = what.to_owned();
        if let Some(line) = lock(&self.last_stderr).as_deref() {
            out.push_str(&format!("; its last words on stderr: {line:?}"));
        }
        if self.wrote_stdout.load(Ordering::Relaxed) {
            out.push_str(
                " and it wrote to stdout, so it looks like a CGI script, not a FastCGI program (run it under /cgi-bin/)",
            );
        }
        out
    }
}

/// Logs what a worker writes to stdout and stderr, line by line, in a task of this
/// loop that ends when the worker's pipes do. Anything on stdout marks it as not a
/// FastCGI program.
fn watch_output(fds: [OwnedFd; 2], logs: [ScriptLog; 2], output: Arc<OutputWatch>) {
    let pipes: Vec<io::Result<pipe::Receiver>> = fds
        .into_iter()
        .map(|fd| {
            crate::sys::set_nonblocking(std::os::fd::AsFd::as_fd(&fd))?;
            pipe::Receiver::from_owned_fd_unchecked(fd)
        })
        .collect();
    let [stdout_log, stderr_log] = logs;
    let mut it = pipes.into_iter();
    let (Some(Ok(out)), Some(Ok(err))) = (it.next(), it.next()) else {
        output.done.store(true, Ordering::Release);
        return;
    };
    tokio::spawn(async move {
        let mut logs = [stdout_log, stderr_log];
        let mut open = [Some(out), Some(err)];
        let mut buf = [0u8; 8192];
        let mut line = Vec::new();
        while open.iter().any(Option::is_some) {
            std::future::poll_fn(|cx| {
                let ready = open
                    .iter()
                    .flatten()
                    .any(|p| p.poll_read_ready(cx).is_ready());
                if ready {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            for (i, slot) in open.iter_mut().enumerate() {
                let Some(p) = slot else { continue };
                loop {
                    match p.try_read(&mut buf) {
                        Ok(0) => {
                            *slot = None;
                            break;
                        }
                        Ok(n) => {
                            if i == 0 {
                                output.wrote_stdout.store(true, Ordering::Relaxed);
                            } else {
                                remember_last_line(&output, &mut line, &buf[..n]);
                            }
                            logs[i].write(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            *slot = None;
                            break;
                        }
                    }
                }
            }
        }
        for log in &mut logs {
            log.finish();
        }
        if !line.is_empty() {
            *lock(&output.last_stderr) = Some(String::from_utf8_lossy(&line).into_owned());
        }
        output.done.store(true, Ordering::Release);
        output.ended.notify_waiters();
    });
}

/// Keeps the last complete (or trailing) stderr line, trimmed, at most 200 bytes.
fn remember_last_line(output: &OutputWatch, partial: &mut Vec<u8>, data: &[u8]) {
    for &b in data {
        if b == b'\n' {
            let text = String::from_utf8_lossy(partial).trim().to_owned();
            if !text.is_empty() {
                *lock(&output.last_stderr) = Some(text);
            }
            partial.clear();
        } else if partial.len() < 200 {
            partial.push(b);
        }
    }
}

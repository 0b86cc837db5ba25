//! The process manager: per script, long-running FastCGI workers, each listening on
//! its own AF_UNIX socket passed as fd 0 (as mod_fcgid does), each with one kept
//! connection. A request only goes to an idle worker; workers start on demand up to
//! the maximum, idle ones above the minimum retire, a crashing program is respawned
//! with back-off instead of in a tight loop.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::client::Stream;
use crate::cgi::process::{Child, Registry};
use crate::error::Error;
use crate::gateway::env::MetaVars;
use crate::limits::{Enforcer, ProcessLimits};
use crate::logger::Logger;
use crate::script_log::ScriptLog;
use crate::sys;

/// When every worker is busy, how long a request waits for one to come free before
/// starting another: a worker is often released a moment after its client has the
/// answer, and reusing it is far cheaper than a new process.
const SPAWN_DELAY: Duration = Duration::from_millis(10);
/// Between SIGTERM and SIGKILL when a worker retires.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_millis(250);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub min: usize,
    pub max: usize,
    pub idle: Duration,
    /// Recycle a worker after this many requests; 0 means never.
    pub max_requests: u64,
    /// How long a request waits for a free worker before 503.
    pub wait: Duration,
}

/// What every pool needs from the server.
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
}

/// All pools of one server, one per script.
pub struct Pools {
    common: Arc<Common>,
    pools: Mutex<HashMap<PathBuf, Arc<Pool>>>,
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
    ) -> std::io::Result<Arc<Pools>> {
        let sockets = tempfile::Builder::new()
            .prefix("cgi-testbed-fcgi-")
            .tempdir()?;
        let pools = Arc::new(Pools {
            common: Arc::new(Common {
                settings,
                env,
                sockets,
                log,
                registry,
                limits,
                stopping: AtomicBool::new(false),
                next_worker: AtomicU64::new(0),
            }),
            pools: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pools);
        std::thread::Builder::new()
            .name("fcgi-sweeper".into())
            .spawn(move || {
                while let Some(pools) = weak.upgrade() {
                    if pools.common.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    pools.sweep();
                    drop(pools);
                    std::thread::sleep(SWEEP_EVERY);
                }
            })?;
        Ok(pools)
    }

    /// The pool for `file` (created on first use); `command` is how to start it.
    pub fn pool(&self, name: &str, file: &Path, command: (PathBuf, Vec<PathBuf>)) -> Arc<Pool> {
        let mut pools = lock(&self.pools);
        pools
            .entry(file.to_path_buf())
            .or_insert_with(|| {
                Arc::new(Pool {
                    name: name.to_owned(),
                    program: command.0,
                    args: command.1,
                    cwd: file.parent().unwrap_or(Path::new("/")).to_path_buf(),
                    common: self.common.clone(),
                    state: Mutex::new(State::default()),
                    freed: Condvar::new(),
                })
            })
            .clone()
    }

    pub fn status(&self) -> Vec<PoolStatus> {
        lock(&self.pools).values().map(|p| p.status()).collect()
    }

    fn sweep(&self) {
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        for p in pools {
            p.sweep();
        }
    }

    /// Stops every worker: idle ones now, busy ones as their requests end.
    pub fn shutdown(&self) {
        self.common.stopping.store(true, Ordering::SeqCst);
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        let mut leaving = Vec::new();
        for p in pools {
            let mut st = lock(&p.state);
            st.total -= st.idle.len();
            leaving.append(&mut st.idle);
            p.freed.notify_all();
        }
        // In parallel: each may take the whole grace period to go.
        let handles: Vec<_> = leaving
            .into_iter()
            .map(|w| std::thread::spawn(move || w.retire_now()))
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }

    /// Removes the sockets directory now: the binary exits without dropping the
    /// shared state (the signal thread still holds it), so `TempDir`'s own cleanup
    /// would never run.
    pub fn remove_sockets(&self) {
        let _ = std::fs::remove_dir_all(self.common.sockets.path());
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
    freed: Condvar,
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
    /// Requests blocked in `acquire`; nobody to wake means no wake-up call.
    waiting: usize,
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

impl Pool {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes an idle worker, starts one if below the maximum, or waits up to the
    /// configured bound for one to come free (then 503).
    pub fn acquire(&self) -> Result<Worker, Error> {
        let started = Instant::now();
        let until = started + self.common.settings.wait;
        let mut st = lock(&self.state);
        loop {
            if self.common.stopping.load(Ordering::Relaxed) {
                return Err(Error::Overloaded("server shutting down"));
            }
            while let Some(mut w) = st.idle.pop() {
                // EOF on the kept connection while idle: the worker left (php-cgi does
                // after PHP_FCGI_MAX_REQUESTS); the request never reached it. A close
                // that races our first write shows as a failed write instead.
                if w.stream.idle_check() {
                    st.busy.insert(w.pid, (w.served, Instant::now()));
                    return Ok(w);
                }
                st.total -= 1;
                w.retire();
            }
            let now = Instant::now();
            let throttled = st.retry_at.is_some_and(|t| now < t);
            // Alone in the queue: wait a moment for the worker that is about to be
            // released. Others waiting too: the pool is short, so grow it now.
            let patient = st.total > 0 && st.waiting == 0 && now < started + SPAWN_DELAY;
            if st.total < self.common.settings.max.max(1) && !throttled && !patient {
                st.total += 1;
                st.spawned += 1;
                drop(st);
                return self
                    .spawn()
                    .inspect(|w| {
                        lock(&self.state).busy.insert(w.pid, (0, Instant::now()));
                    })
                    .inspect_err(|e| {
                        let mut st = lock(&self.state);
                        st.total -= 1;
                        self.record_failure(&mut st, &e.to_string());
                        self.freed.notify_one();
                    });
            }
            if throttled && st.total == 0 {
                let why = st.last_failure.clone().unwrap_or_default();
                let left = st.retry_at.map_or(Duration::ZERO, |t| t - now);
                return Err(Error::WorkerFailing(format!(
                    "{} is failing ({why}); not restarting it for another {:.1}s",
                    self.name,
                    left.as_secs_f64()
                )));
            }
            let mut wake = match st.retry_at {
                Some(t) if t > now => t.min(until),
                _ => until,
            };
            if patient {
                wake = wake.min(started + SPAWN_DELAY);
            }
            if now >= until {
                return Err(Error::Overloaded("no FastCGI worker free in time"));
            }
            st.waiting += 1;
            st = self
                .freed
                .wait_timeout(st, wake - now)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
            st.waiting -= 1;
        }
    }

    /// Gives a worker back after a request.
    pub fn release(&self, mut w: Worker, verdict: Verdict, why: Option<&str>) {
        let mut st = lock(&self.state);
        st.busy.remove(&w.pid);
        let wake = st.waiting > 0;
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
                    w.retire();
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
                w.retire();
            }
        }
        if wake {
            self.freed.notify_one();
        }
    }

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

    fn spawn(&self) -> Result<Worker, Error> {
        let started = Instant::now();
        let n = self.common.next_worker.fetch_add(1, Ordering::Relaxed);
        let socket = self.common.sockets.path().join(format!("w{n}.sock"));
        let listener = UnixListener::bind(&socket).map_err(Error::Internal)?;
        let (out_r, out_w) = std::io::pipe().map_err(Error::Internal)?;
        let (err_r, err_w) = std::io::pipe().map_err(Error::Internal)?;
        let limits = self.common.limits.for_process().map_err(Error::Internal)?;
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(
                self.common
                    .env
                    .iter()
                    .map(|(k, v)| (k, OsStr::from_bytes(v))),
            )
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
        crate::cgi::spawn::default_signals(&mut cmd);
        let child = crate::cgi::spawn::retry_text_busy(|| cmd.spawn())
            .map_err(|e| Error::Spawn(e.into()))?;
        drop(cmd);
        let pid = child.id() as i32;
        let child = Child::adopt(pid, self.common.registry.clone());
        let output = Arc::new(OutputWatch::default());
        let tag = format!("[fcgi {} pid {pid}]", self.name);
        let log = &self.common.log;
        watch_output(
            [OwnedFd::from(out_r), OwnedFd::from(err_r)],
            [
                ScriptLog::for_stream(tag.clone(), log.clone(), "stdout"),
                ScriptLog::new(tag.clone(), log.clone()),
            ],
            output.clone(),
        );
        let stream = match UnixStream::connect(&socket) {
            Ok(s) => Stream::Unix(s),
            Err(e) => {
                // Gone before it could accept: the listening socket died with it.
                let why = failure_reason(&child, &output, &format!("could not connect: {e}"));
                let _ = std::fs::remove_file(&socket);
                return Err(Error::WorkerLost(why));
            }
        };
        stream.set_nonblocking().map_err(Error::Internal)?;
        Ok(Worker {
            pid,
            child,
            stream,
            socket,
            served: 0,
            last_used: Instant::now(),
            output,
            tag,
            spawn_took: started.elapsed(),
            limits,
            values: None,
        })
    }

    fn sweep(&self) {
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
        let mut dead = Vec::new();
        for mut w in std::mem::take(&mut st.idle) {
            if w.usable() {
                st.idle.push(w);
            } else {
                dead.push(w);
            }
        }
        st.total -= dead.len();
        let want = settings.min.saturating_sub(st.total);
        let throttled = st.retry_at.is_some_and(|t| Instant::now() < t);
        drop(st);
        for w in leaving.into_iter().chain(dead) {
            w.retire();
        }
        if want > 0 && !throttled && !self.common.stopping.load(Ordering::Relaxed) {
            // Keep the minimum warm.
            let mut st = lock(&self.state);
            st.total += 1;
            st.spawned += 1;
            drop(st);
            match self.spawn() {
                Ok(w) => self.release_new(w),
                Err(e) => {
                    let mut st = lock(&self.state);
                    st.total -= 1;
                    self.record_failure(&mut st, &e.to_string());
                }
            }
        }
    }

    /// A fresh worker straight into the idle list.
    fn release_new(&self, w: Worker) {
        lock(&self.state).idle.insert(0, w);
        self.freed.notify_one();
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

/// One FastCGI worker process and our kept connection to it.
pub struct Worker {
    pub pid: i32,
    child: Child,
    pub stream: Stream,
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
    /// Alive, and its idle connection still good.
    fn usable(&mut self) -> bool {
        !self.child.has_exited() && self.stream.idle_check()
    }

    /// Why a worker that never answered failed, in words a user can act on.
    pub fn failure_reason(&self, what: &str) -> String {
        failure_reason(&self.child, &self.output, what)
    }

    /// SIGTERM, then SIGKILL after a grace period, in the background.
    fn retire(self) {
        let _ = std::thread::Builder::new()
            .name("fcgi-retire".into())
            .spawn(move || self.retire_now());
    }

    fn retire_now(self) {
        let Worker {
            mut child,
            stream,
            socket,
            limits,
            ..
        } = self;
        // Close our connection first: php-cgi and flup finish the connection they are
        // on before honouring SIGTERM.
        drop(stream);
        let _ = std::fs::remove_file(&socket);
        child.terminate(RETIRE_GRACE);
        drop(limits);
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

/// Why a worker that never answered failed, in words a user can act on.
fn failure_reason(child: &Child, output: &OutputWatch, what: &str) -> String {
    let exited = child
        .wait_exit(Duration::from_millis(200))
        .then(|| child.killed_by())
        .map(|sig| match sig {
            Some(s) => format!("; it was killed by signal {s}"),
            None => "; it exited".to_owned(),
        })
        .unwrap_or_default();
    if !exited.is_empty() {
        // Let the watcher read what the program printed before judging it.
        let until = Instant::now() + Duration::from_millis(200);
        while !output.done.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let stdout = if output.wrote_stdout.load(Ordering::Relaxed) {
        " and wrote to stdout, so it looks like a CGI script, not a FastCGI program (run it under /cgi-bin/)"
    } else {
        ""
    };
    format!("{what}{exited}{stdout}")
}

/// Logs what a worker writes to stdout and stderr, line by line, in a thread that
/// ends when the worker does. Anything on stdout marks it as not a FastCGI program.
/// What the output watcher has seen of a worker.
#[derive(Default)]
struct OutputWatch {
    wrote_stdout: AtomicBool,
    /// Both pipes reached end of file.
    done: AtomicBool,
}

fn watch_output(fds: [OwnedFd; 2], mut logs: [ScriptLog; 2], output: Arc<OutputWatch>) {
    let _ = std::thread::Builder::new()
        .name("fcgi-output".into())
        .spawn(move || {
            let mut files: Vec<Option<File>> =
                fds.into_iter().map(|f| Some(File::from(f))).collect();
            let mut buf = [0u8; 8192];
            let mut revents = Vec::new();
            while files.iter().any(Option::is_some) {
                let set: Vec<sys::Interest> = files
                    .iter()
                    .flatten()
                    .map(|f| sys::Interest {
                        fd: f.as_fd().as_raw_fd(),
                        events: sys::READ,
                    })
                    .collect();
                if sys::poll(&set, None, &mut revents).is_err() {
                    break;
                }
                for (i, slot) in files.iter_mut().enumerate() {
                    let Some(f) = slot else { continue };
                    let ready = set
                        .iter()
                        .position(|s| s.fd == f.as_raw_fd())
                        .is_some_and(|k| revents.get(k).is_some_and(|&r| r != 0));
                    if !ready {
                        continue;
                    }
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => *slot = None,
                        Ok(n) => {
                            if i == 0 {
                                output.wrote_stdout.store(true, Ordering::Relaxed);
                            }
                            logs[i].write(&buf[..n]);
                        }
                    }
                }
            }
            for log in &mut logs {
                log.finish();
            }
            output.done.store(true, Ordering::Release);
        });
}

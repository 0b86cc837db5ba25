//! One server: what it is built from, its event loops (each accepts connections and
//! serves them, every wait in the loop), the connection budget, and shutdown.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::cgi::Cgi;
use crate::config::Config;
use crate::dispatch::{self, Dispatch};
use crate::event_loop;
use crate::fastcgi::FastCgi;
use crate::fastcgi::external::{Address, External};
use crate::fastcgi::pool::{Pools, SWEEP_EVERY};
use crate::gateway::env::{DEFAULT_PATH, MetaVars, Site};
use crate::http::conn::{Conn, Live};
use crate::http::connection::{self, Stopping};
use crate::http::exchange;
use crate::http::head::Version;
use crate::http::response::{self, error_page};
use crate::http::send::SendLimits;
use crate::limits::Enforcer;
use crate::logger::Logger;
use crate::process::Registry;
use crate::route::{Layout, Routes};
use crate::site::Pages;
use crate::stats::Stats;

/// How long a closing connection is drained so the client reads our answer, not a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// After the grace period and the kill, how long the loops get to wind down.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What the whole server shares: its parts, its budgets and whether it is stopping.
pub struct Shared {
    pub config: Config,
    pub log: Arc<Logger>,
    pub stats: Arc<Stats>,
    pub children: Arc<Registry>,
    pub pools: Arc<Pools>,
    pub limits: Arc<Enforcer>,
    /// Open client connections (`--max-connections`).
    pub connections: Arc<AtomicUsize>,
    dispatch: Dispatch,
    http: exchange::Settings,
    stop: watch::Sender<bool>,
    /// Tells the loops to end once in-flight work is done or given up on.
    exit: watch::Sender<bool>,
    stopped: (Mutex<bool>, Condvar),
}

impl Shared {
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// What `/server-status` would show now.
    pub fn status_snapshot(&self) -> crate::status::Snapshot {
        crate::status::snapshot(crate::status::Sources {
            stats: self.stats.clone(),
            pools: self.pools.status(),
            workers_alive: self.pools.total(),
            script_groups: self.children.count(),
            children: self.children.totals(),
            handlers: self.dispatch.routes.handlers.clone(),
        })
    }
}

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let (flag, cv) = &self.shared.stopped;
        if let Ok(mut f) = flag.lock() {
            *f = true;
        }
        cv.notify_all();
    }
}

pub struct Server {
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
}

impl Server {
    /// Binds the listening socket and checks the configuration.
    pub fn bind(config: Config) -> io::Result<Server> {
        let handlers = config
            .handlers()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let layout = Layout::resolve(
            &config.cgi_dir,
            config.require_cgi_dir,
            config.document_root.as_deref(),
            &config.script_mounts,
        )?;
        let log = Arc::new(Logger::open(&config.error_log, config.access_log.as_ref())?);
        crate::sys::cloexec_inherited();
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let site = Site {
            server_software: response::server_header(),
            document_root: layout.document_root.clone(),
            extra: config.env.clone(),
            pass_authorization: config.pass_authorization,
        };
        let children = Arc::new(Registry::default());
        let limits = Enforcer::new(config.limits.clone(), &log);
        let stats = Arc::new(Stats::default());
        let pools = Pools::new(
            config.workers.clone(),
            worker_env(&config.env),
            log.clone(),
            children.clone(),
            limits.clone(),
            config.loops.max(1),
        )?;
        // `--fastcgi NAME=ADDR` repeated for one name: its backends, taken in turn.
        let servers = config.fastcgi_servers();
        let mut external: Vec<External> = Vec::new();
        for (name, _) in &servers {
            if external.iter().any(|e| e.name() == name) {
                continue;
            }
            let addrs: Vec<Address> = servers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
                .collect();
            external.push(External::new(name.clone(), addrs));
        }
        let routes = Routes {
            layout: layout.clone(),
            interpreters: config.interpreters.clone(),
            try_files: config.try_files.clone(),
            status_page: config.status_page,
            external: config.fastcgi.iter().map(|(n, _)| n.clone()).collect(),
            fcgi_allow: (!config.fcgi_allow.is_empty()).then(|| config.fcgi_allow.clone()),
            dotfiles: config.dotfiles,
            handlers: handlers.clone(),
            index: config.index.clone(),
        };
        let cgi = Cgi {
            site: site.clone(),
            spawn: config.spawn,
            limits: limits.clone(),
            children: children.clone(),
            log: log.clone(),
            stats: stats.clone(),
            slots: Arc::new(Semaphore::new(config.max_procs.max(1))),
            max_procs: config.max_procs.max(1),
            slot_wait: config.proc_wait,
        };
        let fastcgi = FastCgi {
            site,
            pools: pools.clone(),
            external,
            log: log.clone(),
            stats: stats.clone(),
        };
        let pages = Pages {
            layout,
            interpreters: config.interpreters.clone(),
            handlers,
            index: config.index.clone(),
            status_page: config.status_page,
            status_allow: config.status_allow.clone(),
            stats: stats.clone(),
            pools: pools.clone(),
            children: children.clone(),
        };
        let limits_per_request = dispatch::Limits {
            timeout: config.timeout,
            max_body: config.max_body,
            max_header: config.max_header,
            spool_memory: config.spool_memory,
            max_spill: config.max_spill,
            max_output: config.limits.output,
            file_cache: config.file_cache,
            server_timing: config.server_timing,
        };
        let dispatch = Dispatch::new(
            routes,
            cgi,
            fastcgi,
            pages,
            limits_per_request,
            log.clone(),
            stats.clone(),
        );
        let http = exchange::Settings {
            max_header: config.max_header,
            head_timeout: config.head_timeout,
            keepalive_timeout: config.keepalive_timeout,
            body_timeout: config.body_timeout,
            send: SendLimits {
                idle: config.send_timeout,
                min_rate: config.min_send_rate,
            },
            linger: CLOSE_LINGER,
        };
        let shared = Arc::new(Shared {
            log,
            stats,
            children,
            pools,
            limits,
            connections: Arc::new(AtomicUsize::new(0)),
            dispatch,
            http,
            stop: watch::channel(false).0,
            exit: watch::channel(false).0,
            stopped: (Mutex::new(false), Condvar::new()),
            config,
        });
        Ok(Server { shared, listener })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until [`Handle::shutdown`], then finishes in-flight requests within the
    /// grace period and kills every script still running.
    pub fn run(self) -> io::Result<()> {
        let shared = self.shared;
        // Every loop and its copy of the listener first: once one loop accepts, the
        // connections it takes may use up the descriptors the others still need.
        let mut ready = Vec::new();
        for index in 0..shared.config.loops.max(1) {
            ready.push((event_loop::Loop::new(index)?, self.listener.try_clone()?));
        }
        drop(self.listener);
        let mut loops = Vec::new();
        for (index, (event_loop, listener)) in ready.into_iter().enumerate() {
            let shared = shared.clone();
            loops.push(event_loop.start(move || serve_loop(index, listener, shared))?);
        }
        wait_for_stop(&shared);
        finish(&shared, loops);
        Ok(())
    }

    /// Runs the server on a background thread; for tests and benches.
    pub fn start(self) -> io::Result<Running> {
        let addr = self.local_addr()?;
        let handle = self.handle();
        let thread = std::thread::Builder::new()
            .name("server".into())
            .spawn(move || self.run())?;
        Ok(Running {
            addr,
            handle,
            thread: Some(thread),
        })
    }
}

/// One event loop: accepts connections and serves each in a task of its own; loop 0
/// also keeps the worker pools swept.
async fn serve_loop(index: usize, listener: std::net::TcpListener, shared: Arc<Shared>) {
    let mut exit = shared.exit.subscribe();
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            shared.log.log(&format!("loop {index}: cannot listen: {e}"));
            return;
        }
    };
    // Loop 0 sweeps the pools on its tick. Every loop ticks, for a second reason:
    // tokio's time driver wakes its loop through the eventfd (a write, then an
    // epoll_wait that returns at once) whenever a timer is armed earlier than the
    // earliest one the loop went to sleep with. On a loop whose only timers were its
    // requests' own, that was once per request: a request's keep-alive deadline (5 s)
    // is armed after its run-time deadline (30 s). A tick due within SWEEP_EVERY is
    // always earlier than either.
    let pools = (index == 0).then(|| shared.pools.clone());
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match &pools {
                Some(pools) if pools.stopping() => break,
                Some(pools) => pools.sweep().await,
                None => {}
            }
        }
    });
    let mut spare = std::fs::File::open("/dev/null").ok();
    let mut last_emfile: Option<(std::time::Instant, u64)> = None;
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, _)) => admit(stream, &shared),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                out_of_descriptors(&listener, &mut spare, &mut last_emfile, &e, &shared).await;
            }
            // ECONNABORTED and friends concern one client, not the listener.
            Err(e) => shared.log.log(&format!("accept: {e}")),
        }
    }
    drop(listener);
    let _ = exit.wait_for(|e| *e).await;
}

/// Takes a new connection, or answers 503 when `--max-connections` are open.
fn admit(stream: tokio::net::TcpStream, shared: &Arc<Shared>) {
    let max = shared.config.max_connections;
    let Some(live) = Live::admit(&shared.connections, max) else {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        shared.log.log(&format!(
            "[{peer}] 503 {max} connections open (--max-connections {max}); closing"
        ));
        let page = error_page(503, None, false, Version::Http11);
        let _ = stream.try_write(&page);
        shared.stats.finished(crate::stats::Model::None, 503);
        return;
    };
    let conn = match Conn::new(stream, Some(live)) {
        Ok(c) => c,
        Err(e) => {
            shared.log.log(&format!("accept: {e}"));
            return;
        }
    };
    let shared = shared.clone();
    tokio::task::spawn_local(async move {
        let stop: Stopping = shared.stop.subscribe();
        connection::serve(conn, &shared.dispatch, &shared.http, stop).await;
    });
}

/// Frees the spare descriptor to accept one connection, tells it 503 and closes it,
/// so clients get an answer instead of waiting in the backlog.
/// One log line a second at most (with how many it stands for): refused connections
/// come by the thousand.
async fn out_of_descriptors(
    listener: &TcpListener,
    spare: &mut Option<std::fs::File>,
    last_logged: &mut Option<(std::time::Instant, u64)>,
    e: &io::Error,
    shared: &Shared,
) {
    match last_logged {
        Some((at, unlogged)) if at.elapsed() < Duration::from_secs(1) => *unlogged += 1,
        _ => {
            let more = last_logged.map_or(0, |(_, n)| n);
            let since = if more > 0 {
                format!(" ({more} more since the last line)")
            } else {
                String::new()
            };
            shared.log.log(&format!(
                "accept: {e}; answering 503 until descriptors free up{since}"
            ));
            *last_logged = Some((std::time::Instant::now(), 0));
        }
    }
    spare.take();
    // SAFETY: accept4 on our listening socket with null address pointers.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if fd >= 0 {
        let page = error_page(503, None, false, Version::Http11);
        // SAFETY: a descriptor accept4 just gave us; sent to and closed at once.
        unsafe {
            libc::send(fd, page.as_ptr().cast(), page.len(), libc::MSG_NOSIGNAL);
            libc::close(fd);
        }
    }
    *spare = std::fs::File::open("/dev/null").ok();
    if spare.is_none() {
        // Still no descriptor: let the backlog hold clients for a moment.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn wait_for_stop(shared: &Shared) {
    let (flag, cv) = &shared.stopped;
    let Ok(mut stopped) = flag.lock() else {
        return;
    };
    while !*stopped {
        stopped = match cv.wait(stopped) {
            Ok(s) => s,
            Err(_) => return,
        };
    }
}

/// Lets connections finish their requests, up to the grace period, then kills what is
/// left (workers, then scripts) and ends the loops.
fn finish(shared: &Shared, loops: Vec<JoinHandle<()>>) {
    let busy = || shared.connections.load(Ordering::Relaxed) > 0;
    let until = Instant::now() + shared.config.shutdown_grace;
    while Instant::now() < until && busy() {
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.pools.shutdown();
    if shared.children.count() > 0 {
        shared.log.log(&format!(
            "shutdown: killing {} scripts still running",
            shared.children.count()
        ));
    }
    shared.children.signal_all(libc::SIGKILL);
    let until = Instant::now() + KILL_WAIT;
    while Instant::now() < until && busy() {
        shared.children.signal_all(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.exit.send_replace(true);
    for l in loops {
        let _ = l.join();
    }
    shared.pools.remove_sockets();
    shared.limits.remove_cgroups();
}

/// A worker's process environment: what a script gets minus the per-request
/// variables (those come in PARAMS), and php-cgi kept from forking its own children.
fn worker_env(extra: &[(String, Vec<u8>)]) -> MetaVars {
    let mut env = MetaVars::new();
    env.push("PATH", DEFAULT_PATH.as_bytes());
    for (k, v) in extra {
        env.remove(k);
        env.push(k, v);
    }
    env.remove("PHP_FCGI_CHILDREN");
    env.push("PHP_FCGI_CHILDREN", b"0");
    // php-cgi otherwise exits after 500 requests; recycling is --worker-max-requests'
    // job (as mod_fcgid advises). An explicit --env still wins.
    if env.get("PHP_FCGI_MAX_REQUESTS").is_none() {
        env.push("PHP_FCGI_MAX_REQUESTS", b"0");
    }
    env
}

/// A server running on a background thread; stops and joins on drop.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    pub fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

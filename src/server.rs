//! One server: its shared state, the bounded pool of connection threads (the reactor
//! in `reactor.rs` feeds them), and shutdown.
//!
//! A connection only takes a thread once a whole request head has arrived, so slow or
//! idle clients cannot use up the pool; after a response the thread waits a moment
//! for the next request on the same connection before handing it back.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::cgi::process::Registry;
use crate::config::Config;
use crate::dispatch;
use crate::fastcgi::external::{Address, External};
use crate::fastcgi::pool::Pools;
use crate::gateway::env::{DEFAULT_PATH, MetaVars, Site};
use crate::http::conn::Conn;
use crate::http::head;
use crate::http::response;
use crate::limits::Enforcer;
use crate::logger::Logger;
use crate::reactor::Reactor;
use crate::site::Layout;
use crate::status::Stats;

/// How long a connection thread waits for the next request before parking the
/// connection in the reactor.
const KEEP_ALIVE_LINGER: Duration = Duration::from_millis(5);

/// State every connection thread shares.
pub struct Shared {
    pub config: Config,
    /// The canonical script directory.
    pub cgi_dir: PathBuf,
    pub site: Site,
    pub log: Arc<Logger>,
    pub slots: Slots,
    pub children: Arc<Registry>,
    pub pools: Arc<Pools>,
    pub external: HashMap<String, External>,
    pub limits: Arc<Enforcer>,
    /// Script mounts, static root and document root, canonical.
    pub layout: Layout,
    /// Request counters and running scripts, for `/server-status`.
    pub stats: Stats,
    stopping: AtomicBool,
    next_id: AtomicU64,
    pub(crate) live: Arc<AtomicUsize>,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A counting semaphore for running scripts.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    /// Takes a slot, waiting up to `wait` for one to free up.
    pub fn acquire(&self, wait: Duration) -> Option<Slot<'_>> {
        let until = Instant::now() + wait;
        let mut free = self.free.lock().ok()?;
        while *free == 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            free = self.freed.wait_timeout(free, left).ok()?.0;
        }
        *free -= 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.0.free.lock() {
            *free += 1;
        }
        self.0.freed.notify_one();
    }
}

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
}

impl Handle {
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
    }
}

pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    wake: Arc<EventFd>,
}

impl Server {
    /// Binds the listening socket and checks the configuration.
    pub fn bind(config: Config) -> io::Result<Server> {
        let layout = Layout::resolve(&config)?;
        let cgi_dir = layout.cgi_dir.clone();
        let document_root = layout.document_root.clone();
        let log = Arc::new(Logger::open(&config.error_log, config.access_log.as_ref())?);
        crate::sys::cloexec_inherited();
        let listener = TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let site = Site {
            server_software: response::server_header(),
            document_root,
            extra: config.env.clone(),
            pass_authorization: config.pass_authorization,
        };
        let children = Arc::new(Registry::default());
        let limits = Enforcer::new(config.limits.clone(), &log);
        let pools = Pools::new(
            config.workers.clone(),
            worker_env(&config.env),
            log.clone(),
            children.clone(),
            limits.clone(),
        )?;
        let mut external: HashMap<String, Vec<Address>> = HashMap::new();
        for (name, addr) in &config.fastcgi {
            external.entry(name.clone()).or_default().push(addr.clone());
        }
        let external = external
            .into_iter()
            .map(|(name, addrs)| (name.clone(), External::new(name, addrs)))
            .collect();
        let shared = Arc::new(Shared {
            slots: Slots::new(config.max_procs.max(1)),
            pools,
            external,
            limits,
            config,
            cgi_dir,
            site,
            log,
            children,
            layout,
            stats: Stats::default(),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            live: Arc::new(AtomicUsize::new(0)),
        });
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        Ok(Server {
            shared,
            listener,
            wake,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Serves until [`Handle::shutdown`], then finishes in-flight requests within the
    /// grace period and kills every script still running.
    pub fn run(self) -> io::Result<()> {
        let shared = self.shared.clone();
        let (jobs, rx) = crossbeam_channel::bounded::<Conn>(shared.config.threads * 4);
        let reactor = Arc::new(Reactor::new(
            self.listener,
            self.wake,
            jobs,
            shared.clone(),
        )?);
        let mut workers = Vec::new();
        for i in 0..shared.config.threads.max(1) {
            let (shared, reactor, rx) = (shared.clone(), reactor.clone(), rx.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("conn-{i}"))
                    .spawn(move || worker(&shared, &reactor, &rx))?,
            );
        }
        drop(rx);
        let events = reactor.clone();
        let reactor_thread = std::thread::Builder::new()
            .name("reactor".into())
            .spawn(move || events.run())?;
        let _ = reactor_thread.join();
        drop(reactor);
        finish_workers(&shared, workers);
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

/// A worker's process environment: what a script gets minus the per-request
/// variables (those come in PARAMS), and php-cgi kept from forking its own children.
fn worker_env(extra: &[(String, Vec<u8>)]) -> MetaVars {
    let mut env: MetaVars = vec![("PATH".into(), DEFAULT_PATH.as_bytes().to_vec())];
    for (k, v) in extra {
        env.retain(|(n, _)| n != k);
        env.push((k.clone(), v.clone()));
    }
    env.retain(|(n, _)| n != "PHP_FCGI_CHILDREN");
    env.push(("PHP_FCGI_CHILDREN".into(), b"0".to_vec()));
    // php-cgi otherwise exits after 500 requests; recycling is --worker-max-requests'
    // job (as mod_fcgid advises). An explicit --env still wins.
    if !env.iter().any(|(n, _)| n == "PHP_FCGI_MAX_REQUESTS") {
        env.push(("PHP_FCGI_MAX_REQUESTS".into(), b"0".to_vec()));
    }
    env
}

/// Waits for connection threads to finish their requests, up to the grace period,
/// then kills whatever scripts remain so the threads can return.
fn finish_workers(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    let until = Instant::now() + shared.config.shutdown_grace;
    while Instant::now() < until && !workers.iter().all(|w| w.is_finished()) {
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
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && !workers.iter().all(|w| w.is_finished()) {
        shared.children.signal_all(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in workers {
        if w.is_finished() {
            let _ = w.join();
        }
    }
    shared.pools.remove_sockets();
    shared.limits.remove_cgroups();
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

fn worker(shared: &Shared, reactor: &Reactor, rx: &Receiver<Conn>) {
    while let Ok(conn) = rx.recv() {
        serve_connection(shared, reactor, conn, rx);
    }
}

/// Answers requests on one connection while they come quickly; otherwise parks it.
fn serve_connection(shared: &Shared, reactor: &Reactor, mut conn: Conn, rx: &Receiver<Conn>) {
    let mut lingered = false;
    loop {
        match head::parse(conn.pending(), shared.config.max_header) {
            Ok(Some((req, n))) => {
                conn.consume(n);
                conn.head_started = None;
                lingered = false;
                dispatch::serve(shared, &mut conn, req);
                conn.served += 1;
                if !conn.reusable || shared.stopping() {
                    reactor.close(conn);
                    return;
                }
            }
            Ok(None) => {
                if conn.eof {
                    return;
                }
                if !conn.pending().is_empty() && conn.head_started.is_none() {
                    conn.head_started = Some(Instant::now());
                }
                if lingered || !rx.is_empty() || !conn.wait_readable(KEEP_ALIVE_LINGER) {
                    reactor.park(conn);
                    return;
                }
                lingered = conn.pending().is_empty();
                match conn.fill() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            Err(e) => {
                dispatch::reject_head(shared, &mut conn, e);
                reactor.close(conn);
                return;
            }
        }
    }
}

//! The listener, the reactor that holds idle and half-received connections without a
//! thread each, the bounded pool of connection threads, and shutdown.
//!
//! A connection only takes a thread once a whole request head has arrived, so slow or
//! idle clients cannot use up the pool; after a response the thread waits a moment
//! for the next request on the same connection before handing it back.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::cgi::process::Registry;
use crate::config::Config;
use crate::dispatch;
use crate::fastcgi::external::{Address, External};
use crate::fastcgi::pool::Pools;
use crate::gateway::env::{DEFAULT_PATH, MetaVars, Site};
use crate::http::conn::Conn;
use crate::http::head::{self, Version};
use crate::http::response::{self, error_page};
use crate::limits::Enforcer;
use crate::logger::Logger;
use crate::site::Layout;
use crate::status::Stats;

/// How long a connection thread waits for the next request before parking the
/// connection in the reactor.
const KEEP_ALIVE_LINGER: Duration = Duration::from_millis(5);
/// How long a closing connection is drained so the client reads our answer, not a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_millis(100);

const LISTENER: u64 = 0;
const WAKE: u64 = 1;

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
    live: Arc<AtomicUsize>,
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

enum Waiting {
    /// For a request head; answered 408 or closed at the deadline.
    Head { deadline: Instant },
    /// Draining a closing connection until the client closes or the deadline.
    Close { deadline: Instant },
}

struct Parked {
    conn: Conn,
    waiting: Waiting,
}

struct Reactor {
    epoll: Epoll,
    listener: TcpListener,
    wake: Arc<EventFd>,
    parked: Mutex<HashMap<u64, Parked>>,
    next_token: AtomicU64,
    /// Dropped at shutdown so idle connection threads see the channel close.
    jobs: Mutex<Option<Sender<Conn>>>,
    shared: Arc<Shared>,
    /// Held so that when descriptors run out we can still accept, answer 503 and close.
    spare_fd: Mutex<Option<File>>,
}

impl Reactor {
    fn new(
        listener: TcpListener,
        wake: Arc<EventFd>,
        jobs: Sender<Conn>,
        shared: Arc<Shared>,
    ) -> io::Result<Reactor> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Reactor {
            epoll,
            listener,
            wake,
            parked: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(2),
            jobs: Mutex::new(Some(jobs)),
            shared,
            spare_fd: Mutex::new(File::open("/dev/null").ok()),
        })
    }

    fn run(&self) {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut last_sweep = Instant::now();
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(100u16)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    self.shared
                        .log
                        .log(&format!("reactor: epoll_wait failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    LISTENER => self.accept_all(),
                    WAKE => {
                        let _ = self.wake.read();
                    }
                    token => self.ready(token),
                }
            }
            if self.shared.stopping() {
                self.stop();
                return;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.sweep();
            }
        }
    }

    fn stop(&self) {
        let _ = self.epoll.delete(&self.listener);
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut parked) = self.parked.lock() {
            parked.clear();
        }
    }

    fn accept_all(&self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.out_of_descriptors(&e);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one client, not the listener.
                    self.shared.log.log(&format!("accept: {e}"));
                }
            }
        }
    }

    /// Frees the spare descriptor to accept one connection, tells it 503, and closes it,
    /// so clients get an answer instead of waiting in the backlog.
    fn out_of_descriptors(&self, e: &io::Error) {
        self.shared.log.log(&format!(
            "accept: {e}; answering 503 until descriptors free up"
        ));
        let Ok(mut spare) = self.spare_fd.lock() else {
            return;
        };
        spare.take();
        if let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(true);
            let page = error_page(503, None, false, Version::Http11);
            let _ = io::Write::write(&mut &stream, &page);
        }
        *spare = File::open("/dev/null").ok();
        if spare.is_none() {
            // Still no descriptor: let the backlog hold clients for a moment.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn admit(&self, stream: TcpStream) {
        let shared = &self.shared;
        if shared.live.load(Ordering::Relaxed) >= shared.config.max_connections {
            shared.log.log("too many open connections; answering 503");
            let _ = stream.set_nonblocking(true);
            let page = error_page(503, None, false, Version::Http11);
            let _ = io::Write::write(&mut &stream, &page);
            return;
        }
        shared.live.fetch_add(1, Ordering::Relaxed);
        match Conn::new(stream, shared.config.timeout, Some(shared.live.clone())) {
            Ok(conn) => {
                let deadline = Instant::now() + shared.config.head_timeout;
                self.insert(conn, Waiting::Head { deadline });
            }
            Err(e) => shared.log.log(&format!("accept: {e}")),
        }
    }

    /// Hands a connection back to wait for its next request.
    fn park(&self, conn: Conn) {
        if self.shared.stopping() {
            return;
        }
        let deadline = match conn.head_started {
            Some(t) => t + self.shared.config.head_timeout,
            None => Instant::now() + self.shared.config.timeout,
        };
        self.insert(conn, Waiting::Head { deadline });
    }

    /// Closes a connection. When the client may still be sending (an unread body,
    /// bytes beyond the request) it is drained for a while after our FIN, so it reads
    /// our answer instead of a reset; otherwise it is closed at once, since holding a
    /// closed-by-the-client socket open lets a new connection from the same port
    /// collide with it.
    fn close(&self, conn: Conn) {
        let may_be_sending = conn.body_unread || !conn.pending().is_empty();
        if conn.eof || !may_be_sending || self.shared.stopping() {
            return;
        }
        conn.shutdown_write();
        let deadline = Instant::now() + CLOSE_LINGER;
        self.insert(conn, Waiting::Close { deadline });
    }

    fn insert(&self, conn: Conn, waiting: Waiting) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let Ok(mut parked) = self.parked.lock() else {
            return;
        };
        // Registered while the map is locked, so an event that fires at once finds it.
        parked.insert(token, Parked { conn, waiting });
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        let added = parked.get(&token).map(|p| {
            self.epoll
                .add(&p.conn.stream, EpollEvent::new(flags, token))
        });
        if !matches!(added, Some(Ok(()))) {
            parked.remove(&token);
        }
    }

    fn ready(&self, token: u64) {
        let Some(mut p) = self.parked.lock().ok().and_then(|mut m| m.remove(&token)) else {
            return;
        };
        let _ = self.epoll.delete(p.conn.stream.as_fd());
        let before = p.conn.pending().len();
        loop {
            match p.conn.fill() {
                Ok(0) => break,
                Ok(_) if matches!(p.waiting, Waiting::Close { .. }) => {
                    let n = p.conn.pending().len();
                    p.conn.consume(n);
                }
                Ok(_) => {
                    if p.conn.pending().len() > self.shared.config.max_header {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        match p.waiting {
            Waiting::Close { .. } if p.conn.eof => {}
            Waiting::Close { .. } => self.reinsert(p),
            Waiting::Head { .. } if p.conn.eof && p.conn.pending().is_empty() => {}
            Waiting::Head { deadline } => {
                if before == 0 && !p.conn.pending().is_empty() {
                    let started = Instant::now();
                    p.conn.head_started = Some(started);
                    p.waiting = Waiting::Head {
                        deadline: deadline.min(started + self.shared.config.head_timeout),
                    };
                }
                if p.conn.eof || head_complete(p.conn.pending(), self.shared.config.max_header) {
                    // A full queue makes this wait: that is the bound on work.
                    let jobs = self.jobs.lock().ok().and_then(|j| j.clone());
                    if let Some(jobs) = jobs {
                        let _ = jobs.send(p.conn);
                    }
                } else {
                    self.reinsert(p);
                }
            }
        }
    }

    fn reinsert(&self, p: Parked) {
        self.insert(p.conn, p.waiting);
    }

    /// Closes connections whose deadline passed; a half-sent head gets 408 first.
    fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<Parked> = match self.parked.lock() {
            Ok(mut parked) => {
                let tokens: Vec<u64> = parked
                    .iter()
                    .filter(|(_, p)| match p.waiting {
                        Waiting::Head { deadline } | Waiting::Close { deadline } => deadline <= now,
                    })
                    .map(|(t, _)| *t)
                    .collect();
                tokens.iter().filter_map(|t| parked.remove(t)).collect()
            }
            Err(_) => return,
        };
        for p in expired {
            let _ = self.epoll.delete(p.conn.stream.as_fd());
            if matches!(p.waiting, Waiting::Head { .. }) && !p.conn.pending().is_empty() {
                self.shared.log.log(&format!(
                    "[{}] 408 request head not received in time",
                    p.conn.ends.remote
                ));
                p.conn
                    .try_send(&error_page(408, None, false, Version::Http11));
            }
        }
    }
}

/// Has a whole head arrived (or more than may)? A cheap scan; the worker parses.
fn head_complete(buf: &[u8], max_header: usize) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let buf = &buf[start..];
    buf.len() > max_header
        || buf.windows(2).any(|w| w == b"\n\n")
        || buf.windows(4).any(|w| w == b"\r\n\r\n")
}

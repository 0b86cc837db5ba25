//! The reactor: one thread that accepts connections and holds every connection that
//! is idle, still sending its request head, or closing, so none of them ties up a
//! connection thread. A connection goes to the thread pool only once a whole head has
//! arrived; deadlines (head, keep-alive idle, lingering close) are enforced here.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;

use crate::http::conn::Conn;
use crate::http::head::Version;
use crate::http::response::error_page;
use crate::server::Shared;

/// How long a closing connection is drained so the client reads our answer, not a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_millis(100);

const LISTENER: u64 = 0;
const WAKE: u64 = 1;

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

pub struct Reactor {
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
    pub fn new(
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

    pub fn run(&self) {
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
    pub fn park(&self, conn: Conn) {
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
    pub fn close(&self, conn: Conn) {
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

//! The event loops: a few threads (one per core by default), each running a
//! single-threaded tokio runtime in which every connection, script pipe, pidfd and
//! worker socket of that thread waits. Which loop a thread runs is known here, so
//! resources tied to a loop (a worker's socket) can tell whether they are at home.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::thread::JoinHandle;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The loop this thread runs (`usize::MAX` outside the loops).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// One event loop, built but not yet running: its runtime's descriptors (epoll,
/// eventfd) are taken when it is built, so a server builds every loop before any of
/// them starts taking connections, which use descriptors too.
pub struct Loop {
    index: usize,
    runtime: tokio::runtime::Runtime,
}

impl Loop {
    pub fn new(index: usize) -> io::Result<Loop> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Blocking work (a script's start, a DNS lookup for an external FastCGI
            // server, the pages that walk /proc) goes to a small pool, never to a
            // thread per connection.
            .max_blocking_threads(2)
            .thread_name(format!("loop-{index}-blocking"))
            .build()?;
        Ok(Loop { index, runtime })
    }

    /// Runs `body` (and whatever it spawns) on a thread of its own until it ends.
    pub fn start<F, Fut>(self, body: F) -> io::Result<JoinHandle<()>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let Loop { index, runtime } = self;
        std::thread::Builder::new()
            .name(format!("loop-{index}"))
            .spawn(move || {
                CURRENT.with(|c| c.set(index));
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, body());
                // Whatever is still running (a lingering script, a retiring worker) is
                // dropped here, which kills and reaps its processes.
                drop(local);
                drop(runtime);
            })
    }
}

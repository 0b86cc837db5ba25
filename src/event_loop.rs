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

/// Starts loop `index` on a thread of its own, running `body` (and whatever it spawns)
/// to completion.
pub fn start<F, Fut>(index: usize, body: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking work (a DNS lookup for an external FastCGI server) goes to a small
        // pool, never to a thread per connection.
        .max_blocking_threads(2)
        .thread_name(format!("loop-{index}-blocking"))
        .build()?;
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

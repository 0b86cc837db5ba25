//! The life of one client connection, in the order it happens: wait for a request
//! head (keep-alive idle, then the head deadline), answer it through an [`Exchange`],
//! then keep the connection, close it, or linger before closing. Every wait is a wait
//! in the event loop; the code reads as if it blocked.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::conn::{Conn, WaitError};
use super::exchange::{After, Exchange, Settings};
use super::head::{self, HeadError, Request};
use crate::net::Endpoints;

/// Why no request could be read from a connection that sent something.
#[derive(Debug)]
pub enum HeadFailure {
    Invalid(HeadError),
    /// The head did not arrive within `--head-timeout` of its first byte.
    TimedOut(Duration),
}

/// What answers requests: the server's dispatcher.
pub trait Handler {
    /// Answers `req`, reading its body and writing the answer through `ex`.
    fn serve(&self, ex: &mut Exchange<'_>, req: Request) -> impl Future<Output = ()>;
    /// Logs a head that could not be read and returns the page that answers it.
    fn reject(&self, ends: Endpoints, why: &HeadFailure) -> Vec<u8>;
    /// Logs a kept connection closed for idling past `--keepalive-timeout`.
    fn idle_closed(&self, ends: Endpoints, idle: Duration);
}

/// Becomes true when the server starts shutting down.
pub type Stopping = watch::Receiver<bool>;

enum Next {
    Request(Request),
    /// Closed, idle too long, or the server is stopping: close without a word.
    Done,
    Failed(HeadFailure),
}

/// Serves `conn` until it closes.
pub async fn serve<H: Handler>(mut conn: Conn, handler: &H, s: &Settings, mut stop: Stopping) {
    let mut served = 0u64;
    loop {
        let req = match next_request(&mut conn, s, served, handler, &mut stop).await {
            Next::Request(req) => req,
            Next::Done => return,
            Next::Failed(why) => {
                let page = handler.reject(conn.ends, &why);
                if conn.send_all(&page, s.send).await.is_ok() {
                    linger(&mut conn, s).await;
                }
                return;
            }
        };
        let stopping = *stop.borrow();
        let mut ex = Exchange::new(&mut conn, &req, s, stopping);
        handler.serve(&mut ex, req).await;
        served += 1;
        match ex.finish() {
            After::KeepAlive if !*stop.borrow() => {}
            After::Linger => {
                linger(&mut conn, s).await;
                return;
            }
            _ => return,
        }
    }
}

/// Waits for the next request head. A fresh connection has `--head-timeout` to start
/// one, a kept one `--keepalive-timeout`; from its first byte a head has
/// `--head-timeout` to be complete.
async fn next_request<H: Handler>(
    conn: &mut Conn,
    s: &Settings,
    served: u64,
    handler: &H,
    stop: &mut Stopping,
) -> Next {
    let opened = Instant::now();
    let idle_limit = if served == 0 {
        s.head_timeout
    } else {
        s.keepalive_timeout
    };
    let mut head_started: Option<Instant> = None;
    loop {
        match head::parse(conn.pending(), s.max_header) {
            Ok(Some((req, n))) => {
                conn.consume(n);
                return Next::Request(req);
            }
            Ok(None) => {}
            Err(e) => return Next::Failed(HeadFailure::Invalid(e)),
        }
        if conn.eof() {
            return Next::Done;
        }
        // Stray line breaks between requests (RFC 9112 §2.2) do not start a head.
        if head_started.is_none() && conn.pending().iter().any(|&b| b != b'\r' && b != b'\n') {
            head_started = Some(Instant::now());
        }
        let deadline = match head_started {
            Some(t) => t + s.head_timeout,
            None => opened + idle_limit,
        };
        let filled = tokio::select! {
            r = conn.fill(deadline) => r,
            _ = stop.wait_for(|stopping| *stopping) => return Next::Done,
        };
        match filled {
            Ok(_) => {}
            Err(WaitError::TimedOut) if head_started.is_some() => {
                return Next::Failed(HeadFailure::TimedOut(s.head_timeout));
            }
            Err(WaitError::TimedOut) => {
                if served > 0 {
                    handler.idle_closed(conn.ends, idle_limit);
                }
                return Next::Done;
            }
            Err(WaitError::Gone(_)) => return Next::Done,
        }
    }
}

/// Stops sending but reads and drops what the client still sends, for a while, so it
/// reads our answer instead of a reset (RFC 9112 §9.6).
async fn linger(conn: &mut Conn, s: &Settings) {
    if conn.eof() {
        return;
    }
    conn.shutdown_write();
    let until = Instant::now() + s.linger;
    loop {
        let n = conn.pending().len();
        conn.consume(n);
        match conn.fill(until).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

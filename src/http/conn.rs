//! One client connection: the socket, the bytes read ahead of the current request
//! (a pipelined next request stays here), and what we know about its state.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::gateway::env::Endpoints;
use crate::sys;

/// How much we try to read per call.
const READ_CHUNK: usize = 32 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    pub ends: Endpoints,
    /// The client closed its sending side.
    pub eof: bool,
    /// False once the connection cannot carry another request (unread body, broken
    /// response, `Connection: close`).
    pub reusable: bool,
    /// The current request's body has not been read to its end yet.
    pub body_unread: bool,
    /// When the first byte of the request head now being read arrived.
    pub head_started: Option<Instant>,
    /// Requests answered on this connection so far.
    pub served: u64,
    /// A buffer the relay reuses from request to request.
    pub scratch: Vec<u8>,
    live: Option<Arc<AtomicUsize>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Conn {
    /// Wraps an accepted socket; `live` counts open connections (decremented on drop).
    pub fn new(
        stream: TcpStream,
        write_timeout: Duration,
        live: Option<Arc<AtomicUsize>>,
    ) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(write_timeout))?;
        let ends = Endpoints {
            remote: stream.peer_addr()?,
            local: stream.local_addr()?,
        };
        Ok(Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            ends,
            eof: false,
            reusable: true,
            body_unread: false,
            head_started: None,
            served: 0,
            scratch: Vec::new(),
            live,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Bytes received and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads what the socket has without blocking. `Ok(0)` means end of stream;
    /// `WouldBlock` means nothing yet.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        match sys::recv_append(self.fd(), &mut self.buf, READ_CHUNK) {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            other => other,
        }
    }

    /// Waits up to `timeout` for bytes (or EOF) to arrive.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        sys::wait_one(self.fd(), sys::READ, timeout).unwrap_or(true)
    }

    /// Blocking write, bounded by the socket's write timeout.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }

    /// Stops sending (FIN after what is queued) but keeps reading, so a client still
    /// sending a body gets our answer instead of a reset.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Sends what fits right now; for best-effort answers (408, 503) from the reactor.
    pub fn try_send(&self, data: &[u8]) {
        let _ = sys::send_nonblocking(self.fd(), data);
    }
}

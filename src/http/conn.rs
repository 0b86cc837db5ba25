//! One client connection: the socket in the event loop, the bytes read ahead of the
//! current request (a pipelined next request stays here), and sending under the
//! client's deadlines. Every call either makes progress at once or waits in the loop;
//! none holds a thread.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::send::{SendClock, SendLimits, SendStall};
use crate::net::Endpoints;
use crate::sys;

/// How much we try to read per call.
const READ_CHUNK: usize = 32 * 1024;
/// Most bytes read ahead of the request being answered.
const READ_AHEAD: usize = 64 * 1024;

/// What a look at the client's side of the connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Open,
    Closed,
    /// It keeps sending; we stopped reading ahead, so a close would go unseen.
    Unwatchable,
}

/// One non-blocking read of up to [`READ_CHUNK`] bytes (`read(max)`) through the
/// loop's readiness. A short read means the socket is empty now, so the readiness is
/// dropped with it: the loop then waits for the next bytes instead of us asking the
/// kernel again only to hear EAGAIN (one system call saved per request).
pub fn drained_read(
    stream: &impl ReadyIo,
    mut read: impl FnMut(usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut got = 0;
    let r = stream.try_io_readable(&mut || {
        let n = read(READ_CHUNK)?;
        got = n;
        if n > 0 && n < READ_CHUNK {
            // Reported as "would block" only so the readiness is cleared; the bytes
            // read are returned below. Readiness that came in meanwhile is kept.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// A socket in the event loop whose readable readiness can be used and cleared.
pub trait ReadyIo {
    fn try_io_readable(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>;
}

impl ReadyIo for TcpStream {
    fn try_io_readable(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::READABLE, f)
    }
}

impl ReadyIo for tokio::net::UnixStream {
    fn try_io_readable(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::READABLE, f)
    }
}

/// Counts a connection as open for `--max-connections` until it is dropped.
pub struct Live(Arc<AtomicUsize>);

impl Live {
    /// Counts one more open connection, unless `max` are open already.
    pub fn admit(count: &Arc<AtomicUsize>, max: usize) -> Option<Live> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Live(count.clone()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a wait on the client ended without what we wanted.
#[derive(Debug)]
pub enum WaitError {
    /// The deadline passed.
    TimedOut,
    /// The connection failed or the client closed it.
    Gone(io::Error),
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    pub ends: Endpoints,
    /// The client closed its sending side.
    eof: bool,
    /// A buffer the relay reuses from request to request.
    pub scratch: Vec<u8>,
    _live: Option<Live>,
}

impl Conn {
    /// Wraps a socket accepted in this thread's event loop.
    pub fn new(stream: TcpStream, live: Option<Live>) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
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
            scratch: Vec::new(),
            _live: live,
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

    /// The client closed its sending side (all of its bytes have been read).
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Reads what the socket has, without waiting. `Ok(0)` means end of stream;
    /// `WouldBlock` means nothing yet (and the loop will say when there is).
    pub fn try_fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let fd = self.fd();
        let n = drained_read(&self.stream, |max| sys::recv_append(fd, &mut self.buf, max))?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Reads at least one byte (or the end of stream) before `deadline`.
    pub async fn fill(&mut self, deadline: Instant) -> Result<usize, WaitError> {
        loop {
            match self.try_fill() {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(WaitError::Gone(e)),
            }
            let ready = tokio::time::timeout_at(deadline.into(), self.stream.readable()).await;
            match ready {
                Err(_) => return Err(WaitError::TimedOut),
                Ok(Err(e)) => return Err(WaitError::Gone(e)),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Registers `cx` for input (or a close) from the client.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.stream.poll_read_ready(cx).map(|_| ())
    }

    /// Registers `cx` for room in the socket's send buffer.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.stream.poll_write_ready(cx).map(|_| ())
    }

    /// Has the client closed or reset the connection? Reads what it sent meanwhile
    /// (a pipelined request) into the buffer, so the loop only wakes again for news.
    /// A client that sends more than `READ_AHEAD` cannot be watched this way.
    pub fn peer_state(&mut self) -> Peer {
        loop {
            if self.eof {
                return Peer::Closed;
            }
            if self.pending().len() >= READ_AHEAD {
                return Peer::Unwatchable;
            }
            match self.try_fill() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Peer::Open,
                Err(_) => return Peer::Closed,
            }
        }
    }

    /// Sends what the socket takes now; `WouldBlock` when it takes nothing.
    pub fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        let fd = self.fd();
        self.stream
            .try_io(Interest::WRITABLE, || sys::send_nonblocking(fd, data))
    }

    /// `sendfile(2)` of up to `count` bytes of `file` at `offset`; `WouldBlock` when
    /// the socket takes nothing now.
    pub fn try_sendfile(&self, file: &File, offset: u64, count: usize) -> io::Result<usize> {
        let (out, input) = (self.fd(), file.as_raw_fd());
        self.stream.try_io(Interest::WRITABLE, || {
            sys::sendfile(out, input, offset, count)
        })
    }

    /// Waits for room in the send buffer, judging the client on the way; a client
    /// found too slow gets its connection reset when it closes.
    pub async fn writable(&self, clock: &mut SendClock) -> Result<(), SendError> {
        if let Err(stall) = clock.blocked(Instant::now(), self.unsent()) {
            self.reset_on_close();
            return Err(SendError::Stalled(stall));
        }
        match tokio::time::timeout_at(clock.deadline().into(), self.stream.writable()).await {
            Err(_) => Ok(()),
            Ok(Err(e)) => Err(SendError::Gone(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends all of `data` within the client's deadlines.
    pub async fn send_all(&self, mut data: &[u8], limits: SendLimits) -> Result<(), SendError> {
        let mut clock = SendClock::new(limits, Instant::now());
        while !data.is_empty() {
            match self.try_send(data) {
                Ok(n) => {
                    clock.sent(n);
                    data = &data[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable(&mut clock).await?;
                }
                Err(e) => return Err(SendError::Gone(e)),
            }
        }
        Ok(())
    }

    /// Bytes the socket accepted that the client has not acknowledged yet
    /// (SIOCOUTQ); `None` where the kernel will not say.
    pub fn unsent(&self) -> Option<u64> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer we pass.
        let r = unsafe { libc::ioctl(self.fd(), libc::TIOCOUTQ, &mut n) };
        (r == 0 && n >= 0).then_some(n as u64)
    }

    /// Makes the coming close a reset: what the kernel still holds for a client that
    /// stopped reading is dropped at once instead of being retried for minutes.
    pub fn reset_on_close(&self) {
        let off = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on our own socket with a valid struct of the right size.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&off as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    /// Stops sending (FIN after what is queued) but keeps reading, so a client still
    /// sending a body gets our answer instead of a reset.
    pub fn shutdown_write(&self) {
        // SAFETY: shutdown(2) on our own socket; no memory is passed.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }
}

/// Why sending to the client ended early.
#[derive(Debug)]
pub enum SendError {
    Stalled(SendStall),
    Gone(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Stalled(s) => s.fmt(f),
            SendError::Gone(e) => e.fmt(f),
        }
    }
}

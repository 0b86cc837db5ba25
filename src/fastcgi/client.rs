//! One FastCGI request over one worker connection, as a relay backend: BEGIN_REQUEST
//! and PARAMS out, the body as STDIN records as it arrives, STDOUT records in for the
//! shared CGI response parser, STDERR to the log, END_REQUEST to finish.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use super::record::{self, EndRequest, RecordType};
use crate::error::Error;
use crate::gateway::env::MetaVars;
use crate::http::conn::{ReadyIo, drained_read};
use crate::relay::{Backend, Output};
use crate::script_log::ScriptLog;
use crate::sys;

/// Without multiplexing every request is number 1.
const ID: u16 = 1;
/// STDIN bytes we queue before telling the relay to wait.
const MAX_QUEUED: usize = 256 * 1024;

/// A connection to a FastCGI application, in the event loop of the thread using it.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// Lost while moving between loops.
    Gone,
}

fn gone<R>() -> io::Result<R> {
    Err(io::ErrorKind::NotConnected.into())
}

impl Stream {
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            Stream::Unix(s) => s.try_io(interest, f),
            Stream::Tcp(s) => s.try_io(interest, f),
            Stream::Gone => gone(),
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Gone => Poll::Ready(gone()),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Unix(s) => s.poll_write_ready(cx),
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Gone => Poll::Ready(gone()),
        }
    }

    /// Non-blocking receive appended to `buf`; `WouldBlock` (without a system call
    /// when the loop has not seen input) when nothing is there.
    pub fn try_recv_append(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        drained_read(self, |max| sys::recv_append(fd, buf, max))
    }

    pub fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        self.try_io(Interest::WRITABLE, || sys::send_nonblocking(fd, data))
    }

    /// Moves the connection into this thread's event loop (a worker's connection is
    /// registered with the loop that last used it): out of the old loop's epoll, into
    /// this one's.
    pub fn rehome(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, Stream::Gone) {
            Stream::Unix(s) => Stream::Unix(UnixStream::from_std(s.into_std()?)?),
            Stream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s.into_std()?)?),
            Stream::Gone => return gone(),
        };
        Ok(())
    }

    /// Is an idle kept connection still good? It must be open, and anything that
    /// arrived while idle must be whole management records (a late answer to
    /// FCGI_GET_VALUES, which threaded apps such as flup send when they get to it).
    pub fn idle_check(&mut self) -> bool {
        // Runs before every request: the usual answer (nothing there) costs neither an
        // allocation nor, when the loop saw no input, a system call.
        let mut buf = Vec::new();
        loop {
            match self.try_recv_append(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        let mut used = 0;
        while used < buf.len() {
            match record::decode(&buf[used..]) {
                Ok(Some((rec, n))) if rec.request_id == 0 => used += n,
                _ => return false,
            }
        }
        true
    }
}

impl ReadyIo for Stream {
    fn try_io_readable(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::READABLE, f)
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Gone => -1,
        }
    }
}

/// A connection to a FastCGI application outside any event loop.
pub enum StdStream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl StdStream {
    /// Puts the connection into the current thread's event loop.
    pub fn into_loop(self) -> io::Result<Stream> {
        Ok(match self {
            StdStream::Unix(s) => {
                s.set_nonblocking(true)?;
                Stream::Unix(UnixStream::from_std(s)?)
            }
            StdStream::Tcp(s) => {
                s.set_nonblocking(true)?;
                Stream::Tcp(TcpStream::from_std(s)?)
            }
        })
    }
}

/// How a session left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// END_REQUEST arrived: the connection may carry the next request.
    Clean,
    /// Not one byte of the request could be written: the worker was gone before it
    /// saw anything, so the request may go to another worker.
    LostBeforeUse,
    /// Anything else: the worker must not be trusted with another request.
    Broken,
}

pub struct Session<'a> {
    stream: &'a mut Stream,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    stdout: Vec<u8>,
    stdout_pos: usize,
    end: Option<EndRequest>,
    log: ScriptLog,
    received_any: bool,
    /// Some of the request reached the worker's socket.
    request_written: bool,
    eof: bool,
    broken: bool,
    stdin_closed: bool,
    /// What the worker answered to FCGI_GET_VALUES, when it did.
    pub values: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl<'a> Session<'a> {
    /// Queues BEGIN_REQUEST and PARAMS (and, when `ask_values`, a GET_VALUES first;
    /// when there is no body, the empty STDIN too, so it all goes in one write).
    pub fn new(
        stream: &'a mut Stream,
        params: &MetaVars,
        keep_conn: bool,
        ask_values: bool,
        has_body: bool,
        log: ScriptLog,
    ) -> Result<Session<'a>, Error> {
        let mut out = Vec::with_capacity(4096);
        if ask_values {
            let names = [
                record::FCGI_MAX_CONNS,
                record::FCGI_MAX_REQS,
                record::FCGI_MPXS_CONNS,
            ];
            record::get_values(&mut out, names).map_err(protocol)?;
        }
        record::begin_request(&mut out, ID, record::FCGI_RESPONDER, keep_conn);
        record::params(&mut out, ID, params.iter()).map_err(protocol)?;
        if !has_body {
            record::stream(&mut out, RecordType::Stdin, ID, &[]);
        }
        Ok(Session {
            stream,
            out,
            out_pos: 0,
            inbuf: Vec::with_capacity(16 * 1024),
            stdout: Vec::new(),
            stdout_pos: 0,
            end: None,
            log,
            received_any: false,
            request_written: false,
            eof: false,
            broken: false,
            stdin_closed: !has_body,
            values: None,
        })
    }

    pub fn ending(&self) -> Ending {
        match self.end {
            Some(_) if !self.broken => Ending::Clean,
            _ if !self.request_written => Ending::LostBeforeUse,
            _ => Ending::Broken,
        }
    }

    pub fn app_status(&self) -> Option<u32> {
        self.end.map(|e| e.app_status)
    }

    /// After the client left mid-request: asks the worker to abort and waits (in the
    /// loop) up to `limit` for its END_REQUEST, so the connection stays usable.
    pub async fn abort(&mut self, limit: Duration) -> Ending {
        if self.end.is_some() || self.broken {
            return self.ending();
        }
        record::abort_request(&mut self.out, ID);
        let until = tokio::time::Instant::now() + limit;
        while self.end.is_none() && !self.broken && !self.eof {
            if self.flush().is_err() {
                self.broken = true;
                break;
            }
            let want_write = self.out_pos < self.out.len();
            let ready = std::future::poll_fn(|cx| {
                let r = self.stream.poll_read_ready(cx).is_ready();
                let w = want_write && self.stream.poll_write_ready(cx).is_ready();
                if r || w {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            if tokio::time::timeout_at(until, ready).await.is_err() {
                break;
            }
            // Output of an aborted request is dropped.
            if self.read_records().is_err() {
                self.broken = true;
            }
            self.stdout.clear();
            self.stdout_pos = 0;
        }
        if self.end.is_none() {
            self.broken = true;
        }
        self.ending()
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.stream.try_send(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.request_written = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads what the socket has and decodes whole records.
    fn read_records(&mut self) -> Result<(), Error> {
        loop {
            match self.stream.try_recv_append(&mut self.inbuf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => self.received_any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // What arrived before the error is still decoded below: php-cgi,
                    // for one, exits after its last answer without reading our empty
                    // STDIN, and that unread record turns its close into a reset. For
                    // the same reason a reset proves nothing about whether the request
                    // was read, so it never makes one replayable.
                    self.eof = true;
                    break;
                }
            }
            if self.inbuf.len() >= 256 * 1024 {
                break;
            }
        }
        let mut used = 0;
        while let Some((rec, n)) = record::decode(&self.inbuf[used..]).map_err(protocol)? {
            used += n;
            match (rec.record_type, rec.request_id) {
                (RecordType::GetValuesResult, 0) => {
                    self.values = record::decode_pairs(rec.content).ok();
                }
                // UNKNOWN_TYPE answers and records for ids not in use are ignored (§3.3).
                (_, id) if id != ID => {}
                // Nothing of ours may follow END_REQUEST.
                _ if self.end.is_some() => self.broken = true,
                (RecordType::Stdout, _) => self.stdout.extend_from_slice(rec.content),
                (RecordType::Stderr, _) => self.log.write(rec.content),
                (RecordType::EndRequest, _) => {
                    self.end = Some(EndRequest::parse(rec.content).map_err(protocol)?);
                }
                _ => {}
            }
        }
        self.inbuf.drain(..used);
        if self.end.is_some() && !self.inbuf.is_empty() {
            // Half a record after END_REQUEST: the stream is out of step.
            self.broken = true;
        }
        Ok(())
    }
}

fn protocol(e: record::RecordError) -> Error {
    Error::ScriptFailed(format!("FastCGI protocol error: {e}"))
}

impl Backend for Session<'_> {
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        _want_input: bool,
        want_output: bool,
    ) -> Poll<()> {
        let mut ready = false;
        if self.queued() > 0 {
            ready |= self.stream.poll_write_ready(cx).is_ready();
        }
        if want_output && self.stdout_pos == self.stdout.len() {
            ready |= self.stream.poll_read_ready(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn write_input(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.queued() >= MAX_QUEUED {
            self.flush()?;
            if self.queued() >= MAX_QUEUED {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let n = data.len().min(record::FCGI_MAX_CONTENT_LEN);
        record::stream(&mut self.out, RecordType::Stdin, ID, &data[..n]);
        self.flush()?;
        Ok(n)
    }

    fn close_input(&mut self) {
        if std::mem::replace(&mut self.stdin_closed, true) {
            return;
        }
        record::stream(&mut self.out, RecordType::Stdin, ID, &[]);
        if self.flush().is_err() {
            self.eof = true;
        }
    }

    fn read_output(&mut self, buf: &mut [u8]) -> Result<Output, Error> {
        if self.stdout_pos == self.stdout.len() && self.end.is_none() {
            self.stdout.clear();
            self.stdout_pos = 0;
            if let Err(e) = self.flush() {
                if self.request_written {
                    return Err(Error::ScriptFailed(format!("writing to worker: {e}")));
                }
                self.eof = true;
            }
            self.read_records()?;
        }
        if self.stdout_pos < self.stdout.len() {
            let n = buf.len().min(self.stdout.len() - self.stdout_pos);
            buf[..n].copy_from_slice(&self.stdout[self.stdout_pos..self.stdout_pos + n]);
            self.stdout_pos += n;
            return Ok(Output::Data(n));
        }
        match self.end {
            Some(end) => match end.protocol_status {
                record::FCGI_REQUEST_COMPLETE => Ok(Output::End),
                record::FCGI_OVERLOADED => {
                    Err(Error::Overloaded("FastCGI application overloaded".into()))
                }
                record::FCGI_CANT_MPX_CONN => Err(Error::ScriptFailed(
                    "application refused the request (FCGI_CANT_MPX_CONN)".into(),
                )),
                record::FCGI_UNKNOWN_ROLE => Err(Error::ScriptFailed(
                    "application does not play the responder role (FCGI_UNKNOWN_ROLE)".into(),
                )),
                other => Err(Error::ScriptFailed(format!(
                    "unknown FastCGI protocol status {other}"
                ))),
            },
            None if self.eof => {
                self.broken = true;
                Err(if !self.request_written {
                    Error::WorkerLost("connection closed before the request could be sent".into())
                } else if !self.received_any {
                    Error::WorkerLost("closed the connection without answering".into())
                } else {
                    Error::ScriptFailed("worker closed the connection before END_REQUEST".into())
                })
            }
            None => Ok(Output::Pending),
        }
    }

    fn housekeeping(&mut self) {
        if self.queued() > 0 && self.flush().is_err() {
            self.eof = true;
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        None
    }
}

//! Moves one request through a running script, whatever the model: request body in,
//! CGI response out (parsed by the shared parser, then framed for the client), all
//! in one poll loop so neither direction can block the other. Memory stays bounded:
//! script output is read only while the client keeps up, except while the request
//! body is still arriving, when it spills to a temp file rather than deadlock a
//! script that writes before it reads.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::gateway::response::{self, Kind, ResponseError};
use crate::http::body::BodyError;
use crate::http::conn::Conn;
use crate::http::head::Request;
use crate::http::response::{self as http, BodyFraming, Head};
use crate::sys::{self, Interest};

/// Output held in memory before we stop reading the script (or spill, see above).
const OUT_HIGH: usize = 256 * 1024;
const READ_BUF: usize = 64 * 1024;

/// A running script as the relay sees it. All calls are non-blocking: they return
/// `WouldBlock` instead of waiting.
pub trait Backend {
    /// Adds what to wait on: input room when `want_input`, output when `want_output`,
    /// and always whatever the backend itself must watch (stderr, exit).
    fn interests(&self, want_input: bool, want_output: bool, set: &mut Vec<Interest>);
    /// Gives request-body bytes; an error other than `WouldBlock` means the script
    /// will take no more.
    fn write_input(&mut self, data: &[u8]) -> io::Result<usize>;
    /// The body is complete.
    fn close_input(&mut self);
    /// Reads script output into `buf`. An error means the output ended abnormally
    /// (crash, protocol error) and says how the client should hear of it.
    fn read_output(&mut self, buf: &mut [u8]) -> Result<Output, Error>;
    /// Side work on every turn (stderr, exit detection).
    fn housekeeping(&mut self);
    /// A time at which the backend wants to be asked again, if any.
    fn wake_at(&self) -> Option<Instant>;
}

/// What one read of script output gave.
pub enum Output {
    Data(usize),
    /// The output is complete.
    End,
    /// Nothing yet.
    Pending,
}

/// Where the request body comes from.
pub enum BodyIn {
    None,
    /// `n` more bytes straight from the client connection.
    Socket(u64),
    /// A body already spooled in memory.
    Memory(Vec<u8>),
    /// A body spooled to a file: the file, bytes left in it, the chunk read from it.
    File(File, u64, Vec<u8>),
}

impl BodyIn {
    /// Body bytes not yet given to the script.
    pub fn left(&self) -> u64 {
        match self {
            BodyIn::None => 0,
            BodyIn::Socket(n) => *n,
            BodyIn::Memory(v) => v.len() as u64,
            BodyIn::File(_, n, chunk) => n + chunk.len() as u64,
        }
    }
}

pub struct Settings {
    /// The script must be done by then.
    pub deadline: Instant,
    /// Longest wait for the client to take output.
    pub stall: Duration,
    pub max_header: usize,
    /// Relay the output unchanged (nph- scripts).
    pub raw: bool,
    /// Send `100 Continue` before reading the body.
    pub send_continue: bool,
    /// Whether the response may keep the connection open.
    pub keep_alive: bool,
    /// Where the time went, for the Server-Timing header.
    pub timing: Timing,
    /// `--limit-output`: most bytes the script may write.
    pub max_output: Option<u64>,
}

/// The phases of one request before its answer (W3C Server-Timing names).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request head had been read.
    pub start: Instant,
    /// Waiting for a script slot or a free worker.
    pub queue: Duration,
    /// Starting the process (0 for a warm worker).
    pub spawn: Duration,
    /// Send the `Server-Timing` header (off: `--no-server-timing`; never for NPH).
    pub header: bool,
}

impl Timing {
    pub fn new(header: bool) -> Timing {
        Timing {
            start: Instant::now(),
            queue: Duration::ZERO,
            spawn: Duration::ZERO,
            header,
        }
    }

    /// `queue;dur=0.012, spawn;dur=0.850, ttfb;dur=1.204, total;dur=1.260` (ms).
    pub fn render(&self, first_byte: Option<Instant>, now: Instant) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let ttfb = first_byte.map_or(Duration::ZERO, |t| t.saturating_duration_since(self.start));
        format!(
            "queue;dur={:.3}, spawn;dur={:.3}, ttfb;dur={:.3}, total;dur={:.3}",
            ms(self.queue),
            ms(self.spawn),
            ms(ttfb),
            ms(now.saturating_duration_since(self.start))
        )
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// A response went out; `error` says why it may be incomplete.
    Sent {
        status: u16,
        body_bytes: u64,
        error: Option<Error>,
        /// The Server-Timing value (sent, or for NPH only logged).
        timing: String,
    },
    /// The script asked for another local URL to be served instead.
    LocalRedirect(String),
    /// Nothing was sent; the caller answers with this error.
    Failed(Error),
}

impl Outcome {
    /// Should the script be killed rather than left to finish?
    pub fn is_abort(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Sent { error: Some(_), .. }
        )
    }
}

enum Phase {
    Head(Vec<u8>),
    Body(BodyFraming, u64),
    Raw,
    Discard,
}

/// Runs the exchange to its end. Clears `conn.body_unread` once the body is read, and
/// `conn.reusable` when the response was raw or broken off.
pub fn run(
    conn: &mut Conn,
    req: &Request,
    body: &mut BodyIn,
    backend: &mut dyn Backend,
    mut settings: Settings,
) -> Outcome {
    let mut r = Relay {
        out: OutQueue::default(),
        phase: if settings.raw {
            Phase::Raw
        } else {
            Phase::Head(Vec::new())
        },
        status: 0,
        body_bytes: 0,
        committed: false,
        redirect: None,
        body,
        input_closed: false,
        input_dead: false,
        first_byte: None,
        timing: None,
        output_bytes: 0,
    };
    let outcome = match r.pump(conn, req, backend, &mut settings) {
        Ok(()) => match r.redirect.take() {
            Some(loc) => Outcome::LocalRedirect(loc),
            None => Outcome::Sent {
                status: r.status,
                body_bytes: r.body_bytes,
                error: None,
                timing: r.timing_text(&settings),
            },
        },
        Err(e) if r.committed => Outcome::Sent {
            status: r.status,
            body_bytes: r.body_bytes,
            error: Some(e),
            timing: r.timing_text(&settings),
        },
        Err(e) => Outcome::Failed(e),
    };
    if r.body_left() == 0 {
        conn.body_unread = false;
    }
    let close_delimited = matches!(r.phase, Phase::Raw | Phase::Body(BodyFraming::Close, _));
    // A failure before anything was sent leaves the client's connection clean: the
    // caller answers it (or retries elsewhere) and decides about keep-alive.
    let broken = matches!(outcome, Outcome::Sent { error: Some(_), .. });
    if broken || close_delimited {
        conn.reusable = false;
    }
    outcome
}

struct Relay<'b> {
    out: OutQueue,
    phase: Phase,
    status: u16,
    body_bytes: u64,
    /// A response head has been queued: errors can no longer become error pages.
    committed: bool,
    redirect: Option<String>,
    body: &'b mut BodyIn,
    input_closed: bool,
    /// The script stopped reading; the rest of the body is read and dropped.
    input_dead: bool,
    /// When the script's first output byte arrived.
    first_byte: Option<Instant>,
    /// The Server-Timing value, fixed when the head went out.
    timing: Option<String>,
    /// Script output so far, for `--limit-output`.
    output_bytes: u64,
}

impl Relay<'_> {
    fn body_left(&self) -> u64 {
        self.body.left()
    }

    fn pump(
        &mut self,
        conn: &mut Conn,
        req: &Request,
        backend: &mut dyn Backend,
        s: &mut Settings,
    ) -> Result<(), Error> {
        if s.send_continue && matches!(*self.body, BodyIn::Socket(_)) && conn.pending().is_empty() {
            self.out.push(http::CONTINUE, false)?;
        }
        // Reused across the connection's requests: zeroing 64 KiB each time shows up.
        let mut buf = std::mem::take(&mut conn.scratch);
        buf.resize(READ_BUF, 0);
        let result = self.pump_loop(conn, req, backend, s, &mut buf);
        conn.scratch = buf;
        result
    }

    fn pump_loop(
        &mut self,
        conn: &mut Conn,
        req: &Request,
        backend: &mut dyn Backend,
        s: &mut Settings,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let mut ended = false;
        // Last time the client took output or gave body bytes.
        let mut last_io = Instant::now();
        let mut set = Vec::with_capacity(6);
        let mut revents = Vec::with_capacity(6);
        loop {
            backend.housekeeping();
            if ended && !self.input_dead {
                // The answer is complete: the rest of the body is read and dropped, so
                // the connection can carry the next request.
                self.input_dead = true;
                backend.close_input();
            }
            let mut progress = self.pump_input(conn, backend)?;
            if progress {
                last_io = Instant::now();
            }

            // A few reads before writing, so output and its end (FastCGI often sends
            // STDOUT and END_REQUEST together) leave in one send.
            for _ in 0..4 {
                if ended || !self.output_room() {
                    break;
                }
                match backend.read_output(buf)? {
                    Output::End => {
                        ended = true;
                        progress = true;
                        self.finish_output()?;
                    }
                    Output::Data(n) => {
                        progress = true;
                        self.take_output(&buf[..n], req, s)?;
                    }
                    Output::Pending => break,
                }
            }

            if !self.out.is_empty() {
                match self.out.write_to(conn) {
                    Ok(0) => {}
                    Ok(_) => {
                        progress = true;
                        last_io = Instant::now();
                    }
                    Err(e) => return Err(Error::ClientGone(e.to_string())),
                }
            }
            if ended && self.out.is_empty() && self.body_left() == 0 {
                return Ok(());
            }
            if progress {
                continue;
            }

            let now = Instant::now();
            if !ended && now >= s.deadline {
                // Still waiting for the client's body: the client was too slow, not us.
                return Err(match *self.body {
                    BodyIn::Socket(n) if n > 0 => BodyError::TimedOut.into(),
                    _ => Error::Timeout,
                });
            }
            if (ended || !self.out.is_empty()) && now.duration_since(last_io) >= s.stall {
                return Err(Error::ClientGone("stalled".into()));
            }
            // Once the whole answer is out, a client hanging up is no reason to kill
            // the script: it only has to finish.
            let waiting_on_script =
                !ended && self.out.is_empty() && self.body_left() == 0 && !self.answer_complete();
            set.clear();
            let mut client = 0;
            if matches!(*self.body, BodyIn::Socket(n) if n > 0) && conn.pending().is_empty() {
                client |= sys::READ;
            }
            if !self.out.is_empty() {
                client |= sys::WRITE;
            }
            if waiting_on_script {
                client |= sys::PEER_CLOSED;
            }
            set.push(Interest {
                fd: conn.fd(),
                events: client,
            });
            let want_input = !self.input_dead && self.input_ready(conn);
            backend.interests(want_input, !ended && self.output_room(), &mut set);
            let mut wake = if ended { last_io + s.stall } else { s.deadline };
            if !self.out.is_empty() {
                wake = wake.min(last_io + s.stall);
            }
            if let Some(t) = backend.wake_at() {
                wake = wake.min(t);
            }
            sys::poll(&set, Some(wake), &mut revents).map_err(Error::Internal)?;
            let gone = libc::POLLHUP | libc::POLLERR | sys::PEER_CLOSED;
            if waiting_on_script && revents.first().is_some_and(|&r| r & gone != 0) {
                return Err(Error::ClientGone("closed the connection".into()));
            }
        }
    }

    /// Has the client had the whole response (a known length all sent, or no body)?
    fn answer_complete(&self) -> bool {
        matches!(
            self.phase,
            Phase::Body(BodyFraming::Length(_), 0)
                | Phase::Body(BodyFraming::Empty, _)
                | Phase::Discard
        ) && self.committed
    }

    /// May we take more script output now? Only while the client keeps up, except
    /// that output spills to disk while the body is still arriving.
    fn output_room(&self) -> bool {
        if self.out.spilling() {
            self.body_left() > 0
        } else {
            self.out.mem_len() < OUT_HIGH
        }
    }

    /// Is there body data in hand to give the script?
    fn input_ready(&self, conn: &Conn) -> bool {
        match &*self.body {
            BodyIn::Socket(n) => *n > 0 && !conn.pending().is_empty(),
            BodyIn::Memory(v) | BodyIn::File(_, _, v) => !v.is_empty(),
            BodyIn::None => false,
        }
    }

    /// Moves body bytes from the client (or spool) to the script; true on progress.
    fn pump_input(&mut self, conn: &mut Conn, backend: &mut dyn Backend) -> Result<bool, Error> {
        let mut progress = false;
        if let BodyIn::File(file, left, chunk) = &mut *self.body
            && chunk.is_empty()
            && *left > 0
        {
            let n = (*left).min(READ_BUF as u64) as usize;
            chunk.resize(n, 0);
            file.read_exact(chunk)
                .map_err(|e| BodyError::Spool(e.to_string()))?;
            *left -= n as u64;
        }
        if matches!(*self.body, BodyIn::Socket(left) if left > 0) && conn.pending().is_empty() {
            match conn.fill() {
                Ok(0) => return Err(Error::ClientGone("closed before the body ended".into())),
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::ClientGone(e.to_string())),
            }
        }
        let chunk: &[u8] = match &*self.body {
            BodyIn::Socket(left) => {
                let p = conn.pending();
                &p[..p.len().min(usize::try_from(*left).unwrap_or(usize::MAX))]
            }
            BodyIn::Memory(v) | BodyIn::File(_, _, v) => v,
            BodyIn::None => &[],
        };
        if !chunk.is_empty() {
            let taken = if self.input_dead {
                chunk.len()
            } else {
                match backend.write_input(chunk) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        0
                    }
                    Err(_) => {
                        // The script closed stdin (or exited): keep reading the body so
                        // the client can finish sending and still get the answer.
                        self.input_dead = true;
                        backend.close_input();
                        0
                    }
                }
            };
            if taken > 0 {
                progress = true;
                match &mut *self.body {
                    BodyIn::Socket(left) => {
                        conn.consume(taken);
                        *left -= taken as u64;
                    }
                    BodyIn::Memory(v) | BodyIn::File(_, _, v) => {
                        v.drain(..taken);
                    }
                    BodyIn::None => {}
                }
            }
        }
        if self.body_left() == 0 && !self.input_closed {
            self.input_closed = true;
            backend.close_input();
        }
        Ok(progress)
    }

    fn timing_text(&self, s: &Settings) -> String {
        self.timing
            .clone()
            .unwrap_or_else(|| s.timing.render(self.first_byte, Instant::now()))
    }

    fn take_output(&mut self, data: &[u8], req: &Request, s: &mut Settings) -> Result<(), Error> {
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
        self.output_bytes += data.len() as u64;
        if let Some(max) = s.max_output
            && self.output_bytes > max
        {
            let size = bytesize::ByteSize(max).display().iec();
            return Err(Error::LimitExceeded(format!("--limit-output {size}")));
        }
        let head_buf = match &mut self.phase {
            Phase::Head(acc) => {
                acc.extend_from_slice(data);
                std::mem::take(acc)
            }
            _ => return self.emit(data),
        };
        match response::parse(&head_buf, s.max_header)? {
            None => {
                self.phase = Phase::Head(head_buf);
                Ok(())
            }
            Some((resp, start)) => {
                if let Kind::LocalRedirect(loc) = resp.kind {
                    self.redirect = Some(loc);
                    self.phase = Phase::Discard;
                    return Ok(());
                }
                let framing = BodyFraming::choose(req, resp.status, resp.content_length);
                let mut headers = resp.headers;
                let timing = s.timing.render(self.first_byte, Instant::now());
                if s.timing.header {
                    headers.push(("Server-Timing".into(), timing.clone().into_bytes()));
                }
                self.timing = Some(timing);
                let mut head = Vec::with_capacity(512);
                http::write_head(
                    &mut head,
                    &Head {
                        status: resp.status,
                        reason: resp
                            .reason
                            .as_deref()
                            .unwrap_or_else(|| http::reason(resp.status)),
                        headers: &headers,
                        framing,
                        announce_length: resp.content_length,
                        keep_alive: s.keep_alive,
                        version: req.version,
                    },
                );
                self.status = resp.status;
                self.committed = true;
                self.phase = Phase::Body(framing, resp.content_length.unwrap_or(0));
                let spill = self.body_left() > 0;
                self.out.push(&head, spill)?;
                self.emit(&head_buf[start..])
            }
        }
    }

    /// Queues body bytes, framed for the client.
    fn emit(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let spill = self.body_left() > 0;
        match &mut self.phase {
            Phase::Raw => {
                if !self.committed {
                    self.committed = true;
                    self.status = status_of_raw_response(data);
                }
                self.body_bytes += data.len() as u64;
                self.out.push(data, spill)?;
            }
            Phase::Body(BodyFraming::Length(_), left) => {
                // Never more than the script announced; the excess is dropped.
                let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                self.body_bytes += n as u64;
                self.out.push(&data[..n], spill)?;
            }
            Phase::Body(BodyFraming::Chunked, _) => {
                self.body_bytes += data.len() as u64;
                self.out.push(&http::chunk_header(data.len()), spill)?;
                self.out.push(data, spill)?;
                self.out.push(b"\r\n", spill)?;
            }
            Phase::Body(BodyFraming::Close, _) => {
                self.body_bytes += data.len() as u64;
                self.out.push(data, spill)?;
            }
            // The head phase never gets here: `take_output` parses it first.
            Phase::Body(BodyFraming::Empty, _) | Phase::Discard | Phase::Head(_) => {}
        }
        Ok(())
    }

    fn finish_output(&mut self) -> Result<(), Error> {
        match &self.phase {
            Phase::Head(acc) if acc.is_empty() => Err(ResponseError::NoOutput.into()),
            Phase::Head(_) => Err(ResponseError::NoHeaderEnd.into()),
            Phase::Body(BodyFraming::Chunked, _) => {
                let spill = self.body_left() > 0;
                self.out.push(http::LAST_CHUNK, spill)
            }
            // The client sees the connection close before the announced length.
            Phase::Body(BodyFraming::Length(_), left) if *left > 0 => {
                Err(ResponseError::ShortBody(*left).into())
            }
            _ => Ok(()),
        }
    }
}

/// The status an nph- script wrote (`HTTP/1.1 200 OK`), for the access log; 0 if none.
fn status_of_raw_response(data: &[u8]) -> u16 {
    data.splitn(3, |&b| b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Bytes waiting for the client: memory first, then (while spilling) a temp file.
#[derive(Default)]
struct OutQueue {
    mem: Vec<u8>,
    start: usize,
    spill: Option<Spill>,
}

struct Spill {
    file: File,
    read_at: u64,
    write_at: u64,
}

impl OutQueue {
    fn mem_len(&self) -> usize {
        self.mem.len() - self.start
    }

    fn spilling(&self) -> bool {
        self.spill.is_some()
    }

    fn is_empty(&self) -> bool {
        self.mem_len() == 0 && self.spill.is_none()
    }

    fn push(&mut self, data: &[u8], allow_spill: bool) -> Result<(), Error> {
        let to_file =
            self.spill.is_some() || (allow_spill && self.mem_len() + data.len() > OUT_HIGH);
        if !to_file {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        let spill = match &mut self.spill {
            Some(s) => s,
            None => self.spill.insert(Spill {
                file: tempfile::tempfile().map_err(Error::Internal)?,
                read_at: 0,
                write_at: 0,
            }),
        };
        spill
            .file
            .write_all_at(data, spill.write_at)
            .map_err(Error::Internal)?;
        spill.write_at += data.len() as u64;
        Ok(())
    }

    /// Sends what the socket takes now; `Ok(0)` when it takes nothing.
    fn write_to(&mut self, conn: &Conn) -> io::Result<usize> {
        if self.mem_len() == 0 {
            self.refill()?;
        }
        if self.mem_len() == 0 {
            return Ok(0);
        }
        match sys::send_nonblocking(conn.fd(), &self.mem[self.start..]) {
            Ok(n) => {
                self.start += n;
                if self.start == self.mem.len() {
                    self.mem.clear();
                    self.start = 0;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        let n = (spill.write_at - spill.read_at).min(READ_BUF as u64) as usize;
        self.mem.clear();
        self.start = 0;
        self.mem.resize(n, 0);
        spill.file.read_exact_at(&mut self.mem, spill.read_at)?;
        spill.read_at += n as u64;
        if spill.read_at == spill.write_at {
            self.spill = None;
        }
        Ok(())
    }
}

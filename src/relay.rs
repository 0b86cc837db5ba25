//! Moves one request through a running script, whatever the model: request body in,
//! CGI response out (parsed by the shared parser, framed by the connection's
//! exchange), both directions in one loop so neither can block the other. Waiting is
//! the event loop's: the relay says what it waits for and sleeps until one is ready.
//!
//! Memory stays bounded: script output is read only while the client keeps up, except
//! while the request body is still arriving, when it spills to a temp file (up to
//! `--max-spill`) rather than deadlock a script that writes before it reads.

use std::fs::File;
use std::future::{Future, poll_fn};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::gateway::response::{self, Kind, ResponseError};
use crate::http::body::BodyError;
use crate::http::conn::Peer;
use crate::http::exchange::Exchange;
use crate::http::head::Request;
use crate::logger::Logger;
use crate::route::Script;

/// Output held in memory before we stop reading the script (or spill, see above).
const OUT_HIGH: usize = 256 * 1024;
const READ_BUF: usize = 64 * 1024;

/// A running script as the relay sees it. All calls are non-blocking: they return
/// `WouldBlock` (or `Pending`) instead of waiting; `poll_ready` is how the relay waits.
pub trait Backend {
    /// Registers `cx` to be woken for what the relay waits on: room for input when
    /// `want_input`, output when `want_output`, and always whatever the backend itself
    /// must watch (stderr, exit). Ready when some of it is ready now.
    fn poll_ready(&mut self, cx: &mut Context<'_>, want_input: bool, want_output: bool)
    -> Poll<()>;
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
    /// No more output will come, but whether it ended well (the script exited, or
    /// was killed mid-answer) is not known yet.
    Ending,
    /// Nothing yet.
    Pending,
}

/// One request on its way to a script, as both models see it.
pub struct Call<'a, 'c> {
    pub ex: &'a mut Exchange<'c>,
    pub req: &'a Request,
    pub script: &'a Script,
    /// Prefix for this request's log lines.
    pub tag: &'a str,
    /// The request's number (for the status page's in-flight table).
    pub id: u64,
}

/// Where the request body comes from.
pub enum BodyIn {
    None,
    /// The rest of a length-delimited body, straight from the client connection.
    Socket,
    /// A body already spooled in memory.
    Memory(Vec<u8>),
    /// A body spooled to a file: the file, bytes left in it, the chunk read from it.
    File(File, u64, Vec<u8>),
}

impl BodyIn {
    /// Body bytes not yet given to the script.
    pub fn left(&self, ex: &Exchange<'_>) -> u64 {
        match self {
            BodyIn::None => 0,
            BodyIn::Socket => ex.body_left(),
            BodyIn::Memory(v) => v.len() as u64,
            BodyIn::File(_, n, chunk) => n + chunk.len() as u64,
        }
    }
}

pub struct Settings {
    /// The script must be done by then (`--timeout`).
    pub deadline: Instant,
    pub timeout: Duration,
    pub max_header: usize,
    /// Relay the output unchanged (nph- scripts).
    pub raw: bool,
    /// Where the time went, for the Server-Timing header.
    pub timing: Timing,
    /// `--limit-output`: most bytes the script may write.
    pub max_output: Option<u64>,
    /// `--max-spill`: most output spilled to disk while the body arrives.
    pub max_spill: u64,
    /// Where a budget reached mid-request is logged, with the request's tag.
    pub log: Arc<Logger>,
    pub tag: String,
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
        /// Output past the script's own Content-Length, dropped.
        excess: u64,
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

    /// Did the client leave (or stop reading) before the answer was out?
    pub fn client_left(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(Error::ClientGone(_) | Error::SendStalled(_))
                | Outcome::Sent {
                    error: Some(Error::ClientGone(_) | Error::SendStalled(_)),
                    ..
                }
        )
    }
}

enum Phase {
    Head(Vec<u8>),
    /// The head is parsed but not yet sent: if the output ends before it stalls, the
    /// answer goes out with a Content-Length (so an HTTP/1.0 client keeps its
    /// connection, and a crash can still become a 502).
    Held(Held),
    Body,
    Raw,
    Discard,
}

struct Held {
    status: u16,
    reason: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    content_length: Option<u64>,
    body: Vec<u8>,
}

/// Most body held back while waiting to see whether the output ends.
const HOLD_MAX: usize = 64 * 1024;

/// Runs the exchange to its end.
pub async fn run(
    ex: &mut Exchange<'_>,
    body: &mut BodyIn,
    backend: &mut dyn Backend,
    mut settings: Settings,
) -> Outcome {
    // Whatever the script answers, the body is read to its end (dropped once the script
    // stops reading), so an early answer can still keep the connection.
    ex.drain_body(true);
    let mut r = Relay {
        out: OutQueue::default(),
        phase: if settings.raw {
            Phase::Raw
        } else {
            Phase::Head(Vec::new())
        },
        status: 0,
        redirect: None,
        body,
        input_closed: false,
        input_dead: false,
        first_byte: None,
        timing: None,
        output_bytes: 0,
        spill_capped: false,
    };
    // Reused across the connection's requests: zeroing 64 KiB each time shows up.
    let mut buf = std::mem::take(ex.scratch());
    buf.resize(READ_BUF, 0);
    let result = r.pump(ex, backend, &mut settings, &mut buf).await;
    *ex.scratch() = buf;
    if result.is_err() {
        // Stopped before the body's end: an error page that follows must close.
        ex.drain_body(false);
    }
    let committed = ex.answer_started();
    if let Err(e) = &result
        && committed
        && !matches!(e, Error::ClientGone(_) | Error::SendStalled(_))
    {
        // What the script did write before it failed goes out as far as the socket
        // takes it now, so the client sees an answer that stops short rather than
        // nothing at all; the script is not kept waiting on a slow client for it.
        r.flush_now(ex);
    }
    let (body_bytes, excess) = ex.body_counts();
    match result {
        Ok(()) => match r.redirect.take() {
            Some(loc) => Outcome::LocalRedirect(loc),
            None => Outcome::Sent {
                status: r.status,
                body_bytes,
                error: None,
                timing: r.timing_text(&settings),
                excess,
            },
        },
        Err(e) if committed => {
            ex.broken();
            Outcome::Sent {
                status: r.status,
                body_bytes,
                error: Some(e),
                timing: r.timing_text(&settings),
                excess,
            }
        }
        Err(e) => Outcome::Failed(e),
    }
}

struct Relay<'b> {
    out: OutQueue,
    phase: Phase,
    status: u16,
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
    spill_capped: bool,
}

/// What the relay is waiting for on one turn.
struct Waits {
    body_bytes: bool,
    client_room: bool,
    client_close: bool,
    input: bool,
    output: bool,
}

impl Relay<'_> {
    async fn pump(
        &mut self,
        ex: &mut Exchange<'_>,
        backend: &mut dyn Backend,
        s: &mut Settings,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let mut ended = false;
        let mut watch_peer = true;
        let mut last_body = Instant::now();
        let mut timer = pin!(tokio::time::sleep_until(s.deadline.into()));
        loop {
            backend.housekeeping();
            if ended && !self.input_dead {
                // The answer is complete: the rest of the body is read and dropped, so
                // the connection can carry the next request.
                self.input_dead = true;
                backend.close_input();
            }
            let (mut progress, got_body) = self.pump_input(ex, backend)?;
            if got_body {
                last_body = Instant::now();
            }

            // A few reads before writing, so output and its end (FastCGI often sends
            // STDOUT and END_REQUEST together) leave in one send.
            let mut stalled = false;
            for _ in 0..4 {
                if ended || !self.output_room(ex, s) {
                    break;
                }
                match backend.read_output(buf)? {
                    Output::End => {
                        ended = true;
                        progress = true;
                        self.finish_output(ex, s)?;
                    }
                    Output::Data(n) => {
                        progress = true;
                        self.take_output(&buf[..n], ex, s)?;
                    }
                    Output::Ending => break,
                    Output::Pending => {
                        stalled = true;
                        break;
                    }
                }
            }
            // More output will come later: what is held goes out now, streamed.
            if stalled && matches!(self.phase, Phase::Held(_)) {
                self.commit(ex, s, false)?;
            }

            if !self.out.is_empty() || ex.continue_pending() {
                match self.out.write_to(ex) {
                    Ok(0) => {}
                    Ok(_) => progress = true,
                    Err(e) => return Err(Error::ClientGone(e.to_string())),
                }
            }
            let body_left = self.body.left(ex);
            if ended && self.out.is_empty() && body_left == 0 {
                return Ok(());
            }
            if progress {
                continue;
            }

            let now = Instant::now();
            if !ended && now >= s.deadline {
                // Still waiting for the client's body: the client was too slow, not us.
                return Err(if matches!(*self.body, BodyIn::Socket) && body_left > 0 {
                    BodyError::TooSlow(s.timeout).into()
                } else {
                    Error::Timeout(s.timeout)
                });
            }
            let waits = Waits {
                body_bytes: matches!(*self.body, BodyIn::Socket) && ex.wants_body_bytes(),
                client_room: !self.out.is_empty() || ex.continue_pending(),
                // Once the whole answer is out, a client hanging up is no reason to
                // kill the script: it only has to finish.
                client_close: watch_peer
                    && !ended
                    && self.out.is_empty()
                    && body_left == 0
                    && !ex.answer_complete(),
                input: !self.input_dead && self.input_ready(ex),
                output: !ended && self.output_room(ex, s),
            };
            if waits.body_bytes && now.duration_since(last_body) >= ex.settings.body_timeout {
                return Err(BodyError::TimedOut(ex.settings.body_timeout).into());
            }
            if waits.client_room {
                ex.client_blocked().map_err(Error::SendStalled)?;
            } else {
                ex.client_idle();
            }
            let mut wake = if ended {
                ex.client_deadline()
            } else {
                s.deadline
            };
            if waits.client_room {
                wake = wake.min(ex.client_deadline());
            }
            if waits.body_bytes {
                wake = wake.min(last_body + ex.settings.body_timeout);
            }
            if let Some(t) = backend.wake_at() {
                wake = wake.min(t);
            }
            timer.as_mut().reset(wake.into());
            let woke_by_client = poll_fn(|cx| wait(cx, ex, backend, &waits, timer.as_mut())).await;
            if waits.client_close && woke_by_client {
                match ex.peer_state() {
                    Peer::Closed => {
                        return Err(Error::ClientGone("closed the connection".into()));
                    }
                    Peer::Unwatchable => watch_peer = false,
                    Peer::Open => {}
                }
            }
        }
    }

    /// Sends what the socket takes of what is queued, without waiting for the client.
    fn flush_now(&mut self, ex: &mut Exchange<'_>) {
        while !self.out.is_empty() {
            match self.out.write_to(ex) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// May we take more script output now? Only while the client keeps up, except
    /// that output spills to disk while the body is still arriving (up to the cap).
    fn output_room(&mut self, ex: &Exchange<'_>, s: &Settings) -> bool {
        if !self.out.spilling() {
            return self.out.mem_len() < OUT_HIGH;
        }
        if self.body.left(ex) == 0 {
            return false;
        }
        if self.out.spilled() >= s.max_spill {
            if !self.spill_capped {
                self.spill_capped = true;
                s.log.log(&format!(
                    "{} output waiting for the client reached --max-spill {}; the script \
                     is not read until the client catches up",
                    s.tag,
                    bytesize::ByteSize(s.max_spill).display().iec()
                ));
            }
            return false;
        }
        true
    }

    /// Is there body data in hand to give the script?
    fn input_ready(&self, ex: &Exchange<'_>) -> bool {
        match &*self.body {
            BodyIn::Socket => !ex.body_in_hand().is_empty(),
            BodyIn::Memory(v) | BodyIn::File(_, _, v) => !v.is_empty(),
            BodyIn::None => false,
        }
    }

    /// Moves body bytes from the client (or spool) to the script. Says whether
    /// anything moved, and whether new bytes came from the client.
    fn pump_input(
        &mut self,
        ex: &mut Exchange<'_>,
        backend: &mut dyn Backend,
    ) -> Result<(bool, bool), Error> {
        let mut progress = false;
        let mut got_body = false;
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
        if matches!(*self.body, BodyIn::Socket) && ex.wants_body_bytes() {
            match ex.try_read_body() {
                Ok(0) => {
                    ex.body_failed();
                    return Err(Error::ClientGone("closed before the body ended".into()));
                }
                Ok(_) => {
                    progress = true;
                    got_body = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    ex.body_failed();
                    return Err(Error::ClientGone(e.to_string()));
                }
            }
        }
        let chunk: &[u8] = match &*self.body {
            BodyIn::Socket => ex.body_in_hand(),
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
                    BodyIn::Socket => ex.consume_body(taken),
                    BodyIn::Memory(v) | BodyIn::File(_, _, v) => {
                        v.drain(..taken);
                    }
                    BodyIn::None => {}
                }
            }
        }
        if self.body.left(ex) == 0 && !self.input_closed {
            self.input_closed = true;
            backend.close_input();
        }
        Ok((progress, got_body))
    }

    fn timing_text(&self, s: &Settings) -> String {
        self.timing
            .clone()
            .unwrap_or_else(|| s.timing.render(self.first_byte, Instant::now()))
    }

    fn take_output(
        &mut self,
        data: &[u8],
        ex: &mut Exchange<'_>,
        s: &mut Settings,
    ) -> Result<(), Error> {
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
            _ => return self.emit(data, ex, s),
        };
        let Some((resp, start)) = response::parse(&head_buf, s.max_header)? else {
            self.phase = Phase::Head(head_buf);
            return Ok(());
        };
        if let Kind::LocalRedirect(loc) = resp.kind {
            self.redirect = Some(loc);
            self.phase = Phase::Discard;
            return Ok(());
        }
        self.status = resp.status;
        self.phase = Phase::Held(Held {
            status: resp.status,
            reason: resp.reason,
            headers: resp.headers,
            content_length: resp.content_length,
            body: Vec::new(),
        });
        self.emit(&head_buf[start..], ex, s)
    }

    /// Sends the held head, with the length of the whole body when `complete`, and
    /// the body held so far.
    fn commit(&mut self, ex: &mut Exchange<'_>, s: &Settings, complete: bool) -> Result<(), Error> {
        let Phase::Held(held) = std::mem::replace(&mut self.phase, Phase::Body) else {
            return Ok(());
        };
        let Held {
            status,
            reason,
            mut headers,
            content_length,
            body,
        } = held;
        let length = match content_length {
            Some(n) => Some(n),
            None if complete => Some(body.len() as u64),
            None => None,
        };
        let timing = s.timing.render(self.first_byte, Instant::now());
        if s.timing.header {
            headers.push(("Server-Timing".into(), timing.clone().into_bytes()));
        }
        self.timing = Some(timing);
        let reason = reason
            .as_deref()
            .unwrap_or_else(|| crate::http::response::reason(status));
        let head = ex.head(status, reason, &headers, length);
        let spill = self.body.left(ex) > 0;
        self.out.push(&head, spill)?;
        self.emit(&body, ex, s)
    }

    /// Queues body bytes, framed for the client (or holds them with the head).
    fn emit(&mut self, data: &[u8], ex: &mut Exchange<'_>, s: &Settings) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        let spill = self.body.left(ex) > 0;
        match &mut self.phase {
            Phase::Held(held) => {
                held.body.extend_from_slice(data);
                if held.body.len() > HOLD_MAX {
                    self.commit(ex, s, false)?;
                }
            }
            Phase::Raw => {
                if !ex.answer_started() {
                    self.status = status_of_raw_response(data);
                    ex.raw_answer();
                }
                let framed = ex.frame(data);
                self.out.push(framed.data, spill)?;
            }
            Phase::Body => {
                let framed = ex.frame(data);
                self.out.push(framed.prefix(), spill)?;
                self.out.push(framed.data, spill)?;
                self.out.push(framed.suffix, spill)?;
            }
            // The head phase never gets here: `take_output` parses it first.
            Phase::Discard | Phase::Head(_) => {}
        }
        Ok(())
    }

    fn finish_output(&mut self, ex: &mut Exchange<'_>, s: &Settings) -> Result<(), Error> {
        if let Phase::Held(held) = &self.phase {
            // Still nothing sent: a body short of the script's own Content-Length is
            // a bad answer, said with a status rather than by a cut connection.
            if let Some(n) = held.content_length
                && (held.body.len() as u64) < n
            {
                return Err(ResponseError::ShortBody(n - held.body.len() as u64).into());
            }
            self.commit(ex, s, true)?;
        }
        match &self.phase {
            Phase::Head(acc) if acc.is_empty() => Err(ResponseError::NoOutput.into()),
            Phase::Head(_) => Err(ResponseError::NoHeaderEnd.into()),
            Phase::Body => match ex.end_body() {
                Ok(end) => {
                    let spill = self.body.left(ex) > 0;
                    self.out.push(end, spill)
                }
                // The client sees the connection close before the announced length.
                Err(short) => Err(ResponseError::ShortBody(short.0).into()),
            },
            Phase::Held(_) | Phase::Raw | Phase::Discard => Ok(()),
        }
    }
}

/// One wait of the relay: ready when the client, the backend or the timer is. Says
/// whether the client's read side woke us.
fn wait(
    cx: &mut Context<'_>,
    ex: &Exchange<'_>,
    backend: &mut dyn Backend,
    w: &Waits,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Poll<bool> {
    let mut ready = false;
    let mut client = false;
    if (w.body_bytes || w.client_close) && ex.poll_readable(cx).is_ready() {
        ready = true;
        client = true;
    }
    if w.client_room && ex.poll_writable(cx).is_ready() {
        ready = true;
    }
    if backend.poll_ready(cx, w.input, w.output).is_ready() {
        ready = true;
    }
    if timer.poll(cx).is_ready() {
        ready = true;
    }
    if ready {
        Poll::Ready(client)
    } else {
        Poll::Pending
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

    /// Bytes in the spill file not yet sent.
    fn spilled(&self) -> u64 {
        self.spill.as_ref().map_or(0, |s| s.write_at - s.read_at)
    }

    fn is_empty(&self) -> bool {
        self.mem_len() == 0 && self.spill.is_none()
    }

    fn push(&mut self, data: &[u8], allow_spill: bool) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
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
    fn write_to(&mut self, ex: &mut Exchange<'_>) -> io::Result<usize> {
        if self.mem_len() == 0 {
            self.refill()?;
        }
        let pending = &self.mem[self.start..];
        match ex.try_send(pending) {
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

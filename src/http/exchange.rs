//! One request and its answer on a connection: what is left of the request body on
//! the wire, `Expect: 100-continue`, the framing the answer's head announced, the
//! client's send deadlines, and from all of that whether the connection can carry
//! another request. Handlers read and write through it; only it decides keep-alive.

use std::fs::File;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::body::{BodyError, ChunkedDecoder, Spool, Spooled};
use super::conn::{Conn, Peer, SendError, WaitError};
use super::head::{Framing, Request, Version};
use super::response::{self, BodyFraming, Framed, Framer, Head, ShortBody};
use super::send::{SendClock, SendLimits, SendStall};
use crate::net::Endpoints;

/// Largest count passed to one sendfile(2) call.
const SENDFILE_CHUNK: u64 = 1 << 30;

/// The connection's deadlines and sizes (`--head-timeout`, `--keepalive-timeout`,
/// `--body-timeout`, `--send-timeout`, `--min-send-rate`, `--max-header`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_header: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub body_timeout: Duration,
    pub send: SendLimits,
    /// After our answer on a connection that must close while the client may still be
    /// sending, how long its bytes are read and dropped so it sees the answer, not a
    /// reset.
    pub linger: Duration,
}

/// What is left of the request body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming {
    None,
    Length(u64),
    /// Chunked and not yet read (it is spooled whole before use).
    Chunked,
    /// The body was malformed or cut off: the connection is out of step.
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    NotExpected,
    /// The client waits for `100 Continue` before it sends the body.
    Owed,
    /// Part of it is out; this many bytes of it are.
    Sending(usize),
    Done,
}

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
    /// Close, but read and drop what the client still sends for a while first.
    Linger,
}

pub struct Exchange<'c> {
    conn: &'c mut Conn,
    pub settings: &'c Settings,
    version: Version,
    head_only: bool,
    /// The client asked to keep the connection and nothing has ruled it out yet.
    keep_alive: bool,
    incoming: Incoming,
    continue_: Continue,
    /// The handler will read the body to its end even after answering (the relay
    /// does), so an early answer need not close the connection.
    drains_body: bool,
    framer: Option<Framer>,
    clock: SendClock,
    /// The answer was cut off after its head went out.
    broken: bool,
}

impl<'c> Exchange<'c> {
    /// `stopping`: the server is shutting down, so this is the connection's last.
    pub fn new(conn: &'c mut Conn, req: &Request, settings: &'c Settings, stopping: bool) -> Self {
        Exchange {
            conn,
            settings,
            version: req.version,
            head_only: req.is_head(),
            keep_alive: req.wants_keep_alive() && !stopping,
            incoming: match req.framing {
                Framing::None | Framing::Length(0) => Incoming::None,
                Framing::Length(n) => Incoming::Length(n),
                Framing::Chunked => Incoming::Chunked,
            },
            continue_: if req.expect_continue && req.has_body() {
                Continue::Owed
            } else {
                Continue::NotExpected
            },
            drains_body: false,
            framer: None,
            clock: SendClock::new(settings.send, Instant::now()),
            broken: false,
        }
    }

    pub fn ends(&self) -> Endpoints {
        self.conn.ends
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The connection's scratch buffer, reused from request to request.
    pub fn scratch(&mut self) -> &mut Vec<u8> {
        &mut self.conn.scratch
    }

    // ---- the request body ----

    /// Length-delimited body bytes not yet consumed (0 for chunked: see `spool_body`).
    pub fn body_left(&self) -> u64 {
        match self.incoming {
            Incoming::Length(n) => n,
            _ => 0,
        }
    }

    /// Is some of the request body still unread on the wire?
    pub fn body_unread(&self) -> bool {
        matches!(
            self.incoming,
            Incoming::Length(_) | Incoming::Chunked | Incoming::Broken
        )
    }

    /// Body bytes already received and not yet consumed.
    pub fn body_in_hand(&self) -> &[u8] {
        let p = self.conn.pending();
        &p[..p
            .len()
            .min(usize::try_from(self.body_left()).unwrap_or(usize::MAX))]
    }

    pub fn consume_body(&mut self, n: usize) {
        if let Incoming::Length(left) = self.incoming {
            let n = (n as u64).min(left);
            self.conn.consume(n as usize);
            self.incoming = match left - n {
                0 => Incoming::None,
                rest => Incoming::Length(rest),
            };
        }
    }

    /// Whether the handler reads the body to its end, whatever it answers: then an
    /// early answer need not close the connection. Withdrawn when it stops early.
    pub fn drain_body(&mut self, drains: bool) {
        self.drains_body = drains;
    }

    /// The body turned out malformed or cut off: this connection cannot carry more.
    pub fn body_failed(&mut self) {
        self.incoming = Incoming::Broken;
    }

    /// Reads more body bytes without waiting; `Ok(0)` when the client closed. The first
    /// call owes a waiting client its `100 Continue`, which goes out before anything
    /// else we send.
    pub fn try_read_body(&mut self) -> io::Result<usize> {
        if self.continue_ == Continue::Owed && self.conn.pending().is_empty() {
            self.continue_ = Continue::Sending(0);
        }
        self.flush_continue()?;
        self.conn.try_fill()
    }

    /// Is the loop to wake us for more body bytes?
    pub fn wants_body_bytes(&self) -> bool {
        self.body_left() > 0 && self.conn.pending().is_empty()
    }

    /// Reads a chunked body whole, to memory and then a temp file, so CONTENT_LENGTH
    /// can be exact. Over `max_body` (as soon as a chunk size says so) is an error.
    pub async fn spool_body(&mut self, max_body: u64, memory: usize) -> Result<Spooled, BodyError> {
        let result = self.spool_chunked(max_body, memory).await;
        self.incoming = match result {
            Ok(_) => Incoming::None,
            Err(_) => Incoming::Broken,
        };
        result
    }

    async fn spool_chunked(&mut self, max_body: u64, memory: usize) -> Result<Spooled, BodyError> {
        if self.continue_ == Continue::Owed && self.conn.pending().is_empty() {
            self.continue_ = Continue::Sending(0);
            self.conn
                .send_all(response::CONTINUE, self.settings.send)
                .await
                .map_err(|_| BodyError::Truncated)?;
            self.continue_ = Continue::Done;
        }
        let mut decoder = ChunkedDecoder::with_limit(max_body);
        let mut spool = Spool::new(memory);
        let mut data = Vec::new();
        loop {
            let used = decoder.decode(self.conn.pending(), &mut data)?;
            self.conn.consume(used);
            if spool.len() + data.len() as u64 > max_body {
                return Err(BodyError::TooLarge);
            }
            spool
                .write(&data)
                .map_err(|e| BodyError::Spool(e.to_string()))?;
            data.clear();
            if decoder.is_done() {
                return spool.finish().map_err(|e| BodyError::Spool(e.to_string()));
            }
            if self.conn.eof() {
                return Err(BodyError::Truncated);
            }
            let deadline = Instant::now() + self.settings.body_timeout;
            match self.conn.fill(deadline).await {
                Ok(_) => {}
                Err(WaitError::TimedOut) => {
                    return Err(BodyError::TimedOut(self.settings.body_timeout));
                }
                Err(WaitError::Gone(_)) => return Err(BodyError::Truncated),
            }
        }
    }

    // ---- the answer ----

    /// Has the answer's head gone out (or been queued)?
    pub fn answer_started(&self) -> bool {
        self.framer.is_some()
    }

    /// The head of the answer; from here on body bytes go through [`Exchange::frame`].
    /// `length` is the body's, when known.
    pub fn head(
        &mut self,
        status: u16,
        reason: &str,
        headers: &[(String, Vec<u8>)],
        length: Option<u64>,
    ) -> Vec<u8> {
        let framing = BodyFraming::pick(self.version, self.head_only, status, length);
        if self.continue_ == Continue::Owed {
            // The client still waits for `100 Continue`, which must not follow a final
            // answer (RFC 9110 §10.1.1): its body will not come, so it is not waited
            // for, and the connection closes after this answer.
            self.continue_ = Continue::NotExpected;
            self.incoming = Incoming::Broken;
        }
        let unread = match self.incoming {
            Incoming::Broken => true,
            _ => self.body_unread() && !self.drains_body,
        };
        if !framing.keeps_connection() || unread {
            self.keep_alive = false;
        }
        let mut out = Vec::with_capacity(512);
        response::write_head(
            &mut out,
            &Head {
                status,
                reason,
                headers,
                framing,
                announce_length: length.filter(|_| status != 304),
                keep_alive: self.keep_alive,
                version: self.version,
            },
        );
        self.framer = Some(Framer::new(framing));
        out
    }

    /// A HEAD request, or a status that has no body: only the head goes out.
    pub fn bodyless(&self) -> bool {
        self.framer
            .as_ref()
            .is_some_and(|f| f.framing() == BodyFraming::Empty)
    }

    /// Frames body bytes as the head announced.
    pub fn frame<'d>(&mut self, data: &'d [u8]) -> Framed<'d> {
        match &mut self.framer {
            Some(f) => f.frame(data),
            // No head, no body: nothing may go out.
            None => Framer::new(BodyFraming::Empty).frame(data),
        }
    }

    /// What ends the body on the wire, or how short it fell of its announced length
    /// (then the answer is broken: the client sees the connection close early).
    pub fn end_body(&mut self) -> Result<&'static [u8], ShortBody> {
        let end = self.framer.as_ref().map_or(Ok(&b""[..]), Framer::finish);
        if end.is_err() {
            self.broken = true;
        }
        end
    }

    /// Has the client been given everything it will wait for?
    pub fn answer_complete(&self) -> bool {
        self.framer.as_ref().is_some_and(Framer::complete)
    }

    /// Body bytes sent (without framing) and bytes dropped past a stated length.
    pub fn body_counts(&self) -> (u64, u64) {
        self.framer
            .as_ref()
            .map_or((0, 0), |f| (f.body_bytes, f.dropped))
    }

    /// The answer was cut off: the connection closes after it.
    pub fn broken(&mut self) {
        self.broken = true;
    }

    /// The script writes the whole answer itself (an nph- script): it goes out as
    /// it is, and ends when the connection closes.
    pub fn raw_answer(&mut self) {
        self.keep_alive = false;
        self.framer = Some(Framer::new(BodyFraming::Close));
    }

    // ---- sending ----

    /// Sends what the socket takes now (an owed `100 Continue` first); `WouldBlock`
    /// when it takes nothing.
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.flush_continue()?;
        if matches!(self.continue_, Continue::Sending(_)) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.conn.try_send(data)?;
        self.clock.sent(n);
        Ok(n)
    }

    fn flush_continue(&mut self) -> io::Result<()> {
        while let Continue::Sending(done) = self.continue_ {
            let n = self.conn.try_send(&response::CONTINUE[done..])?;
            self.continue_ = if done + n == response::CONTINUE.len() {
                Continue::Done
            } else {
                Continue::Sending(done + n)
            };
        }
        Ok(())
    }

    /// Has an owed `100 Continue` been only partly sent?
    pub fn continue_pending(&self) -> bool {
        matches!(self.continue_, Continue::Sending(_))
    }

    /// Registers `cx` for room in the socket.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.poll_writable(cx)
    }

    /// Registers `cx` for input (or a close) from the client.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.poll_readable(cx)
    }

    /// Has the client gone? See [`Conn::peer_state`].
    pub fn peer_state(&mut self) -> Peer {
        self.conn.peer_state()
    }

    /// Bytes wait for the client and the socket is full: judge its reading. A client
    /// found too slow gets its connection reset when it closes.
    pub fn client_blocked(&mut self) -> Result<(), SendStall> {
        let judged = self.clock.blocked(Instant::now(), self.conn.unsent());
        if judged.is_err() {
            self.broken = true;
            self.conn.reset_on_close();
        }
        judged
    }

    /// Nothing waits for the client: time from now on is not its fault.
    pub fn client_idle(&mut self) {
        self.clock.idle(Instant::now());
    }

    /// When the client's reading must be judged again at the latest.
    pub fn client_deadline(&self) -> Instant {
        self.clock.deadline()
    }

    /// Sends all of `data` within the client's deadlines.
    pub async fn send(&mut self, mut data: &[u8]) -> Result<(), SendError> {
        while !data.is_empty() {
            match self.try_send(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.conn.writable(&mut self.clock).await?;
                }
                Err(e) => return Err(SendError::Gone(e)),
            }
        }
        Ok(())
    }

    /// Sends `count` bytes of `file` from `start` with sendfile(2): from the page cache
    /// to the socket, never through our memory. On failure, says how much went out.
    pub async fn send_file(
        &mut self,
        file: &File,
        start: u64,
        count: u64,
    ) -> Result<(), (u64, SendError)> {
        let mut sent = 0;
        while sent < count {
            let chunk = (count - sent).min(SENDFILE_CHUNK) as usize;
            match self.conn.try_sendfile(file, start + sent, chunk) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sent");
                    return Err((sent, SendError::Gone(e)));
                }
                Ok(n) => {
                    sent += n as u64;
                    self.clock.sent(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.conn.writable(&mut self.clock).await {
                        return Err((sent, e));
                    }
                }
                Err(e) => return Err((sent, SendError::Gone(e))),
            }
        }
        if let Some(f) = &mut self.framer {
            f.count_sent(sent);
        }
        Ok(())
    }

    /// What the connection does next.
    pub fn finish(self) -> After {
        let clean = self.framer.is_some() && !self.broken && !self.body_unread();
        if self.keep_alive && clean {
            return After::KeepAlive;
        }
        // Only a client that may still be sending is worth draining; closing on one
        // that is done lets a new connection from the same port collide with ours.
        let may_be_sending = self.body_unread() || !self.conn.pending().is_empty();
        if may_be_sending && !self.conn.eof() {
            After::Linger
        } else {
            After::Close
        }
    }
}

//! A closed-loop HTTP/1.1 load generator for loopback servers: N clients, each on
//! its own thread with one keep-alive connection, each sending its next request as
//! soon as the previous answer is complete. A run ends at a request count or a time
//! limit, whichever comes first; every answer's latency is kept for percentiles.
//!
//! It is plain blocking std code (and httparse) so that a bench or a test can call
//! [`run`] and get numbers without any setup. A crate of its own because both the
//! report and the server's benches use it, and the server must not depend on the
//! report.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a run stops: after `requests` requests in all, or after `duration`, whichever
/// comes first. Requests in flight at the deadline are still answered and counted.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests: u64,
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub concurrency: usize,
    /// Answers with status 200.
    pub ok: u64,
    /// Complete answers with any other status.
    pub non_200: u64,
    /// Requests that got no complete answer (refused, reset, timed out, malformed).
    pub errors: u64,
    /// TCP connections opened (one per client when keep-alive holds).
    pub connects: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every complete answer, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// What went wrong first, when something did.
    pub first_error: Option<String>,
}

impl Stats {
    /// Answers with status 200 per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The `p`th percentile (0–100) of the latencies, nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile_us(&self.latencies_us, p)
            .map_or(Duration::ZERO, |us| Duration::from_micros(u64::from(us)))
    }

    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile_us(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Runs `concurrency` clients against `GET path` on `addr` until `limits`.
pub fn run(addr: SocketAddr, path: &str, concurrency: usize, limits: Limits) -> Stats {
    run_with(addr, path, concurrency, limits, &mut |_| {})
}

/// [`run`], calling `tick` with the number of requests done so far about every
/// 100 ms (for a progress bar).
pub fn run_with(
    addr: SocketAddr,
    path: &str,
    concurrency: usize,
    limits: Limits,
    tick: &mut dyn FnMut(u64),
) -> Stats {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cgi-testbed-report\r\n\r\n");
    let shared = Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        limit: limits.requests,
        deadline: Instant::now() + limits.duration,
    };
    let start = Instant::now();
    let results: Vec<Client> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrency.max(1))
            .map(|_| s.spawn(|| client(addr, request.as_bytes(), &shared)))
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            tick(shared.done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        tick(shared.done.load(Ordering::Relaxed));
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // From the start to the last client's last answer: the thread that waits polls,
    // so its own wake-up time must not count.
    let end = results.iter().filter_map(|c| c.finished).max();
    let mut stats = Stats {
        concurrency,
        elapsed: end.map_or(Duration::ZERO, |e| e.saturating_duration_since(start)),
        ..Stats::default()
    };
    stats.first_error = results
        .iter()
        .filter_map(|c| c.first_error.clone())
        .min_by_key(|(at, _)| *at)
        .map(|(_, e)| e);
    for c in results {
        stats.ok += c.ok;
        stats.non_200 += c.non_200;
        stats.errors += c.errors;
        stats.connects += c.connects;
        stats.latencies_us.extend(c.latencies_us);
    }
    stats.latencies_us.sort_unstable();
    stats
}

struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    limit: u64,
    deadline: Instant,
}

#[derive(Default)]
struct Client {
    ok: u64,
    non_200: u64,
    errors: u64,
    connects: u64,
    latencies_us: Vec<u32>,
    first_error: Option<(Instant, String)>,
    /// When this client stopped.
    finished: Option<Instant>,
}

/// How long one answer may take before it counts as an error.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn client(addr: SocketAddr, request: &[u8], shared: &Shared) -> Client {
    let mut me = Client::default();
    let mut conn: Option<Conn> = None;
    loop {
        let now = Instant::now();
        if shared.issued.fetch_add(1, Ordering::Relaxed) >= shared.limit || now >= shared.deadline {
            me.finished = Some(now);
            return me;
        }
        // A reconnect is part of what this client waits for, so it is in the latency.
        let t0 = Instant::now();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(addr) {
                Ok(c) => {
                    me.connects += 1;
                    c
                }
                Err(e) => {
                    me.error(format!("connect: {e}"));
                    shared.done.fetch_add(1, Ordering::Relaxed);
                    // A refusing server must not turn the client into a busy loop.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        match c.exchange(request, false) {
            Ok(answer) => {
                c.answers += 1;
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                me.latencies_us.push(us);
                if answer.status == 200 {
                    me.ok += 1;
                } else {
                    me.non_200 += 1;
                }
                if !answer.close {
                    conn = Some(c);
                }
            }
            Err(e) => me.error(format!(
                "after {} answers on the connection: {e}",
                c.answers
            )),
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Client {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some((Instant::now(), what));
        }
    }
}

/// One complete answer.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    /// The server will close (or has closed) the connection after this answer.
    pub close: bool,
    /// Header names (lower case) and values, when asked for.
    pub headers: Vec<(String, String)>,
    /// The body, when asked for (chunked framing removed).
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One GET on a fresh connection, with the headers and the body.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Answer> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cgi-testbed-report\r\nConnection: close\r\n\r\n"
    );
    Conn::open(addr)?.exchange(request.as_bytes(), true)
}

/// A client connection with its read buffer (bytes received, not yet used).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Complete answers read so far.
    pub answers: u64,
}

enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            answers: 0,
        })
    }

    /// Sends `request` and reads one complete answer (skipping 1xx interim answers);
    /// `keep` also returns the headers and the body.
    pub fn exchange(&mut self, request: &[u8], keep: bool) -> io::Result<Answer> {
        self.stream.write_all(request)?;
        loop {
            let answer = self.read_answer(keep)?;
            if !(100..200).contains(&answer.status) {
                return Ok(answer);
            }
        }
    }

    fn read_answer(&mut self, keep: bool) -> io::Result<Answer> {
        let mut answer = Answer::default();
        let (head_len, framing) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    answer.status = resp.code.unwrap_or(0);
                    let http10 = resp.version == Some(0);
                    answer.close = http10;
                    let mut framing = Framing::UntilClose;
                    for h in resp.headers.iter() {
                        let value = String::from_utf8_lossy(h.value);
                        if h.name.eq_ignore_ascii_case("content-length") {
                            if let Ok(n) = value.trim().parse() {
                                framing = Framing::Length(n);
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if value.to_ascii_lowercase().contains("chunked") {
                                framing = Framing::Chunked;
                            }
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = value.to_ascii_lowercase();
                            if v.contains("close") {
                                answer.close = true;
                            } else if v.contains("keep-alive") {
                                answer.close = false;
                            }
                        }
                        if keep {
                            answer
                                .headers
                                .push((h.name.to_ascii_lowercase(), value.into_owned()));
                        }
                    }
                    // Bodiless statuses.
                    if answer.status == 204 || answer.status == 304 || answer.status < 200 {
                        framing = Framing::Length(0);
                    }
                    break (n, framing);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(eof());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        };
        self.buf.drain(..head_len);
        match framing {
            Framing::Length(n) => {
                while self.buf.len() < n {
                    if self.fill()? == 0 {
                        return Err(eof());
                    }
                }
                if keep {
                    answer.body.extend_from_slice(&self.buf[..n]);
                }
                self.buf.drain(..n);
            }
            Framing::Chunked => self.read_chunks(keep.then_some(&mut answer.body))?,
            Framing::UntilClose => {
                while self.fill()? > 0 {}
                if keep {
                    answer.body.append(&mut self.buf);
                }
                self.buf.clear();
                answer.close = true;
            }
        }
        Ok(answer)
    }

    fn read_chunks(&mut self, mut body: Option<&mut Vec<u8>>) -> io::Result<()> {
        loop {
            let line = self.line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(eof());
                }
            }
            if let Some(b) = body.as_deref_mut() {
                b.extend_from_slice(&self.buf[..size]);
            }
            self.buf.drain(..size + 2);
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(eof());
            }
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-answer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A tiny server answering each request on a connection with `answers` in turn.
    fn serve(answers: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            for a in answers {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(a).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_answers() {
        let addr = serve(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nServer-Timing: a;dur=1\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nto the end",
        ]);
        let mut c = Conn::open(addr).unwrap();
        let a = c.exchange(b"GET / HTTP/1.1\r\n\r\n", true).unwrap();
        assert_eq!(
            (a.status, a.close, &a.body[..]),
            (200, false, &b"hello"[..])
        );
        let a = c.exchange(b"GET / HTTP/1.1\r\n\r\n", true).unwrap();
        assert_eq!((a.status, &a.body[..]), (404, &b"abcde"[..]));
        assert_eq!(a.header("Server-Timing"), Some("a;dur=1"));
        let a = c.exchange(b"GET / HTTP/1.1\r\n\r\n", true).unwrap();
        assert_eq!(
            (a.status, a.close, &a.body[..]),
            (200, true, &b"to the end"[..])
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile_us(&v, 50.0), Some(50));
        assert_eq!(percentile_us(&v, 99.0), Some(99));
        assert_eq!(percentile_us(&v, 100.0), Some(100));
        assert_eq!(percentile_us(&[7], 99.0), Some(7));
        assert_eq!(percentile_us(&[], 50.0), None);
    }

    #[test]
    fn a_refusing_address_counts_errors_and_stops_at_the_limit() {
        // Bind then drop: the port is (almost certainly) closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let limits = Limits {
            requests: 20,
            duration: Duration::from_secs(5),
        };
        let s = run(addr, "/", 2, limits);
        assert_eq!(s.ok + s.non_200, 0);
        assert!(s.errors >= 1 && s.errors <= 20, "{s:?}");
        assert!(s.first_error.unwrap().starts_with("connect: "));
    }
}

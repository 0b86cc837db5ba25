//! A small blocking HTTP/1.1 keep-alive client, and a set of them on their own threads
//! driven in lockstep: the closed-loop load the `models` bench times.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One answer: status and body (de-chunked).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection sending `GET path` over and over; reconnects when the
/// server ends the connection.
pub struct KeepAlive {
    addr: SocketAddr,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr, path: &str) -> io::Result<KeepAlive> {
        let mut c = KeepAlive {
            addr,
            request: format!("GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").into_bytes(),
            stream: None,
            buf: Vec::with_capacity(16 << 10),
        };
        c.reconnect()?;
        Ok(c)
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect(self.addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        self.stream = Some(s);
        self.buf.clear();
        Ok(())
    }

    /// Drops the connection (whatever it holds now is suspect); the next request
    /// opens a new one.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            self.reconnect()?;
        }
        Ok(self.stream.as_mut().expect("connected"))
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = loop {
            // A socket with a read timeout returns EINTR even for SA_RESTART handlers
            // (signal(7)), and this process is also the server, reaping scripts.
            match self.stream()?.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_or_eof(&mut self, what: &str) -> io::Result<()> {
        match self.fill()? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed in the {what}"),
            )),
            _ => Ok(()),
        }
    }

    /// Sends one request and reads the whole response.
    pub fn get(&mut self) -> io::Result<Reply> {
        let request = std::mem::take(&mut self.request);
        let sent = self.stream()?.write_all(&request);
        self.request = request;
        sent?;
        let (status, framing, close, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(&self.buf).map_err(|e| bad(e.to_string()))? {
                httparse::Status::Complete(n) => {
                    let status = resp.code.unwrap_or(0);
                    let mut framing = Framing::Close;
                    let mut close = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or_else(|| bad("bad Content-Length"))?;
                            framing = Framing::Length(len);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            framing = Framing::Chunked;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (status, framing, close, n);
                }
                httparse::Status::Partial => self.fill_or_eof("response head")?,
            }
        };
        self.buf.drain(..head_len);
        let body = match framing {
            Framing::Length(len) => {
                while self.buf.len() < len {
                    self.fill_or_eof("body")?;
                }
                self.buf.drain(..len).collect()
            }
            Framing::Chunked => self.chunks()?,
            Framing::Close => {
                while self.fill()? > 0 {}
                self.stream = None;
                std::mem::take(&mut self.buf)
            }
        };
        if close {
            self.stream = None;
        }
        if status != 200 {
            return Err(bad(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(Reply { status, body })
    }

    fn chunks(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill_or_eof("chunk size")?;
            };
            let size = std::str::from_utf8(&self.buf[..line])
                .ok()
                .map(|s| s.split(';').next().unwrap_or("").trim())
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad("bad chunk size"))?;
            self.buf.drain(..line + 2);
            if size == 0 {
                // No trailers from this server: just the final CRLF.
                while self.buf.len() < 2 {
                    self.fill_or_eof("last chunk")?;
                }
                self.buf.drain(..2);
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                self.fill_or_eof("chunk")?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// `n` clients, each on its own thread with its own keep-alive connection.
pub struct Clients {
    jobs: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Vec<String>>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    /// Connects all `n` clients to `GET path` (connections are made before this returns).
    pub fn start(addr: SocketAddr, path: &str, n: usize) -> io::Result<Clients> {
        let (done_tx, done) = mpsc::channel();
        let mut jobs = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let mut client = KeepAlive::connect(addr, path)?;
            let (job_tx, job_rx) = mpsc::channel::<u64>();
            let done_tx = done_tx.clone();
            jobs.push(job_tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("client-{i}"))
                    .spawn(move || {
                        while let Ok(k) = job_rx.recv() {
                            let mut failures = Vec::new();
                            for _ in 0..k {
                                if let Err(e) = client.get() {
                                    failures.push(format!("client {i}: {e}"));
                                    client.disconnect();
                                }
                            }
                            if done_tx.send(failures).is_err() {
                                return;
                            }
                        }
                    })?,
            );
        }
        Ok(Clients {
            jobs,
            done,
            threads,
        })
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Every client sends `per_client` requests back to back, reading each answer
    /// before the next request. A failed request counts as done (the client reconnects
    /// and carries on); the caller decides how many failures a measurement can take.
    pub fn round(&self, per_client: u64) -> Round {
        let start = Instant::now();
        for job in &self.jobs {
            job.send(per_client).expect("client thread alive");
        }
        let mut failures = Vec::new();
        for _ in 0..self.jobs.len() {
            failures.extend(self.done.recv().expect("client thread alive"));
        }
        Round {
            elapsed: start.elapsed(),
            requests: per_client * self.jobs.len() as u64,
            failures,
        }
    }
}

/// What one [`Clients::round`] did.
#[derive(Debug)]
pub struct Round {
    /// Until the last client was done.
    pub elapsed: Duration,
    pub requests: u64,
    pub failures: Vec<String>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

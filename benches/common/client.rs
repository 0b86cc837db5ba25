//! A small blocking HTTP/1.1 keep-alive client, and a set of them on their own threads
//! driven in lockstep: the closed-loop load the `models` bench times.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cgi_testbed_load::Conn;

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
/// server ends the connection. The HTTP side is the report's load client.
pub struct KeepAlive {
    addr: SocketAddr,
    request: Vec<u8>,
    conn: Option<Conn>,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr, path: &str) -> io::Result<KeepAlive> {
        Ok(KeepAlive {
            addr,
            request: format!("GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").into_bytes(),
            conn: Some(Conn::open(addr)?),
        })
    }

    /// Drops the connection (whatever it holds now is suspect); the next request
    /// opens a new one.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Sends one request and reads the whole response.
    pub fn get(&mut self) -> io::Result<Reply> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::open(self.addr)?),
        };
        let answer = conn.exchange(&self.request, true)?;
        if answer.close {
            self.conn = None;
        }
        if answer.status != 200 {
            return Err(bad(format!(
                "status {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        Ok(Reply {
            status: answer.status,
            body: answer.body,
        })
    }
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

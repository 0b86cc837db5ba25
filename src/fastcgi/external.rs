//! FastCGI servers someone else runs (`--fastcgi NAME=ADDR`, e.g. php-fpm or
//! `php-cgi -b`): several addresses per name taken in turn, a failing one skipped for
//! a while.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UnixStream};

use super::client::Stream;
use crate::error::Error;
use crate::logger::Logger;

/// How long a backend that refused a connection is left out of the rotation.
const SKIP_FOR: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    /// `unix:/path.sock` or `HOST:PORT`.
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Address::Tcp(s.to_owned()))
            }
            _ => Err(format!("{s:?} is neither unix:/path nor HOST:PORT")),
        }
    }

    /// Connects in the event loop; a host name is looked up in the loop's small
    /// blocking pool.
    async fn connect(&self) -> std::io::Result<Stream> {
        match self {
            Address::Unix(p) => {
                let s = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(p)).await;
                s.unwrap_or_else(|_| Err(timed_out())).map(Stream::Unix)
            }
            Address::Tcp(hp) => {
                let mut last = std::io::Error::other("no address");
                for addr in tokio::net::lookup_host(hp.as_str()).await? {
                    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
                    match s.unwrap_or_else(|_| Err(timed_out())) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(hp) => f.write_str(hp),
        }
    }
}

pub struct External {
    name: String,
    addresses: Vec<Address>,
    next: AtomicUsize,
    skip_until: Mutex<Vec<Option<Instant>>>,
}

impl External {
    pub fn new(name: String, addresses: Vec<Address>) -> External {
        let n = addresses.len();
        External {
            name,
            addresses,
            next: AtomicUsize::new(0),
            skip_until: Mutex::new(vec![None; n]),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects to the next backend in turn, skipping ones that failed recently; if
    /// all are marked down, they are tried anyway rather than refuse outright.
    pub async fn connect(&self, log: &Logger) -> Result<Stream, Error> {
        let n = self.addresses.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let skip = self
            .skip_until
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| skip.get(i).copied().flatten().is_none_or(|t| t <= now))
            .chain((0..n).map(|k| (start + k) % n));
        let mut tried = vec![false; n];
        let mut errors = Vec::new();
        for i in order {
            if std::mem::replace(&mut tried[i], true) {
                continue;
            }
            match self.addresses[i].connect().await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    log.log(&format!(
                        "[fcgi {}] backend {} down: {e}; skipping it for {}s",
                        self.name,
                        self.addresses[i],
                        SKIP_FOR.as_secs()
                    ));
                    if let Ok(mut s) = self.skip_until.lock() {
                        s[i] = Some(Instant::now() + SKIP_FOR);
                    }
                    errors.push(format!("{}: {e}", self.addresses[i]));
                }
            }
        }
        Err(Error::BackendDown(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("unix:/run/php.sock"),
            Ok(Address::Unix("/run/php.sock".into()))
        );
        assert_eq!(
            Address::parse("127.0.0.1:9000"),
            Ok(Address::Tcp("127.0.0.1:9000".into()))
        );
        assert_eq!(
            Address::parse("[::1]:9000"),
            Ok(Address::Tcp("[::1]:9000".into()))
        );
        assert!(Address::parse("nowhere").is_err());
        assert!(Address::parse("unix:").is_err());
        assert!(Address::parse("host:port").is_err());
    }
}

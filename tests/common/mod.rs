//! Test harness: a real server on 127.0.0.1:0 over a temp cgi-dir of real scripts,
//! and a small raw HTTP/1.1 client that shows exactly what went over the wire.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgi_testbed::logger::LogTarget;
use cgi_testbed::{Config, Running, Server};

pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub errors: Arc<Mutex<Vec<String>>>,
    pub access: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Serves a fresh cgi-dir holding `scripts` (name, text; made executable).
    pub fn start(scripts: &[(&str, &str)]) -> TestServer {
        Self::with(scripts, |_| {})
    }

    pub fn with(scripts: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir(&cgi).expect("mkdir");
        for (name, text) in scripts {
            write_script(&cgi.join(name), text);
        }
        let (errors_target, errors) = LogTarget::memory();
        let (access_target, access) = LogTarget::memory();
        let mut config = Config::new(&cgi);
        config.error_log = errors_target;
        config.access_log = Some(access_target);
        config.timeout = Duration::from_secs(10);
        tune(&mut config);
        let running = Server::bind(config).expect("bind").start().expect("start");
        TestServer {
            running: Some(running),
            dir,
            errors,
            access,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().expect("running").addr
    }

    pub fn cgi_dir(&self) -> PathBuf {
        self.dir.path().join("cgi-bin")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    /// One GET on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        self.exchange(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    pub fn exchange(&self, raw: &[u8]) -> Response {
        let mut c = self.client();
        c.send(raw);
        let r = c.response();
        assert!(
            r.status != 0,
            "no response on {:?} ({:?}) to {:?}; log: {:#?} access: {:#?}",
            c.stream.local_addr(),
            c.last_error,
            String::from_utf8_lossy(&raw[..raw.len().min(200)]),
            self.error_log(),
            self.access_log()
        );
        r
    }

    pub fn error_log(&self) -> Vec<String> {
        self.errors.lock().expect("log").clone()
    }

    pub fn access_log(&self) -> Vec<String> {
        self.access.lock().expect("log").clone()
    }

    /// Lines of the error log that mention `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.error_log()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

pub fn write_script(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sizes of the chunks as they came, for chunked bodies.
    pub chunks: Vec<usize>,
    /// The body ended as its framing said (false: connection closed early).
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `NAME=value` lines of an `env`-style body.
    pub fn var(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Why the last read failed, if it did (for diagnostics).
    pub last_error: Option<std::io::Error>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Client {
            stream,
            buf: Vec::new(),
            last_error: None,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One `read` of the raw socket, retried if a signal interrupts it.
    pub fn read_some(&mut self, buf: &mut [u8]) -> usize {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Like `send`, but reports a failure (the server may close an idle connection).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => {
                self.last_error = Some(e);
                0
            }
        }
    }

    /// Reads one response to a request that was not HEAD.
    pub fn response(&mut self) -> Response {
        self.read_response(false)
    }

    pub fn head_response(&mut self) -> Response {
        self.read_response(true)
    }

    fn read_response(&mut self, head_only: bool) -> Response {
        let mut resp = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let resp = Response {
                        status: r.code.unwrap_or(0),
                        reason: r.reason.unwrap_or("").to_owned(),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        ..Response::default()
                    };
                    self.buf.drain(..n);
                    if resp.status == 100 {
                        continue;
                    }
                    break resp;
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill() == 0 {
                        return Response::default();
                    }
                }
                Err(e) => {
                    let start =
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(60)]).into_owned();
                    return Response {
                        reason: format!("bad response head: {e}: {start:?}"),
                        ..Response::default()
                    };
                }
            }
        };
        let bodyless = head_only || resp.status == 204 || resp.status == 304;
        if bodyless {
            resp.complete = true;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            while self.buf.len() < len && self.fill() > 0 {}
            let n = len.min(self.buf.len());
            resp.body = self.buf.drain(..n).collect();
            resp.complete = n == len;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            self.read_chunks(&mut resp);
        } else {
            while self.fill() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
            resp.complete = true;
        }
        resp
    }

    fn read_chunks(&mut self, resp: &mut Response) {
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill() == 0 {
                    return;
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            self.buf.drain(..line_end + 2);
            if size == 0 {
                while !self.buf.starts_with(b"\r\n") {
                    if self.fill() == 0 {
                        return;
                    }
                }
                self.buf.drain(..2);
                resp.complete = true;
                return;
            }
            while self.buf.len() < size + 2 {
                if self.fill() == 0 {
                    return;
                }
            }
            resp.body.extend(self.buf.drain(..size));
            resp.chunks.push(size);
            self.buf.drain(..2);
        }
    }

    /// True once the server has closed the connection (reads end of stream).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        let mut b = [0u8; 4096];
        while Instant::now() < until {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is there a live (not reaped) process with this pid?
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads a pid a script wrote to `file` (waiting for it to appear).
pub fn read_pid(file: &Path) -> u32 {
    let mut pid = None;
    eventually(Duration::from_secs(5), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.expect("script wrote its pid")
}

/// Set by `.ci/run`, which installs every peer some tests need (php-cgi, Perl's
/// FCGI, flup): then a test that finds something it needs missing fails instead of
/// skipping, so a run where it could not happen is not reported as passed.
pub const REQUIRE_PEERS: &str = "CGI_TESTBED_REQUIRE_PEERS";

/// A test (or part of one) cannot run here, for `reason`: under [`REQUIRE_PEERS`]
/// that fails the test; otherwise it says so on stderr, past libtest's capture so
/// that `cargo test` shows it, and the caller skips that part.
pub fn skip(reason: &str) {
    let required = std::env::var_os(REQUIRE_PEERS).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{REQUIRE_PEERS} is set, and this test cannot run: {reason}"
    );
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {name}: {reason} (README: Tests)"
    );
}

/// Whether a test may go on with what it needs from the machine: `available`, or
/// [`skip`] with `needs` (what, and how to get it) and false for the test to return.
pub fn peer(available: bool, needs: &str) -> bool {
    if !available {
        skip(&format!("needs {needs}"));
    }
    available
}

/// Does this command run and succeed? (A probe for a peer such as php-cgi.)
pub fn command_works(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An IPv4 address of this machine outside 127.0.0.0/8, to reach a server the way a
/// client elsewhere does (the server treats loopback clients as trusted).
pub fn non_loopback_ipv4() -> Option<std::net::Ipv4Addr> {
    let mut found = None;
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, which is read only while it is alive and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut at = list;
        while !at.is_null() && found.is_none() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let v4 = &*(addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_unspecified() {
                    found = Some(ip);
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

pub const ENV_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n";
pub const ECHO_SCRIPT: &str =
    "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec cat\n";
pub const HELLO_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello\\n'\n";

/// The binary on a free port over `cgi`, with `args`; its stderr goes to `log`.
pub fn start_binary(cgi: &Path, log: &Path, args: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cgi-testbed"))
        .args(["--listen", "127.0.0.1:0", "--cgi-dir"])
        .arg(cgi)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start the server");
    let addr = listening_address(&mut child);
    (child, addr)
}

/// The address a started binary (its stdout piped) printed on its first line.
pub fn listening_address(child: &mut std::process::Child) -> SocketAddr {
    let mut line = String::new();
    let stdout = child.stdout.as_mut().expect("stdout piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("address")
}

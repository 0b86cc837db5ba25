//! Every wait has its own deadline, each with a flag, a distinct outcome and one log
//! line: request head, request-body idle, script run time, the client's reading (idle
//! and minimum rate), and keep-alive idle.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Reads the whole body before answering, so a stalled body shows as 408.
const SLURP: &str =
    "#!/bin/sh\nbody=$(cat)\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s' \"$body\"\n";
const FLOOD: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nexec yes\n";

fn one_line_with(s: &TestServer, needle: &str) -> String {
    let mut lines = Vec::new();
    eventually(Duration::from_secs(3), || {
        lines = s.log_lines_with(needle);
        !lines.is_empty()
    });
    assert_eq!(lines.len(), 1, "{needle}: {:#?}", s.error_log());
    lines.remove(0)
}

#[test]
fn request_head_deadline_is_408_with_its_flag_in_the_log() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| {
        c.head_timeout = Duration::from_secs(1);
    });
    let mut c = s.client();
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n");
    let asked = Instant::now();
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(asked.elapsed() < Duration::from_secs(4));
    let line = one_line_with(&s, "--head-timeout");
    assert!(line.contains(" 408 "), "{line}");
}

#[test]
fn request_body_idle_deadline_is_408_for_both_framings() {
    let s = TestServer::with(&[("slurp", SLURP)], |c| {
        c.body_timeout = Duration::from_secs(1);
    });
    let mut c = s.client();
    c.send(b"POST /cgi-bin/slurp HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    let asked = Instant::now();
    assert_eq!(c.response().status, 408);
    assert!(asked.elapsed() < Duration::from_secs(4));
    assert!(c.closed_within(Duration::from_secs(4)));

    let mut c = s.client();
    c.send(b"POST /cgi-bin/slurp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    assert_eq!(c.response().status, 408);
    let lines = s.log_lines_with("--body-timeout");
    assert_eq!(lines.len(), 2, "{:#?}", s.error_log());
    assert!(lines.iter().all(|l| l.contains(" 408 ")), "{lines:#?}");
}

#[test]
fn script_run_time_is_504_with_its_flag_in_the_log() {
    let s = TestServer::with(&[("hang", "#!/bin/sh\nexec sleep 30\n")], |c| {
        c.timeout = Duration::from_secs(1);
    });
    let asked = Instant::now();
    assert_eq!(s.get("/cgi-bin/hang").status, 504);
    assert!(asked.elapsed() < Duration::from_secs(5));
    let line = one_line_with(&s, "--timeout");
    assert!(line.contains(" 504 "), "{line}");
}

#[test]
fn a_client_that_takes_nothing_is_cut_off_after_the_send_timeout() {
    let s = TestServer::with(&[("flood", FLOOD)], |c| {
        c.send_timeout = Duration::from_secs(1);
        c.min_send_rate = 0;
        c.timeout = Duration::from_secs(60);
    });
    let mut c = s.client();
    c.send(b"GET /cgi-bin/flood HTTP/1.1\r\nHost: x\r\n\r\n");
    let line = one_line_with(&s, "--send-timeout");
    assert!(line.contains("took no bytes"), "{line}");
    // Reset, not closed: what the kernel held for it is dropped at once.
    let mut rest = Vec::new();
    let read = c.stream.read_to_end(&mut rest);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?} after {} bytes",
        rest.len()
    );
    let shared = s.running.as_ref().expect("running").shared();
    assert!(
        eventually(Duration::from_secs(5), || shared.children.count() == 0),
        "the script of a client that does not read was left running"
    );
    drop(c);
}

#[test]
fn a_client_reading_below_the_minimum_rate_is_cut_off() {
    let s = TestServer::with(&[], |c| {
        let root = c.cgi_dir.parent().expect("parent").join("public");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("big.bin"), vec![b'x'; 32 << 20]).expect("file");
        c.document_root = Some(root);
        c.send_timeout = Duration::from_secs(2);
        c.min_send_rate = 1 << 20;
    });
    // A small receive buffer, so what we read opens the window a little at a time: a
    // reader that always takes something, far too slowly for 1 MiB/s.
    let sock = socket2_like_connect(s.addr(), 16 * 1024);
    let mut stream = sock;
    std::io::Write::write_all(&mut stream, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(20) {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = true;
                break;
            }
            Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(closed, "a reader at a few KiB/s was never cut off");
    let line = one_line_with(&s, "--min-send-rate");
    assert!(line.contains("response cut off"), "{line}");
}

/// A connected socket whose receive buffer is `rcvbuf` bytes (set before connecting,
/// so the window is small from the start).
fn socket2_like_connect(addr: std::net::SocketAddr, rcvbuf: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we create and then own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        );
        let stream = TcpStream::from_raw_fd(fd);
        let std::net::SocketAddr::V4(v4) = addr else {
            panic!("IPv4 expected")
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

#[test]
fn an_idle_kept_connection_is_closed_after_the_keepalive_timeout() {
    let s = TestServer::with(&[("hello", HELLO_SCRIPT)], |c| {
        c.keepalive_timeout = Duration::from_secs(1);
    });
    let mut c = s.client();
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // A second request right away is still welcome.
    c.send(b"GET /cgi-bin/hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let idle = Instant::now();
    assert!(c.closed_within(Duration::from_secs(4)));
    assert!(idle.elapsed() >= Duration::from_millis(900));
    one_line_with(&s, "--keepalive-timeout");
}

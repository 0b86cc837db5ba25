//! Descriptor accounting over many connections. Alone in its own test binary: the
//! count is per process, and other tests' sockets would blur it.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn ten_thousand_short_connections_leave_no_descriptor_behind() {
    let s = TestServer::start(&[("hello", HELLO_SCRIPT)]);
    // Warm up lazily created state (pools, buffers) before counting.
    for _ in 0..10 {
        s.get("/nope");
    }
    let before = cgi_testbed::sys::open_fd_count();
    for i in 0..10_000 {
        let mut c = Client::connect(s.addr());
        c.send(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(c.response().status, 404, "connection {i}");
    }
    assert!(
        eventually(Duration::from_secs(5), || cgi_testbed::sys::open_fd_count()
            <= before + 2),
        "descriptors grew from {before} to {}",
        cgi_testbed::sys::open_fd_count()
    );
}

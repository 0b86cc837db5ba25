//! A dual-mode example: run it as a CGI script, or give it a listening socket
//! on fd 0 and it serves FastCGI requests until killed. The pid and the request
//! count make worker reuse visible from outside; the rest of the body is the
//! same in both modes so the two can be compared.
//!
//! The server's `build.rs` compiles it into `cgi-bin/hello-rs`, statically linked
//! (against musl when that target is installed), so that it starts like a compiled
//! program: see the README's "A compiled CGI program that starts fast".

use std::io;
use std::process::ExitCode;

use fastcgi_app as app;

fn main() -> io::Result<ExitCode> {
    let pid = std::process::id();
    let mut served: u64 = 0;
    app::run(|req, out| {
        served += 1;
        let var = |name| req.param(name).unwrap_or("");
        write!(
            out,
            "Content-Type: text/plain\n\n\
             Hello from Rust\n\
             pid: {pid}\n\
             requests: {served}\n\
             mode: {}\n\
             method: {}\n\
             query: {}\n",
            req.mode.as_str(),
            var("REQUEST_METHOD"),
            var("QUERY_STRING"),
        )?;
        Ok(0)
    })
}

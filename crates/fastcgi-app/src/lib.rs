//! The application side of FastCGI, for dual-mode programs: the same binary
//! answers one request as a CGI script, or serves request after request as a
//! FastCGI responder when a server hands it a listening socket on fd 0.
//!
//! Deliberately small and blocking: one connection at a time, one request at
//! a time (GET_VALUES says so), and the request body is read completely before
//! the handler runs. It uses std only and depends on nothing, the cgi-testbed
//! server included, so a program built on it starts like any compiled program
//! (see `examples/hello-rs.rs`); the server uses its wire format, [`record`].

pub mod record;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

use record::{BeginRequest, RecordType};

/// FCGI_LISTENSOCK_FILENO: where the server puts the listening socket.
const LISTENSOCK_FILENO: RawFd = 0;

/// How much to read from the socket at a time; one full record fits.
const READ_CHUNK: usize = record::FCGI_MAX_RECORD_LEN;

/// Which way the program was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Cgi,
    FastCgi,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cgi => "cgi",
            Mode::FastCgi => "fastcgi",
        }
    }
}

/// One request, fully received: the body is spooled before the handler runs so
/// a handler never has to care whether it came from a pipe or from records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// CGI meta-variables: the process environment in CGI mode, PARAMS in
    /// FastCGI mode.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    pub stdin: Vec<u8>,
    pub mode: Mode,
}

impl Request {
    /// The first parameter called `name`, if its value is UTF-8.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.as_slice() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// libfcgi's rule (FastCGI spec §2.2): a listening socket has no peer, so
/// getpeername(0) fails with ENOTCONN; a pipe, a file or /dev/null fails with
/// ENOTSOCK, and a connected socket succeeds. Only the first means FastCGI.
pub fn is_fastcgi() -> bool {
    // SAFETY: fd 0 is open (std reopens closed standard fds on /dev/null before
    // main), and ManuallyDrop keeps this borrowed wrapper from closing it.
    let fd0 = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(LISTENSOCK_FILENO) });
    // std maps exactly ENOTCONN to NotConnected. Any socket family works here:
    // the error comes from the kernel before std looks at the address.
    matches!(fd0.peer_addr(), Err(e) if e.kind() == io::ErrorKind::NotConnected)
}

/// Runs `handler` for every request this process receives. The handler writes
/// a CGI response (headers, blank line, body) to `out` and returns the exit
/// status the CGI script would have had; FastCGI reports it as appStatus.
///
/// In CGI mode this handles one request and returns the handler's status as an
/// exit code. In FastCGI mode it only returns if accepting fails for good;
/// errors on a single connection are logged to stderr and that connection is
/// dropped.
pub fn run<F>(mut handler: F) -> io::Result<ExitCode>
where
    F: FnMut(&Request, &mut dyn Write) -> io::Result<i32>,
{
    if is_fastcgi() {
        serve_listener(&mut handler)
    } else {
        run_cgi(&mut handler)
    }
}

fn run_cgi<F>(handler: &mut F) -> io::Result<ExitCode>
where
    F: FnMut(&Request, &mut dyn Write) -> io::Result<i32>,
{
    let params: Vec<_> = std::env::vars_os()
        .map(|(n, v)| (n.into_vec(), v.into_vec()))
        .collect();
    let mut stdin = Vec::new();
    // RFC 3875 §4.1.2: the server sets CONTENT_LENGTH if and only if a body
    // comes, so without it there is nothing to read (and a server that leaves
    // stdin open would otherwise keep us waiting). §4.2: never read beyond it,
    // since the server need not send EOF after the body.
    if let Some(n) = std::env::var_os("CONTENT_LENGTH").and_then(parse_length) {
        io::stdin().lock().take(n).read_to_end(&mut stdin)?;
    }
    let request = Request {
        params,
        stdin,
        mode: Mode::Cgi,
    };
    // Stdout is line-buffered; a body should not cost one write per line.
    let mut out = io::BufWriter::new(io::stdout().lock());
    let status = handler(&request, &mut out)?;
    out.flush()?;
    Ok(u8::try_from(status).map_or(ExitCode::FAILURE, ExitCode::from))
}

fn parse_length(value: OsString) -> Option<u64> {
    value.to_str()?.trim().parse().ok()
}

/// fd 0 as a listener of whichever family the server chose.
enum Listener {
    Unix(ManuallyDrop<UnixListener>),
    Tcp(ManuallyDrop<TcpListener>),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Listener {
    fn from_fd0() -> io::Result<Listener> {
        // SAFETY: as in `is_fastcgi`. ManuallyDrop because fd 0 must stay
        // occupied even if we return: the next open() would land on it.
        let unix = ManuallyDrop::new(unsafe { UnixListener::from_raw_fd(LISTENSOCK_FILENO) });
        // local_addr refuses a socket of another family, which is the test.
        // A server may have made the socket non-blocking for its own use, but
        // our accept() must block rather than spin.
        if unix.local_addr().is_ok() {
            unix.set_nonblocking(false)?;
            return Ok(Listener::Unix(unix));
        }
        // SAFETY: as above.
        let tcp = ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(LISTENSOCK_FILENO) });
        tcp.local_addr()?;
        tcp.set_nonblocking(false)?;
        Ok(Listener::Tcp(tcp))
    }

    /// `Ok(None)` means "nothing to serve, accept again": a peer that gave up
    /// before we got to it, or a TCP peer that is not on the allow list.
    fn accept(&self, allowed: Option<&str>) -> io::Result<Option<Conn>> {
        let accepted = match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Some(Conn::Unix(s))),
            // A refused stream is dropped, i.e. closed without a word, as
            // libfcgi does.
            Listener::Tcp(l) => l
                .accept()
                .map(|(s, peer)| ip_allowed(peer.ip(), allowed).then_some(Conn::Tcp(s))),
        };
        match accepted {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            other => other,
        }
    }
}

fn serve_listener<F>(handler: &mut F) -> io::Result<ExitCode>
where
    F: FnMut(&Request, &mut dyn Write) -> io::Result<i32>,
{
    let listener = Listener::from_fd0()?;
    // Spec §2.3. Only checked for TCP: AF_UNIX peers have no IP, and libfcgi
    // skips the check for them too.
    let allowed = std::env::var("FCGI_WEB_SERVER_ADDRS").ok();
    loop {
        let result = match listener.accept(allowed.as_deref())? {
            Some(Conn::Unix(stream)) => serve_connection(stream, handler),
            Some(Conn::Tcp(stream)) => serve_connection(stream, handler),
            None => continue,
        };
        if let Err(e) = result {
            // stderr is the server's log; failing to log is not worth dying for.
            let _ = writeln!(io::stderr(), "fastcgi: dropped connection: {e}");
        }
    }
}

fn ip_allowed(ip: IpAddr, allowed: Option<&str>) -> bool {
    // Canonical, so an IPv4 peer on a dual-stack listener (::ffff:a.b.c.d)
    // matches its plain IPv4 entry.
    let ip = ip.to_canonical();
    allowed.is_none_or(|list| {
        list.split(',').any(|a| {
            a.trim()
                .parse::<IpAddr>()
                .is_ok_and(|a| a.to_canonical() == ip)
        })
    })
}

fn protocol_error(msg: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Buffered incoming records. `start` lets many small records be consumed
/// without shifting the buffer after each one.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    start: usize,
}

impl Inbox {
    /// The next record, or `None` on EOF between records.
    fn next<R: Read>(&mut self, src: &mut R) -> io::Result<Option<record::Record<'_>>> {
        let used = loop {
            if let Some((_, used)) =
                record::decode(&self.buf[self.start..]).map_err(protocol_error)?
            {
                break used;
            }
            self.buf.drain(..self.start);
            self.start = 0;
            let filled = self.buf.len();
            self.buf.resize(filled + READ_CHUNK, 0);
            let read = src.read(&mut self.buf[filled..]);
            self.buf.truncate(filled + read.as_ref().map_or(0, |n| *n));
            match read {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a record",
                    ));
                }
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
        };
        // Decoded again out here because returning the borrow from inside the
        // loop, which also resizes the buffer, does not pass the borrow checker.
        let at = self.start;
        self.start += used;
        match record::decode(&self.buf[at..]) {
            Ok(Some((rec, _))) => Ok(Some(rec)),
            _ => Err(protocol_error("a decoded record failed to decode again")),
        }
    }
}

/// The request being received on a connection; at most one, since we do not
/// multiplex.
struct Active {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    params_done: bool,
    stdin: Vec<u8>,
    stdin_done: bool,
}

/// Serves one connection until the peer closes it, or until a request without
/// FCGI_KEEP_CONN is answered. An error means the connection is unusable
/// (I/O failure or protocol violation); the caller should drop it.
///
/// Public so that server-side code can test its client against a real app
/// over `UnixStream::pair()` without spawning a process.
pub fn serve_connection<S, F>(mut stream: S, handler: &mut F) -> io::Result<()>
where
    S: Read + Write,
    F: FnMut(&Request, &mut dyn Write) -> io::Result<i32>,
{
    let mut inbox = Inbox::default();
    let mut active: Option<Active> = None;
    let mut reply = Vec::new();
    loop {
        let Some(rec) = inbox.next(&mut stream)? else {
            return Ok(());
        };
        reply.clear();
        if rec.request_id == record::FCGI_NULL_REQUEST_ID {
            management(&mut reply, rec)?;
            stream.write_all(&reply)?;
            continue;
        }
        let is_active = active.as_ref().is_some_and(|a| a.id == rec.request_id);
        // Set when a request ends without FCGI_KEEP_CONN: §5.1 has the app
        // close the connection after that request's END_REQUEST.
        let mut close = false;
        match rec.record_type {
            RecordType::BeginRequest => {
                if is_active {
                    return Err(protocol_error("BEGIN_REQUEST for the active request"));
                }
                let begin = BeginRequest::parse(rec.content).map_err(protocol_error)?;
                if active.is_some() {
                    // Only the newcomer is refused; the active request goes on,
                    // so its flags cannot close the connection either.
                    record::end_request(&mut reply, rec.request_id, 0, record::FCGI_CANT_MPX_CONN);
                } else if begin.role != record::FCGI_RESPONDER {
                    // Its PARAMS and STDIN may still arrive; as records of an
                    // inactive id they are ignored below.
                    record::end_request(&mut reply, rec.request_id, 0, record::FCGI_UNKNOWN_ROLE);
                    close = !begin.keep_conn();
                } else {
                    active = Some(Active {
                        id: rec.request_id,
                        keep_conn: begin.keep_conn(),
                        params: Vec::new(),
                        params_done: false,
                        stdin: Vec::new(),
                        stdin_done: false,
                    });
                }
            }
            // Spec §3.3: records for ids that are not active are ignored, e.g.
            // an ABORT_REQUEST that crossed our END_REQUEST on the wire.
            _ if !is_active => {}
            RecordType::AbortRequest => {
                // The handler has not run yet (it runs as soon as STDIN ends),
                // so there is nothing to interrupt; just end the request.
                if let Some(req) = active.take() {
                    record::end_request(&mut reply, req.id, 0, record::FCGI_REQUEST_COMPLETE);
                    close = !req.keep_conn;
                }
            }
            RecordType::Params | RecordType::Stdin => {
                if let Some(req) = active.as_mut() {
                    let (data, done) = if rec.record_type == RecordType::Params {
                        (&mut req.params, &mut req.params_done)
                    } else {
                        (&mut req.stdin, &mut req.stdin_done)
                    };
                    if *done {
                        return Err(protocol_error(format!(
                            "{:?} data after the end of its stream",
                            rec.record_type
                        )));
                    }
                    data.extend_from_slice(rec.content);
                    *done = rec.content.is_empty();
                }
            }
            // DATA belongs to the FILTER role; the rest are records an app
            // has no business receiving, and ignoring them is harmless.
            _ => {}
        }
        if !reply.is_empty() {
            stream.write_all(&reply)?;
        }
        // STDIN may legally end before PARAMS does, so wait for both.
        if let Some(req) = active.take_if(|a| a.params_done && a.stdin_done) {
            respond(&mut stream, req.id, req.params, req.stdin, handler)?;
            close = !req.keep_conn;
        }
        if close {
            return Ok(());
        }
    }
}

/// Answers a record on request id 0.
fn management(reply: &mut Vec<u8>, rec: record::Record<'_>) -> io::Result<()> {
    if rec.record_type != RecordType::GetValues {
        record::unknown_type(reply, rec.record_type.as_u8());
        return Ok(());
    }
    let asked = record::decode_pairs(rec.content).map_err(protocol_error)?;
    // Iterating our own table answers each variable once, however often it
    // was asked, which keeps the reply within one record.
    let known: [(&[u8], &[u8]); 3] = [
        (record::FCGI_MAX_CONNS, b"1"),
        (record::FCGI_MAX_REQS, b"1"),
        (record::FCGI_MPXS_CONNS, b"0"),
    ];
    let answer = known
        .into_iter()
        .filter(|(name, _)| asked.iter().any(|(n, _)| n.as_slice() == *name));
    record::get_values_result(reply, answer).map_err(protocol_error)
}

fn respond<S, F>(
    stream: &mut S,
    id: u16,
    params: Vec<u8>,
    stdin: Vec<u8>,
    handler: &mut F,
) -> io::Result<()>
where
    S: Write,
    F: FnMut(&Request, &mut dyn Write) -> io::Result<i32>,
{
    let request = Request {
        params: record::decode_pairs(&params).map_err(protocol_error)?,
        stdin,
        mode: Mode::FastCgi,
    };
    let mut out = StdoutRecords {
        stream,
        id,
        buf: Vec::with_capacity(record::FCGI_MAX_CONTENT_LEN),
        scratch: Vec::new(),
        broken: false,
    };
    let result = handler(&request, &mut out);
    let StdoutRecords { buf, broken, .. } = out;
    if broken {
        // The handler's error (if any) is just the echo of this one.
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the server went away while the response was written",
        ));
    }
    let mut tail = Vec::new();
    if !buf.is_empty() {
        record::stream(&mut tail, RecordType::Stdout, id, &buf);
    }
    let app_status = match result {
        // Negative statuses keep their bit pattern, as exit statuses would.
        Ok(status) => status as u32,
        Err(e) => {
            // What a failing CGI script does: a message on stderr, a non-zero
            // exit. The server logs STDERR records.
            // Never empty: an empty message would be a second terminator.
            let msg = format!("handler failed: {e}");
            record::stream(&mut tail, RecordType::Stderr, id, msg.as_bytes());
            record::stream(&mut tail, RecordType::Stderr, id, &[]);
            1
        }
    };
    record::stream(&mut tail, RecordType::Stdout, id, &[]);
    record::end_request(&mut tail, id, app_status, record::FCGI_REQUEST_COMPLETE);
    stream.write_all(&tail)?;
    stream.flush()
}

/// The handler's `out` in FastCGI mode: collects output into full-size STDOUT
/// records, so a handler writing line by line does not cost a record (and a
/// syscall) per line.
struct StdoutRecords<'a, S: Write> {
    stream: &'a mut S,
    id: u16,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Set when the socket failed, so a handler error caused by it is not
    /// mistaken for the handler's own failure.
    broken: bool,
}

impl<S: Write> StdoutRecords<'_, S> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            // An empty STDOUT record would end the stream.
            return Ok(());
        }
        self.scratch.clear();
        record::stream(&mut self.scratch, RecordType::Stdout, self.id, &self.buf);
        self.buf.clear();
        let result = self.stream.write_all(&self.scratch);
        self.broken |= result.is_err();
        result
    }
}

impl<S: Write> Write for StdoutRecords<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.buf.len() == record::FCGI_MAX_CONTENT_LEN {
            self.emit()?;
        }
        let n = data
            .len()
            .min(record::FCGI_MAX_CONTENT_LEN - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        let result = self.stream.flush();
        self.broken |= result.is_err();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::Duration;

    type Handler = Box<dyn FnMut(&Request, &mut dyn Write) -> io::Result<i32> + Send>;

    /// The server's end of a connection whose other end runs `serve_connection`.
    struct Client {
        stream: UnixStream,
        inbox: Inbox,
        app: Option<thread::JoinHandle<io::Result<()>>>,
    }

    #[derive(Debug, Default)]
    struct Reply {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        stdout_lens: Vec<usize>,
        end: Option<record::EndRequest>,
    }

    impl Client {
        fn new(mut handler: Handler) -> Client {
            let (ours, theirs) = UnixStream::pair().unwrap();
            // A hung app should fail the test, not hang it.
            ours.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let app = thread::spawn(move || serve_connection(theirs, &mut handler));
            Client {
                stream: ours,
                inbox: Inbox::default(),
                app: Some(app),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).unwrap();
        }

        /// BEGIN_REQUEST, the params in one PARAMS stream, then `stdin`.
        fn request(&mut self, id: u16, keep_conn: bool, params: &[(&str, &str)], stdin: &[u8]) {
            let mut buf = Vec::new();
            record::begin_request(&mut buf, id, record::FCGI_RESPONDER, keep_conn);
            record::params(&mut buf, id, params.iter().copied()).unwrap();
            if !stdin.is_empty() {
                record::stream(&mut buf, RecordType::Stdin, id, stdin);
            }
            record::stream(&mut buf, RecordType::Stdin, id, &[]);
            self.send(&buf);
        }

        fn next(&mut self) -> Option<(RecordType, u16, Vec<u8>)> {
            let rec = self.inbox.next(&mut self.stream).unwrap()?;
            Some((rec.record_type, rec.request_id, rec.content.to_vec()))
        }

        /// Everything for `id` up to and including its END_REQUEST.
        fn reply(&mut self, id: u16) -> Reply {
            let mut reply = Reply::default();
            let mut stdout_ended = false;
            while reply.end.is_none() {
                let (kind, rid, content) = self.next().expect("EOF before END_REQUEST");
                assert_eq!(rid, id);
                match kind {
                    RecordType::Stdout => {
                        assert!(!stdout_ended, "STDOUT after its terminator");
                        stdout_ended = content.is_empty();
                        reply.stdout_lens.push(content.len());
                        reply.stdout.extend_from_slice(&content);
                    }
                    RecordType::Stderr => reply.stderr.extend_from_slice(&content),
                    RecordType::EndRequest => {
                        reply.end = Some(record::EndRequest::parse(&content).unwrap());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            reply
        }

        fn assert_closed_by_app(&mut self) {
            assert!(self.next().is_none(), "app kept the connection open");
            self.app.take().unwrap().join().unwrap().unwrap();
        }

        /// Closes our end and returns what `serve_connection` returned.
        fn hang_up(mut self) -> io::Result<()> {
            self.stream.shutdown(std::net::Shutdown::Both).unwrap();
            self.app.take().unwrap().join().unwrap()
        }
    }

    fn end(status: u32, protocol_status: u8) -> Option<record::EndRequest> {
        Some(record::EndRequest {
            app_status: status,
            protocol_status,
        })
    }

    /// Answers with the method, the body length and a per-connection count.
    fn echo() -> Handler {
        let mut served = 0;
        Box::new(move |req, out| {
            served += 1;
            write!(out, "Content-Type: text/plain\n\n")?;
            let method = req.param("REQUEST_METHOD").unwrap_or("-");
            writeln!(out, "{method} {} {served}", req.stdin.len())?;
            out.write_all(&req.stdin)?;
            Ok(7)
        })
    }

    const BODY_START: &[u8] = b"Content-Type: text/plain\n\n";

    #[test]
    fn keep_conn_serves_requests_in_a_row() {
        let mut client = Client::new(echo());
        client.request(1, true, &[("REQUEST_METHOD", "GET")], b"");
        let first = client.reply(1);
        assert_eq!(first.stdout, [BODY_START, b"GET 0 1\n"].concat());
        assert_eq!(first.end, end(7, record::FCGI_REQUEST_COMPLETE));
        assert_eq!(first.stdout_lens.last(), Some(&0));

        client.request(1, true, &[("REQUEST_METHOD", "POST")], b"hi");
        let second = client.reply(1);
        assert_eq!(second.stdout, [BODY_START, b"POST 2 2\nhi"].concat());
        // The app must wait for us to close a kept connection.
        assert!(client.hang_up().is_ok());
    }

    #[test]
    fn without_keep_conn_the_app_closes() {
        let mut client = Client::new(echo());
        client.request(1, false, &[], b"");
        assert_eq!(client.reply(1).end, end(7, record::FCGI_REQUEST_COMPLETE));
        client.assert_closed_by_app();
    }

    #[test]
    fn params_may_straddle_records() {
        let long = "v".repeat(300);
        let mut body = Vec::new();
        record::encode_pairs(
            &mut body,
            [("QUERY_STRING", long.as_str()), ("REQUEST_METHOD", "PUT")],
        )
        .unwrap();
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_RESPONDER, false);
        // Cuts inside the 4-byte value length and inside the second name.
        for piece in [&body[..3], &body[3..20], &body[20..320], &body[320..]] {
            record::stream(&mut buf, RecordType::Params, 1, piece);
        }
        record::stream(&mut buf, RecordType::Params, 1, &[]);
        record::stream(&mut buf, RecordType::Stdin, 1, &[]);

        let seen = Arc::new(Mutex::new(None));
        let slot = seen.clone();
        let mut client = Client::new(Box::new(move |req, _| {
            *slot.lock().unwrap() = Some(req.clone());
            Ok(0)
        }));
        client.send(&buf);
        assert_eq!(client.reply(1).end, end(0, record::FCGI_REQUEST_COMPLETE));
        let req = seen.lock().unwrap().take().unwrap();
        assert_eq!(req.param("QUERY_STRING"), Some(long.as_str()));
        assert_eq!(req.param("REQUEST_METHOD"), Some("PUT"));
        assert_eq!(req.param("MISSING"), None);
        assert_eq!(req.mode, Mode::FastCgi);
    }

    #[test]
    fn large_stdin_and_stdout_are_split_at_65535() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut client = Client::new(echo());
        client.request(1, true, &[("REQUEST_METHOD", "POST")], &body);
        let reply = client.reply(1);
        let head = format!("POST {} 1\n", body.len());
        assert_eq!(reply.stdout, [BODY_START, head.as_bytes(), &body].concat());
        assert!(
            reply
                .stdout_lens
                .iter()
                .all(|&n| n <= record::FCGI_MAX_CONTENT_LEN)
        );
        assert_eq!(reply.stdout_lens[0], record::FCGI_MAX_CONTENT_LEN);
        assert!(client.hang_up().is_ok());
    }

    #[test]
    fn get_values_answers_only_what_was_asked() {
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        let asked = [record::FCGI_MPXS_CONNS, b"NOPE", record::FCGI_MAX_REQS];
        record::get_values(&mut buf, asked).unwrap();
        client.send(&buf);
        let (kind, id, content) = client.next().unwrap();
        assert_eq!((kind, id), (RecordType::GetValuesResult, 0));
        let pairs = record::decode_pairs(&content).unwrap();
        let expected: [(&[u8], &[u8]); 2] = [
            (record::FCGI_MAX_REQS, b"1"),
            (record::FCGI_MPXS_CONNS, b"0"),
        ];
        assert_eq!(pairs, expected.map(|(n, v)| (n.to_vec(), v.to_vec())));

        let mut buf = Vec::new();
        record::get_values(&mut buf, [record::FCGI_MAX_CONNS]).unwrap();
        client.send(&buf);
        let (_, _, content) = client.next().unwrap();
        let pairs = record::decode_pairs(&content).unwrap();
        assert_eq!(pairs, [(record::FCGI_MAX_CONNS.to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn unknown_management_type_is_answered() {
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::record(&mut buf, RecordType::Other(42), 0, b"?").unwrap();
        client.send(&buf);
        let (kind, id, content) = client.next().unwrap();
        assert_eq!((kind, id), (RecordType::UnknownType, 0));
        assert_eq!(content, [42, 0, 0, 0, 0, 0, 0, 0]);
        // The connection is still good for a request.
        client.request(1, true, &[], b"");
        assert_eq!(client.reply(1).end, end(7, record::FCGI_REQUEST_COMPLETE));
    }

    #[test]
    fn unknown_role_is_refused_and_its_stream_ignored() {
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_AUTHORIZER, true);
        record::params(&mut buf, 1, [("A", "B")]).unwrap();
        record::stream(&mut buf, RecordType::Stdin, 1, &[]);
        client.send(&buf);
        assert_eq!(client.reply(1).end, end(0, record::FCGI_UNKNOWN_ROLE));
        client.request(1, false, &[], b"");
        assert_eq!(client.reply(1).stdout, [BODY_START, b"- 0 1\n"].concat());
        client.assert_closed_by_app();

        // Without KEEP_CONN the refusal also ends the connection.
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_FILTER, false);
        client.send(&buf);
        assert_eq!(client.reply(1).end, end(0, record::FCGI_UNKNOWN_ROLE));
        client.assert_closed_by_app();
    }

    #[test]
    fn abort_before_the_handler_skips_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let mut inner = echo();
        let mut client = Client::new(Box::new(move |req, out| {
            counter.fetch_add(1, Ordering::SeqCst);
            inner(req, out)
        }));
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_RESPONDER, true);
        record::params(&mut buf, 1, [("A", "B")]).unwrap();
        record::stream(&mut buf, RecordType::Stdin, 1, b"partial");
        record::abort_request(&mut buf, 1);
        client.send(&buf);
        let reply = client.reply(1);
        assert_eq!(reply.end, end(0, record::FCGI_REQUEST_COMPLETE));
        assert!(reply.stdout.is_empty());

        // Leftovers of the aborted request, then a late abort: all ignored.
        let mut buf = Vec::new();
        record::stream(&mut buf, RecordType::Stdin, 1, &[]);
        record::abort_request(&mut buf, 1);
        client.send(&buf);
        client.request(1, true, &[], b"");
        assert_eq!(client.reply(1).stdout, [BODY_START, b"- 0 1\n"].concat());
        assert!(client.hang_up().is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_second_request_id_is_refused() {
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_RESPONDER, false);
        record::begin_request(&mut buf, 2, record::FCGI_RESPONDER, false);
        client.send(&buf);
        assert_eq!(client.reply(2).end, end(0, record::FCGI_CANT_MPX_CONN));
        let mut buf = Vec::new();
        record::params(&mut buf, 1, [("REQUEST_METHOD", "HEAD")]).unwrap();
        record::stream(&mut buf, RecordType::Stdin, 1, &[]);
        client.send(&buf);
        assert_eq!(client.reply(1).stdout, [BODY_START, b"HEAD 0 1\n"].concat());
        client.assert_closed_by_app();
    }

    #[test]
    fn handler_errors_end_the_request_with_stderr() {
        let mut client = Client::new(Box::new(|_, out| {
            out.write_all(b"Status: 500\n\n")?;
            Err(io::Error::other("database on fire"))
        }));
        client.request(1, true, &[], b"");
        let reply = client.reply(1);
        assert_eq!(reply.stdout, b"Status: 500\n\n");
        assert_eq!(reply.stderr, b"handler failed: database on fire");
        assert_eq!(reply.end, end(1, record::FCGI_REQUEST_COMPLETE));
        assert!(client.hang_up().is_ok());
    }

    #[test]
    fn protocol_errors_drop_the_connection() {
        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::abort_request(&mut buf, 1);
        buf[0] = 9; // version
        client.send(&buf);
        assert!(client.hang_up().is_err());

        let mut client = Client::new(echo());
        let mut buf = Vec::new();
        record::begin_request(&mut buf, 1, record::FCGI_RESPONDER, true);
        record::stream(&mut buf, RecordType::Params, 1, &[]);
        record::stream(&mut buf, RecordType::Params, 1, b"late");
        client.send(&buf);
        assert_eq!(
            client.hang_up().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn eof_inside_a_record_is_an_error_between_records_is_not() {
        let client = Client::new(echo());
        assert!(client.hang_up().is_ok());
        let mut client = Client::new(echo());
        client.send(&[1, 1, 0]);
        assert_eq!(
            client.hang_up().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn stdout_records_fill_up_before_they_are_sent() {
        let mut sink = Vec::new();
        let mut out = StdoutRecords {
            stream: &mut sink,
            id: 3,
            buf: Vec::new(),
            scratch: Vec::new(),
            broken: false,
        };
        for _ in 0..70_000 {
            out.write_all(b"x").unwrap();
        }
        // One full record so far; the rest waits in the buffer.
        assert_eq!(out.buf.len(), 70_000 - record::FCGI_MAX_CONTENT_LEN);
        out.flush().unwrap();
        assert!(out.buf.is_empty());
        let mut inbox = Inbox::default();
        let mut src = sink.as_slice();
        let mut lens = Vec::new();
        while let Some(rec) = inbox.next(&mut src).unwrap() {
            assert_eq!((rec.record_type, rec.request_id), (RecordType::Stdout, 3));
            lens.push(rec.content.len());
        }
        assert_eq!(lens, [record::FCGI_MAX_CONTENT_LEN, 70_000 - 65_535]);
    }

    #[test]
    fn tcp_allow_list() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(ip_allowed(ip, None));
        assert!(ip_allowed(ip, Some("127.0.0.1, 10.0.0.2")));
        assert!(!ip_allowed(ip, Some("127.0.0.1")));
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert!(ip_allowed(mapped, Some("10.0.0.2")));
    }
}

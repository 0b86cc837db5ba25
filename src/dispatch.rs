//! One request from head to access-log line: route it to a model, follow local
//! redirects, turn every error into its status page with exactly one log line.

use std::time::{Duration, Instant, SystemTime};

use crate::cgi;
use crate::error::Error;
use crate::fastcgi;
use crate::http::body::Prepared;
use crate::http::body::{BodyError, ChunkedDecoder, Spool, Spooled};
use crate::http::conn::Conn;
use crate::http::head::{Framing, HeadError, Request};
use crate::http::response::{self, error_page, error_page_with};
use crate::logger::clf_time;
use crate::relay::{self, Outcome};
use crate::route::{self, RouteError, Script};
use crate::server::Shared;
use crate::site::{self, Mount};
use crate::status::Model;

/// Local redirects followed for one request before giving up (Apache uses 10).
const MAX_REDIRECTS: usize = 10;

/// One request on its way to a script, as the models see it.
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub conn: &'a mut Conn,
    pub req: &'a Request,
    pub script: &'a Script,
    /// Prefix for this request's log lines.
    pub tag: &'a str,
    /// The request's number (for the status page's in-flight table).
    pub id: u64,
}

/// What the access log records about a request besides its line.
struct Record {
    /// When the request head had been read.
    started: Instant,
    id: u64,
    /// Which model answered, for the status page's counters.
    model: Model,
    status: u16,
    bytes: u64,
    /// Per-model details: pid, CPU and memory of the script.
    extra: String,
}

/// Serves one parsed request on `conn`, then writes its access-log line.
pub fn serve(shared: &Shared, conn: &mut Conn, req: Request) {
    let started = Instant::now();
    let id = shared.next_request_id();
    conn.body_unread = req.has_body();
    if !req.wants_keep_alive() || shared.stopping() {
        conn.reusable = false;
    }
    let mut record = Record {
        started,
        id,
        model: Model::None,
        status: 0,
        bytes: 0,
        extra: String::new(),
    };
    let mut redirect: Option<Request> = None;
    for hop in 0..=MAX_REDIRECTS {
        let current = redirect.as_ref().unwrap_or(&req);
        let tag = format!("[req {id}] {} {}", current.method, current.target);
        match answer(shared, conn, current, &tag, &mut record) {
            Ok(None) => break,
            Ok(Some(location)) if hop < MAX_REDIRECTS => {
                redirect = Some(redirected(current, location));
            }
            Ok(Some(_)) => {
                fail(
                    shared,
                    conn,
                    current,
                    Error::RedirectLoop,
                    &tag,
                    &mut record,
                );
                break;
            }
            Err(e) => {
                fail(shared, conn, current, e, &tag, &mut record);
                break;
            }
        }
    }
    if conn.body_unread {
        conn.reusable = false;
    }
    access_log(shared, conn, &req, &record, started);
    shared.stats.finished(record.model, record.status);
}

/// Answers a head that could not be parsed, then the connection closes.
pub fn reject_head(shared: &Shared, conn: &mut Conn, e: HeadError) {
    let err = Error::Head(e);
    let status = err.status();
    shared
        .log
        .log(&format!("[{}] {status} {err}", conn.ends.remote));
    conn.reusable = false;
    let page = error_page(
        status,
        err.public_detail().as_deref(),
        false,
        crate::http::head::Version::Http11,
    );
    let _ = conn.write_all(&page);
    shared.stats.finished(Model::None, status);
    if shared.log.access_enabled() {
        shared.log.access(&format!(
            "{} - - [{}] \"-\" {status} 0 \"-\" \"-\" 0us",
            conn.ends.remote.ip(),
            clf_time(SystemTime::now())
        ));
    }
}

/// `Ok(Some(path))`: the script asked for a local redirect to `path`.
fn answer(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    tag: &str,
    record: &mut Record,
) -> Result<Option<String>, Error> {
    if let Some(s) = crate::options::asterisk(conn, req)? {
        (record.model, record.status, record.bytes) = (Model::Builtin, s.status, s.bytes);
        return Ok(None);
    }
    let (path, _) = req.path_and_query();
    let mut clean = route::clean_path(path)?;
    // The second round serves a `--try-files` fallback with the request unchanged, so
    // the script sees the original REQUEST_URI and QUERY_STRING.
    for first in [true, false] {
        if let Some(answered) = answer_script(shared, conn, req, &clean, tag, record) {
            return answered;
        }
        match site::answer(shared, conn, req, &clean, tag, first) {
            Ok(site::Answer::Sent {
                status,
                bytes,
                model,
            }) => {
                (record.model, record.status, record.bytes) = (model, status, bytes);
                return Ok(None);
            }
            Ok(site::Answer::Script(fallback)) => clean = fallback,
            Err(e) => {
                if shared.layout.static_root.is_some() {
                    record.model = Model::Static;
                }
                return Err(e);
            }
        }
    }
    Err(RouteError::NotFound.into())
}

/// Runs the script `clean` names, if it is under a script mount or `/fcgi-bin/`.
fn answer_script(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    clean: &str,
    tag: &str,
    record: &mut Record,
) -> Option<Result<Option<String>, Error>> {
    for mount in &shared.layout.mounts {
        if let Some(rest) = route::strip_mount(clean, &mount.url) {
            record.model = Model::Cgi;
            return Some(answer_cgi(shared, conn, req, mount, rest, tag, record));
        }
    }
    let rest = route::strip_mount(clean, "/fcgi-bin")?;
    record.model = Model::FastCgi;
    Some(answer_fastcgi(shared, conn, req, rest, tag, record))
}

/// The relay settings for one request (a fresh set per attempt).
fn relay_settings(
    shared: &Shared,
    req: &Request,
    keep_alive: bool,
    raw: bool,
    started: Instant,
) -> relay::Settings {
    let config = &shared.config;
    relay::Settings {
        deadline: Instant::now() + config.timeout,
        stall: config.timeout,
        max_header: config.max_header,
        raw,
        send_continue: req.expect_continue,
        keep_alive,
        timing: relay::Timing {
            start: started,
            ..relay::Timing::new(config.server_timing && !raw)
        },
        max_output: config.limits.output,
    }
}

fn answer_fastcgi(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    rest: &str,
    tag: &str,
    record: &mut Record,
) -> Result<Option<String>, Error> {
    let config = &shared.config;
    let name = rest.split('/').find(|s| !s.is_empty()).unwrap_or("");
    let external = shared.external.get(name);
    let script = match external {
        Some(_) => route::named(&shared.cgi_dir, "/fcgi-bin", rest),
        None => route::resolve(
            &shared.cgi_dir,
            "/fcgi-bin",
            rest,
            &config.interpreters,
            config.dotfiles,
        )?,
    };
    check_method(req)?;
    check_length(req, config.max_body)?;
    let _running = shared
        .stats
        .running(record.id, Model::FastCgi, req, &script, conn.ends.remote);
    let body = prepare_body(shared, conn, req)?;
    let keep_alive = conn.reusable;
    let started = record.started;
    let settings = || relay_settings(shared, req, keep_alive, false, started);
    let call = Call {
        shared,
        conn,
        req,
        script: &script,
        tag,
        id: record.id,
    };
    let served = match external {
        Some(backend) => fastcgi::run_external(call, backend, body, &settings)?,
        None => fastcgi::run_pooled(call, body, &settings)?,
    };
    record.extra = format!(" worker={}", served.pid);
    finish(shared, served.outcome, tag, record)
}

fn answer_cgi(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    mount: &Mount,
    rest: &str,
    tag: &str,
    record: &mut Record,
) -> Result<Option<String>, Error> {
    let config = &shared.config;
    let script = route::resolve(
        &mount.dir,
        &mount.url,
        rest,
        &config.interpreters,
        config.dotfiles,
    )?;
    check_method(req)?;
    check_length(req, config.max_body)?;
    let queued = Instant::now();
    let _slot = shared
        .slots
        .acquire(config.proc_wait)
        .ok_or(Error::Overloaded("all script slots busy"))?;
    let _running = shared
        .stats
        .running(record.id, Model::Cgi, req, &script, conn.ends.remote);
    let body = prepare_body(shared, conn, req)?;
    let mut settings = relay_settings(shared, req, conn.reusable, script.nph, record.started);
    settings.timing.queue = queued.elapsed();
    let call = Call {
        shared,
        conn,
        req,
        script: &script,
        tag,
        id: record.id,
    };
    // Counted as it starts, so the status page's rate includes scripts still running.
    shared.stats.spawned();
    let ran = cgi::run(call, body, settings)?;
    record.extra = match &ran.exit {
        Some(e) => format!(
            " pid={} cpu={}us maxrss={}KiB",
            ran.pid,
            (e.user + e.system).as_micros(),
            e.max_rss_kib
        ),
        None => format!(" pid={}", ran.pid),
    };
    finish(shared, ran.outcome, tag, record)
}

/// Turns a relay outcome into the answer for `serve`.
fn finish(
    shared: &Shared,
    outcome: Outcome,
    tag: &str,
    record: &mut Record,
) -> Result<Option<String>, Error> {
    match outcome {
        Outcome::Sent {
            status,
            body_bytes,
            error,
            timing,
        } => {
            record.status = status;
            record.bytes = body_bytes;
            record.extra.push_str(&format!(" timing=\"{timing}\""));
            if let Some(e) = error {
                shared.log.log(&format!("{tag} response cut off: {e}"));
            }
            Ok(None)
        }
        Outcome::LocalRedirect(loc) => Ok(Some(loc)),
        Outcome::Failed(e) => Err(e),
    }
}

fn check_method(req: &Request) -> Result<(), Error> {
    // TRACE would echo credentials back to scripts' callers; CONNECT is for proxies.
    match req.method.as_str() {
        "TRACE" | "CONNECT" => Err(Error::MethodNotAllowed(req.method.clone())),
        _ => Ok(()),
    }
}

fn check_length(req: &Request, max_body: u64) -> Result<(), Error> {
    match req.framing {
        Framing::Length(n) if n > max_body => Err(BodyError::TooLarge.into()),
        _ => Ok(()),
    }
}

/// Gets the body ready for a script: a length-delimited body streams from the socket;
/// a chunked one is decoded and spooled first so CONTENT_LENGTH can be exact.
fn prepare_body(shared: &Shared, conn: &mut Conn, req: &Request) -> Result<Prepared, Error> {
    match req.framing {
        Framing::None => Ok(Prepared::None),
        Framing::Length(n) => Ok(Prepared::Socket(n)),
        Framing::Chunked => {
            if req.expect_continue && conn.pending().is_empty() {
                conn.write_all(response::CONTINUE)
                    .map_err(|e| Error::ClientGone(e.to_string()))?;
            }
            let spooled = spool_chunked(
                conn,
                shared.config.max_body,
                shared.config.spool_memory,
                shared.config.timeout,
            )?;
            conn.body_unread = false;
            Ok(match spooled {
                Spooled::Memory(v) => Prepared::Memory(v),
                Spooled::File(f, n) => Prepared::File(f, n),
            })
        }
    }
}

fn spool_chunked(
    conn: &mut Conn,
    max_body: u64,
    memory: usize,
    timeout: Duration,
) -> Result<Spooled, Error> {
    let deadline = Instant::now() + timeout;
    let mut decoder = ChunkedDecoder::with_limit(max_body);
    let mut spool = Spool::new(memory);
    let mut data = Vec::new();
    loop {
        let used = decoder.decode(conn.pending(), &mut data)?;
        conn.consume(used);
        if spool.len() + data.len() as u64 > max_body {
            return Err(BodyError::TooLarge.into());
        }
        spool
            .write(&data)
            .map_err(|e| BodyError::Spool(e.to_string()))?;
        data.clear();
        if decoder.is_done() {
            return spool
                .finish()
                .map_err(|e| BodyError::Spool(e.to_string()).into());
        }
        if conn.eof {
            return Err(BodyError::Truncated.into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !conn.wait_readable(left) {
            return Err(BodyError::TimedOut.into());
        }
        match conn.fill() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::ClientGone(e.to_string())),
        }
    }
}

/// The GET a local redirect turns into (RFC 3875 §6.2.2): same headers, no body.
fn redirected(req: &Request, location: String) -> Request {
    let mut next = req.clone();
    next.method = "GET".into();
    next.target = location;
    next.framing = Framing::None;
    next.expect_continue = false;
    next.headers.retain(|(n, _)| {
        ![
            "content-length",
            "content-type",
            "transfer-encoding",
            "expect",
        ]
        .iter()
        .any(|h| n.eq_ignore_ascii_case(h))
    });
    next
}

/// Logs `e` once and, unless the client is gone or a response already started,
/// sends its status page.
fn fail(shared: &Shared, conn: &mut Conn, req: &Request, e: Error, tag: &str, record: &mut Record) {
    let status = e.status();
    record.status = status;
    shared.log.log(&format!("{tag} {status} {e}"));
    if matches!(e, Error::ClientGone(_)) {
        conn.reusable = false;
        return;
    }
    if matches!(e, Error::Body(_)) || conn.body_unread {
        conn.reusable = false;
    }
    let page = error_page_with(
        status,
        e.public_detail().as_deref(),
        e.headers(),
        conn.reusable,
        req.version,
    );
    record.bytes = page.len() as u64;
    if conn.write_all(&page).is_err() {
        conn.reusable = false;
    }
}

fn access_log(shared: &Shared, conn: &Conn, req: &Request, record: &Record, started: Instant) {
    if !shared.log.access_enabled() {
        return;
    }
    let quoted = |name: &'static str| {
        req.header(name)
            .map(crate::logger::escape)
            .unwrap_or_else(|| "-".into())
    };
    shared.log.access(&format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {}us{}",
        conn.ends.remote.ip(),
        clf_time(SystemTime::now()),
        req.method,
        crate::logger::escape(req.target.as_bytes()),
        req.version.as_str(),
        record.status,
        record.bytes,
        quoted("referer"),
        quoted("user-agent"),
        started.elapsed().as_micros(),
        record.extra,
    ));
}

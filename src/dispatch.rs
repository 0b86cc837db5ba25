//! One request from head to access-log line: ask `route` what serves it, hand it to
//! that model, follow local redirects, and turn every error into its status page with
//! exactly one log line. This is the connection state machine's [`Handler`].

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::cgi::Cgi;
use crate::error::Error;
use crate::fastcgi::FastCgi;
use crate::file_cache;
use crate::http::body::{BodyError, Prepared, Spooled};
use crate::http::connection::{Handler, HeadFailure};
use crate::http::exchange::Exchange;
use crate::http::head::{Framing, Request, Version};
use crate::http::response::{self, error_page};
use crate::logger::{Logger, clf_time};
use crate::net::Endpoints;
use crate::paths;
use crate::relay::{self, Call, Outcome};
use crate::route::{Routes, Script, SharedPool, Target};
use crate::site::{self, Pages, Sent};
use crate::stats::{Model, Running, Stats};

/// Which FastCGI workers answer a script.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// `/fcgi-bin/NAME`: NAME's own pool.
    OwnPool,
    /// `--fcgi-ext EXT=PROGRAM`: the program's pool for every file of its extensions.
    Shared(&'a SharedPool),
    /// An external server (`--fastcgi`, `--fcgi-ext EXT=ADDR`), by name.
    Server(&'a str),
}

/// Local redirects followed for one request before giving up (Apache uses 10).
const MAX_REDIRECTS: usize = 10;

/// Per-request limits, and the static files' budget.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--timeout`: a script's run time.
    pub timeout: Duration,
    pub max_body: u64,
    pub max_header: usize,
    /// A chunked request body above this size is spooled to a temp file.
    pub spool_memory: usize,
    /// `--max-spill`.
    pub max_spill: u64,
    /// `--limit-output`.
    pub max_output: Option<u64>,
    /// `--file-cache`.
    pub file_cache: u64,
    pub server_timing: bool,
}

/// Everything a request may need, built once at start.
pub struct Dispatch {
    pub routes: Routes,
    pub cgi: Cgi,
    pub fastcgi: FastCgi,
    pub pages: Pages,
    pub limits: Limits,
    pub log: Arc<Logger>,
    pub stats: Arc<Stats>,
    next_id: AtomicU64,
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

impl Handler for Dispatch {
    async fn serve(&self, ex: &mut Exchange<'_>, req: Request) {
        let started = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
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
            match self.answer(ex, current, &tag, &mut record).await {
                Ok(None) => break,
                Ok(Some(location)) if hop < MAX_REDIRECTS => {
                    redirect = Some(redirected(current, location));
                }
                Ok(Some(_)) => {
                    self.fail(ex, Error::RedirectLoop, &tag, &mut record).await;
                    break;
                }
                Err(e) => {
                    self.fail(ex, e, &tag, &mut record).await;
                    break;
                }
            }
        }
        self.access_log(ex.ends(), &req, &record);
        self.stats.finished(record.model, record.status);
    }

    fn reject(&self, ends: Endpoints, why: &HeadFailure) -> Vec<u8> {
        let err = match why {
            HeadFailure::Invalid(e) => Error::Head(e.clone()),
            HeadFailure::TimedOut(d) => Error::HeadTimedOut(*d),
        };
        let status = err.status();
        self.log.log(&format!("[{}] {status} {err}", ends.remote));
        self.stats.finished(Model::None, status);
        if self.log.access_enabled() {
            self.log.access(&format!(
                "{} - - [{}] \"-\" {status} 0 \"-\" \"-\" 0us",
                ends.remote.ip(),
                clf_time(SystemTime::now())
            ));
        }
        let trusted = ends.remote.ip().is_loopback();
        error_page(
            status,
            err.public_detail(trusted).as_deref(),
            false,
            Version::Http11,
        )
    }

    fn idle_closed(&self, ends: Endpoints, idle: Duration) {
        self.log.log(&format!(
            "[{}] keep-alive connection idle for {} (--keepalive-timeout); closed",
            ends.remote,
            humantime::format_duration(idle)
        ));
    }
}

impl Dispatch {
    pub fn new(
        routes: Routes,
        cgi: Cgi,
        fastcgi: FastCgi,
        pages: Pages,
        limits: Limits,
        log: Arc<Logger>,
        stats: Arc<Stats>,
    ) -> Dispatch {
        Dispatch {
            routes,
            cgi,
            fastcgi,
            pages,
            limits,
            log,
            stats,
            next_id: AtomicU64::new(0),
        }
    }

    /// `Ok(Some(path))`: the script asked for a local redirect to `path`.
    async fn answer(
        &self,
        ex: &mut Exchange<'_>,
        req: &Request,
        tag: &str,
        record: &mut Record,
    ) -> Result<Option<String>, Error> {
        if let Some(s) = crate::options::asterisk(ex, req).await? {
            record.model = Model::Builtin;
            self.sent(s, tag, record);
            return Ok(None);
        }
        let (path, _) = req.path_and_query();
        let clean = paths::clean_path(path)?;
        let target = match self.routes.decide(&clean) {
            Ok(t) => t,
            Err(e) => {
                record.model = self.routes.owner(&clean);
                return Err(e.into());
            }
        };
        let sent = match target {
            Target::Cgi(script) => {
                record.model = Model::Cgi;
                return self.answer_cgi(ex, req, &script, tag, record).await;
            }
            Target::Pooled(script) => {
                record.model = Model::FastCgi;
                return self
                    .answer_fastcgi(ex, req, &script, Via::OwnPool, tag, record)
                    .await;
            }
            Target::Shared(pool, script) => {
                record.model = Model::FastCgi;
                return self
                    .answer_fastcgi(ex, req, &script, Via::Shared(&pool), tag, record)
                    .await;
            }
            Target::External(name, script) => {
                record.model = Model::FastCgi;
                return self
                    .answer_fastcgi(ex, req, &script, Via::Server(&name), tag, record)
                    .await;
            }
            Target::File(path) => {
                record.model = Model::Static;
                let cache = file_cache::Budget {
                    max: self.limits.file_cache,
                    log: &self.log,
                };
                site::file(ex, req, &path, &cache).await?
            }
            Target::AddSlash => {
                record.model = Model::Builtin;
                site::add_slash(ex, req, &clean).await?
            }
            Target::Landing => {
                record.model = Model::Builtin;
                self.pages.landing(ex, req).await?
            }
            Target::Status => {
                record.model = Model::Builtin;
                self.pages.status(ex, req).await?
            }
        };
        self.sent(sent, tag, record);
        Ok(None)
    }

    fn sent(&self, s: Sent, tag: &str, record: &mut Record) {
        (record.status, record.bytes) = (s.status, s.bytes);
        if let Some(e) = &s.error {
            self.log.log(&format!("{tag} response cut off: {e}"));
        }
    }

    /// The relay settings for one request (a fresh set per attempt).
    fn relay_settings(&self, raw: bool, started: Instant, tag: &str) -> relay::Settings {
        let l = &self.limits;
        relay::Settings {
            deadline: Instant::now() + l.timeout,
            timeout: l.timeout,
            max_header: l.max_header,
            raw,
            timing: relay::Timing {
                start: started,
                ..relay::Timing::new(l.server_timing && !raw)
            },
            max_output: l.max_output,
            max_spill: l.max_spill,
            log: self.log.clone(),
            tag: tag.to_owned(),
        }
    }

    fn running(model: Model, req: &Request, script: &Script, ex: &Exchange<'_>) -> Running {
        Running {
            model,
            method: req.method.clone(),
            path: req.path_and_query().0.to_owned(),
            script: script.script_name.clone(),
            client: ex.ends().remote,
            started: Instant::now(),
            pid: None,
        }
    }

    async fn answer_cgi(
        &self,
        ex: &mut Exchange<'_>,
        req: &Request,
        script: &Script,
        tag: &str,
        record: &mut Record,
    ) -> Result<Option<String>, Error> {
        check_method(req)?;
        check_length(req, self.limits.max_body)?;
        let queued = Instant::now();
        let slot = self.cgi.slot().await?;
        let _running = self
            .stats
            .running(record.id, Self::running(Model::Cgi, req, script, ex));
        let body = self.prepare_body(ex, req).await?;
        let mut settings = self.relay_settings(script.nph, record.started, tag);
        settings.timing.queue = queued.elapsed();
        let call = Call {
            ex,
            req,
            script,
            tag,
            id: record.id,
        };
        let ran = self.cgi.run(call, body, slot, settings).await?;
        record.extra = match &ran.exit {
            Some(e) => format!(
                " pid={} cpu={}us maxrss={}KiB",
                ran.pid,
                (e.user + e.system).as_micros(),
                e.max_rss_kib
            ),
            None => format!(" pid={}", ran.pid),
        };
        self.finish(ran.outcome, tag, record)
    }

    async fn answer_fastcgi(
        &self,
        ex: &mut Exchange<'_>,
        req: &Request,
        script: &Script,
        via: Via<'_>,
        tag: &str,
        record: &mut Record,
    ) -> Result<Option<String>, Error> {
        check_method(req)?;
        check_length(req, self.limits.max_body)?;
        let _running = self
            .stats
            .running(record.id, Self::running(Model::FastCgi, req, script, ex));
        let body = self.prepare_body(ex, req).await?;
        let started = record.started;
        let call = Call {
            ex,
            req,
            script,
            tag,
            id: record.id,
        };
        let settings = || self.relay_settings(false, started, tag);
        let served = match via {
            Via::OwnPool => self.fastcgi.run_pooled(call, None, body, &settings).await?,
            Via::Shared(pool) => {
                self.fastcgi
                    .run_pooled(call, Some(pool), body, &settings)
                    .await?
            }
            Via::Server(name) => {
                // Routes name only servers the configuration has.
                let backend = self.fastcgi.external(name).ok_or_else(|| {
                    Error::BackendDown(format!("no FastCGI server is configured for {name}"))
                })?;
                self.fastcgi
                    .run_external(call, backend, body, settings())
                    .await?
            }
        };
        record.extra = format!(" worker={}", served.pid);
        self.finish(served.outcome, tag, record)
    }

    /// Turns a relay outcome into the answer for `serve`, logging what went wrong
    /// after the head was out.
    fn finish(
        &self,
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
                excess,
            } => {
                record.status = status;
                record.bytes = body_bytes;
                // Writing into a String cannot fail.
                let _ = write!(record.extra, " timing=\"{timing}\"");
                if excess > 0 {
                    self.log.log(&format!(
                        "{tag} script wrote {excess} bytes past its own Content-Length; dropped"
                    ));
                }
                if let Some(e) = error {
                    self.log.log(&format!("{tag} response cut off: {e}"));
                }
                Ok(None)
            }
            Outcome::LocalRedirect(loc) => Ok(Some(loc)),
            Outcome::Failed(e) => Err(e),
        }
    }

    /// Gets the body ready for a script: a length-delimited body streams from the
    /// socket; a chunked one is decoded and spooled first so CONTENT_LENGTH is exact.
    async fn prepare_body(&self, ex: &mut Exchange<'_>, req: &Request) -> Result<Prepared, Error> {
        match req.framing {
            Framing::None => Ok(Prepared::None),
            Framing::Length(n) => Ok(Prepared::Socket(n)),
            Framing::Chunked => {
                let l = &self.limits;
                Ok(match ex.spool_body(l.max_body, l.spool_memory).await? {
                    Spooled::Memory(v) => Prepared::Memory(v),
                    Spooled::File(f, n) => Prepared::File(f, n),
                })
            }
        }
    }

    /// Logs `e` once and, unless the client is gone or an answer already started,
    /// sends its status page.
    async fn fail(&self, ex: &mut Exchange<'_>, e: Error, tag: &str, record: &mut Record) {
        let status = e.status();
        record.status = status;
        self.log.log(&format!("{tag} {status} {e}"));
        if matches!(e, Error::ClientGone(_) | Error::SendStalled(_)) {
            ex.broken();
            return;
        }
        if matches!(e, Error::Body(_)) {
            ex.body_failed();
        }
        if ex.answer_started() {
            ex.broken();
            return;
        }
        let trusted = ex.ends().remote.ip().is_loopback();
        let detail = e.public_detail(trusted);
        let (headers, body) = response::error_parts(status, detail.as_deref(), e.headers());
        match site::send_memory(ex, status, &headers, body.as_bytes()).await {
            Ok(s) => record.bytes = s.bytes,
            Err(_) => ex.broken(),
        }
    }

    fn access_log(&self, ends: Endpoints, req: &Request, record: &Record) {
        if !self.log.access_enabled() {
            return;
        }
        let quoted = |name: &'static str| {
            req.header(name)
                .map(crate::logger::escape)
                .unwrap_or_else(|| "-".into())
        };
        self.log.access(&format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {}us{}",
            ends.remote.ip(),
            clf_time(SystemTime::now()),
            req.method,
            crate::logger::escape(req.target.as_bytes()),
            req.version.as_str(),
            record.status,
            record.bytes,
            quoted("referer"),
            quoted("user-agent"),
            record.started.elapsed().as_micros(),
            record.extra,
        ));
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

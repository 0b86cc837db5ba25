//! Every way a request can fail, and the one place that maps each to an HTTP status.

use std::fmt;
use std::io;

use std::time::Duration;

use crate::gateway::response::ResponseError;
use crate::http::body::BodyError;
use crate::http::head::HeadError;
use crate::http::send::SendStall;
use crate::paths::PathError;
use crate::spawn::SpawnError;
use crate::static_files::StaticError;

#[derive(Debug)]
pub enum Error {
    Head(HeadError),
    /// The head did not arrive within `--head-timeout` of its first byte.
    HeadTimedOut(Duration),
    Body(BodyError),
    Path(PathError),
    MethodNotAllowed(String),
    /// A static file (or one of the server's own pages) refused the request.
    Static(StaticError),
    /// A budget is used up (no free script slot or worker within the wait bound); the
    /// text names the flag.
    Overloaded(String),
    Spawn(SpawnError),
    /// The script's output is not a valid CGI response.
    BadOutput(ResponseError),
    /// The script died or broke its protocol while answering.
    ScriptFailed(String),
    /// No external FastCGI backend accepted a connection.
    BackendDown(String),
    /// A FastCGI worker went away without answering.
    WorkerLost(String),
    /// A worker program keeps failing; it is not restarted for a while.
    WorkerFailing {
        why: String,
        retry_after: Duration,
    },
    /// The script ran into one of the `--limit-*` settings (named in the text).
    LimitExceeded(String),
    /// The script ran past `--timeout`.
    Timeout(Duration),
    /// The client went away.
    ClientGone(String),
    /// The client stopped reading, or reads too slowly (`--send-timeout`,
    /// `--min-send-rate`).
    SendStalled(SendStall),
    RedirectLoop,
    Internal(io::Error),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::Head(e) => match e {
                HeadError::TooLarge | HeadError::TooManyHeaders => 431,
                HeadError::VersionNotSupported => 505,
                HeadError::ExpectationFailed => 417,
                // RFC 9110 §9.1: a method we do not implement.
                HeadError::UnsupportedTransferCoding | HeadError::MethodTooLong => 501,
                HeadError::Malformed(_)
                | HeadError::MissingHost
                | HeadError::BadHost
                | HeadError::BadTargetHost
                | HeadError::AmbiguousFraming
                | HeadError::BadTransferEncoding(_)
                | HeadError::BadContentLength => 400,
            },
            Error::HeadTimedOut(_) => 408,
            Error::Body(e) => match e {
                BodyError::TooLarge => 413,
                BodyError::TimedOut(_) | BodyError::TooSlow(_) => 408,
                BodyError::Malformed(_) | BodyError::Truncated => 400,
                BodyError::Spool(_) => 500,
            },
            Error::Path(e) => match e {
                PathError::BadPath(_) => 400,
                PathError::NotFound | PathError::Hidden => 404,
                PathError::Forbidden(_) => 403,
            },
            Error::MethodNotAllowed(_) => 405,
            Error::Static(StaticError::MethodNotAllowed(_)) => 405,
            Error::Static(StaticError::RangeNotSatisfiable(_)) => 416,
            Error::Static(StaticError::PreconditionFailed) => 412,
            Error::Overloaded(_) | Error::WorkerFailing { .. } => 503,
            Error::Spawn(SpawnError::PermissionDenied(_)) => 403,
            Error::Spawn(_) => 500,
            Error::BadOutput(_)
            | Error::ScriptFailed(_)
            | Error::WorkerLost(_)
            | Error::LimitExceeded(_)
            | Error::BackendDown(_) => 502,
            Error::Timeout(_) => 504,
            // Nobody hears these; the access log shows 408 for a client that would
            // not read, as for one that would not send.
            Error::ClientGone(_) => 400,
            Error::SendStalled(_) => 408,
            Error::RedirectLoop => 500,
            Error::Internal(_) => 500,
        }
    }

    /// What the client may read: its own mistakes, and, when it is `trusted` (on
    /// this machine), why a worker program cannot serve, so whoever dropped it into
    /// cgi-bin/ learns why (its last words on stderr included). Other server-side
    /// causes stay in the log.
    pub fn public_detail(&self, trusted: bool) -> Option<String> {
        let worker = matches!(
            self,
            Error::WorkerLost(_) | Error::WorkerFailing { .. } | Error::LimitExceeded(_)
        );
        (self.status() < 500 || worker && trusted).then(|| self.to_string())
    }

    /// Headers the status page of this error must carry (RFC 9110 §15.5.6, §15.5.17).
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Error::Static(StaticError::MethodNotAllowed(_)) => {
                vec![("Allow".to_owned(), b"GET, HEAD".to_vec())]
            }
            Error::Static(StaticError::RangeNotSatisfiable(len)) => vec![(
                "Content-Range".to_owned(),
                format!("bytes */{len}").into_bytes(),
            )],
            // RFC 9110 §10.2.3: when to try again, in whole seconds (rounded up).
            Error::WorkerFailing { retry_after, .. } => vec![(
                "Retry-After".to_owned(),
                retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
                    .max(1)
                    .to_string()
                    .into_bytes(),
            )],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Head(e) => e.fmt(f),
            Error::HeadTimedOut(d) => write!(
                f,
                "request head not received within {} (--head-timeout)",
                humantime::format_duration(*d)
            ),
            Error::Body(e) => e.fmt(f),
            Error::Path(e) => e.fmt(f),
            Error::MethodNotAllowed(m) => write!(f, "method {m} not allowed here"),
            Error::Static(e) => e.fmt(f),
            Error::Overloaded(what) => write!(f, "overloaded: {what}"),
            Error::Spawn(e) => e.fmt(f),
            Error::BadOutput(e) => write!(f, "bad script output: {e}"),
            Error::ScriptFailed(why) => write!(f, "script failed: {why}"),
            Error::WorkerLost(why) => write!(f, "worker lost: {why}"),
            Error::WorkerFailing { why, .. } => f.write_str(why),
            Error::BackendDown(why) => write!(f, "FastCGI backend down: {why}"),
            Error::LimitExceeded(which) => write!(f, "script exceeded {which}"),
            Error::Timeout(d) => write!(
                f,
                "script timed out after {} (--timeout)",
                humantime::format_duration(*d)
            ),
            Error::ClientGone(why) => write!(f, "client gone: {why}"),
            Error::SendStalled(why) => write!(f, "closing: {why}"),
            Error::RedirectLoop => f.write_str("too many local redirects"),
            Error::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for Error {}

macro_rules! from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(e)
            }
        }
    )*};
}

from!(HeadError => Head, BodyError => Body, PathError => Path, SpawnError => Spawn,
      ResponseError => BadOutput, StaticError => Static);

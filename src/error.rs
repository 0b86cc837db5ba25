//! Every way a request can fail, and the one place that maps each to an HTTP status.

use std::fmt;
use std::io;

use crate::cgi::spawn::SpawnError;
use crate::gateway::response::ResponseError;
use crate::http::body::BodyError;
use crate::http::head::HeadError;
use crate::route::RouteError;
use crate::static_files::StaticError;

#[derive(Debug)]
pub enum Error {
    Head(HeadError),
    Body(BodyError),
    Route(RouteError),
    MethodNotAllowed(String),
    /// A static file (or one of the server's own pages) refused the request.
    Static(StaticError),
    /// No free script slot (or worker) within the wait bound.
    Overloaded(&'static str),
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
    WorkerFailing(String),
    /// The script ran into one of the `--limit-*` settings (named in the text).
    LimitExceeded(String),
    /// The script ran past `--timeout`.
    Timeout,
    /// The client went away or stopped reading.
    ClientGone(String),
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
            Error::Body(e) => match e {
                BodyError::TooLarge => 413,
                BodyError::TimedOut => 408,
                BodyError::Malformed(_) | BodyError::Truncated => 400,
                BodyError::Spool(_) => 500,
            },
            Error::Route(e) => match e {
                RouteError::BadPath(_) => 400,
                RouteError::NotFound | RouteError::Hidden => 404,
                RouteError::Forbidden(_) => 403,
            },
            Error::MethodNotAllowed(_) => 405,
            Error::Static(StaticError::MethodNotAllowed(_)) => 405,
            Error::Static(StaticError::RangeNotSatisfiable(_)) => 416,
            Error::Static(StaticError::PreconditionFailed) => 412,
            Error::Overloaded(_) => 503,
            Error::Spawn(SpawnError::PermissionDenied(_)) => 403,
            Error::Spawn(_) => 500,
            Error::BadOutput(_)
            | Error::ScriptFailed(_)
            | Error::WorkerLost(_)
            | Error::WorkerFailing(_)
            | Error::LimitExceeded(_)
            | Error::BackendDown(_) => 502,
            Error::Timeout => 504,
            Error::ClientGone(_) => 400,
            Error::RedirectLoop => 500,
            Error::Internal(_) => 500,
        }
    }

    /// What the client may read: its own mistakes, and why a worker program cannot
    /// serve (so whoever dropped it into cgi-bin/ learns why). Other server-side
    /// causes stay in the log.
    pub fn public_detail(&self) -> Option<String> {
        let worker = matches!(
            self,
            Error::WorkerLost(_) | Error::WorkerFailing(_) | Error::LimitExceeded(_)
        );
        (self.status() < 500 || worker).then(|| self.to_string())
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
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Head(e) => e.fmt(f),
            Error::Body(e) => e.fmt(f),
            Error::Route(e) => e.fmt(f),
            Error::MethodNotAllowed(m) => write!(f, "method {m} not allowed here"),
            Error::Static(e) => e.fmt(f),
            Error::Overloaded(what) => write!(f, "overloaded: {what}"),
            Error::Spawn(e) => e.fmt(f),
            Error::BadOutput(e) => write!(f, "bad script output: {e}"),
            Error::ScriptFailed(why) => write!(f, "script failed: {why}"),
            Error::WorkerLost(why) => write!(f, "worker lost: {why}"),
            Error::WorkerFailing(why) => f.write_str(why),
            Error::BackendDown(why) => write!(f, "FastCGI backend down: {why}"),
            Error::LimitExceeded(which) => write!(f, "script exceeded {which}"),
            Error::Timeout => f.write_str("script timed out"),
            Error::ClientGone(why) => write!(f, "client gone: {why}"),
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

from!(HeadError => Head, BodyError => Body, RouteError => Route, SpawnError => Spawn,
      ResponseError => BadOutput, StaticError => Static);

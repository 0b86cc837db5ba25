//! FastCGI, the persistent-worker model: the client side of one request, the worker
//! pool and external backends. The wire format and the application side for
//! dual-mode Rust programs are the `fastcgi-app` crate (`crates/fastcgi-app`).

pub mod client;
pub mod external;
pub mod pool;
pub use fastcgi_app::record;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::dispatch::Call;
use crate::error::Error;
use crate::gateway::env::{self, MetaVars};
use crate::http::body::Prepared;
use crate::relay::{self, BodyIn, Outcome};
use crate::route::Script;
use crate::script_log::ScriptLog;
use client::{Ending, Exchange};
use external::External;
use pool::Verdict;

/// After a client leaves mid-request, how long the worker gets to end the aborted one.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// What a worker request produced, for the access log.
pub struct Served {
    pub outcome: Outcome,
    /// The worker's pid (0 for an external backend).
    pub pid: i32,
    /// Whether the worker was started for this request.
    pub cold: bool,
}

/// The body as it will travel in STDIN records, and the PARAMS (the CGI
/// meta-variables, with CONTENT_LENGTH from the prepared body).
fn body_and_params(call: &Call<'_>, body: Prepared) -> (BodyIn, MetaVars) {
    let (body, length) = body_in(body);
    let params = env::meta_variables(
        call.req,
        call.script,
        call.conn.ends,
        length,
        &call.shared.site,
    );
    (body, params)
}

/// How the body travels as STDIN records, and CONTENT_LENGTH.
fn body_in(body: Prepared) -> (BodyIn, Option<u64>) {
    match body {
        Prepared::None => (BodyIn::None, None),
        Prepared::Socket(n) => (BodyIn::Socket(n), Some(n)),
        Prepared::Memory(v) => {
            let n = v.len() as u64;
            (BodyIn::Memory(v), Some(n))
        }
        Prepared::File(f, n) => (BodyIn::File(f, n, Vec::new()), Some(n)),
    }
}

/// The program that becomes the worker, and its arguments.
fn command(script: &Script) -> (PathBuf, Vec<PathBuf>) {
    match &script.interpreter {
        Some(interp) => (interp.clone(), vec![script.file.clone()]),
        None => (script.file.clone(), Vec::new()),
    }
}

/// Serves `req` with a worker from `script`'s pool. A request whose kept connection
/// turned out dead before it was sent goes to another worker, once.
pub fn run_pooled(
    call: Call<'_>,
    body: Prepared,
    settings: &dyn Fn() -> relay::Settings,
) -> Result<Served, Error> {
    let (mut body, params) = body_and_params(&call, body);
    let Call {
        shared,
        conn,
        req,
        script,
        tag,
        id,
    } = call;
    let pool = shared
        .pools
        .pool(&script.script_name, &script.file, command(script));
    let mut retried = false;
    loop {
        let asked = Instant::now();
        let mut worker = pool.acquire()?;
        shared.stats.set_pid(id, worker.pid);
        let cold = worker.served == 0;
        let mut settings = settings();
        // A cold worker's start is its own phase, not queueing.
        settings.timing.spawn = if cold {
            worker.spawn_took
        } else {
            Duration::ZERO
        };
        settings.timing.queue = asked.elapsed().saturating_sub(settings.timing.spawn);
        let log = ScriptLog::new(format!("{tag} {}", worker.tag), shared.log.clone());
        let has_body = !matches!(body, BodyIn::None);
        let body_before = body.left();
        let mut ex = Exchange::new(&mut worker.stream, &params, true, cold, has_body, log)?;
        let outcome = relay::run(conn, req, &mut body, &mut ex, settings);
        // Only a request the worker never read, with its body still in hand, may go
        // to another worker: anything else could have been acted on.
        let replayable = body.left() == body_before;
        let ending = if client_left(&outcome) {
            ex.abort(ABORT_WAIT)
        } else {
            ex.ending()
        };
        if let Some(values) = ex.values.take() {
            worker.values = Some(values);
        }
        drop(ex);
        let pid = worker.pid;
        match (ending, outcome) {
            (Ending::Clean, outcome) => {
                pool.release(worker, Verdict::Healthy, None);
                return Ok(Served { outcome, pid, cold });
            }
            (Ending::LostBeforeUse, Outcome::Failed(Error::WorkerLost(why)))
                if !cold && !retried && replayable =>
            {
                shared.log.log(&format!(
                    "{tag} worker pid {pid} {why}; trying another worker"
                ));
                pool.release(worker, Verdict::Retire, None);
                retried = true;
            }
            (_, Outcome::Failed(Error::WorkerLost(why))) if cold => {
                let why = worker.failure_reason(&why);
                pool.release(worker, Verdict::Failed, Some(&why));
                return Ok(Served {
                    outcome: Outcome::Failed(Error::WorkerLost(why)),
                    pid,
                    cold,
                });
            }
            (_, outcome) => {
                pool.release(worker, Verdict::Retire, None);
                return Ok(Served { outcome, pid, cold });
            }
        }
    }
}

fn client_left(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed(Error::ClientGone(_))
            | Outcome::Sent {
                error: Some(Error::ClientGone(_)),
                ..
            }
    )
}

/// Serves `req` with an external FastCGI server (`--fastcgi NAME=ADDR`), one
/// connection per request.
pub fn run_external(
    call: Call<'_>,
    backend: &External,
    body: Prepared,
    settings: &dyn Fn() -> relay::Settings,
) -> Result<Served, Error> {
    let (mut body, params) = body_and_params(&call, body);
    let Call {
        shared,
        conn,
        req,
        tag,
        ..
    } = call;
    let mut stream = backend.connect(&shared.log)?;
    let log = ScriptLog::new(
        format!("{tag} [fcgi {}]", backend.name()),
        shared.log.clone(),
    );
    let has_body = !matches!(body, BodyIn::None);
    let mut ex = Exchange::new(&mut stream, &params, false, false, has_body, log)?;
    let outcome = relay::run(conn, req, &mut body, &mut ex, settings());
    if client_left(&outcome) {
        ex.abort(ABORT_WAIT);
    }
    Ok(Served {
        outcome,
        pid: 0,
        cold: false,
    })
}

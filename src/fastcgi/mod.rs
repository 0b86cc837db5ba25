//! FastCGI, the persistent-worker model: the client side of one request, the worker
//! pool and external backends. The wire format and the application side for
//! dual-mode Rust programs are the `fastcgi-app` crate (`crates/fastcgi-app`).

pub mod client;
pub mod external;
pub mod pool;
pub use fastcgi_app::record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::gateway::env::{self, MetaVars, Site};
use crate::http::body::Prepared;
use crate::logger::Logger;
use crate::relay::{self, BodyIn, Call, Outcome};
use crate::route::{Script, SharedPool};
use crate::script_log::ScriptLog;
use crate::stats::Stats;
use client::{Ending, Session};
use external::External;
use pool::{Pools, Verdict};

/// After a client leaves mid-request, how long the worker gets to end the aborted one.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// What the FastCGI model needs from the server.
pub struct FastCgi {
    pub site: Site,
    pub pools: Arc<Pools>,
    /// `--fastcgi NAME=ADDR`: servers someone else runs, by script name.
    pub external: Vec<External>,
    pub log: Arc<Logger>,
    pub stats: Arc<Stats>,
}

/// What a worker request produced, for the access log.
pub struct Served {
    pub outcome: Outcome,
    /// The worker's pid (0 for an external backend).
    pub pid: i32,
    /// Whether the worker was started for this request.
    pub cold: bool,
}

/// How the body travels as STDIN records, and CONTENT_LENGTH.
fn body_in(body: Prepared) -> (BodyIn, Option<u64>) {
    match body {
        Prepared::None => (BodyIn::None, None),
        Prepared::Socket(n) => (BodyIn::Socket, Some(n)),
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

impl FastCgi {
    /// The body as it will travel in STDIN records, and the PARAMS (the CGI
    /// meta-variables, with CONTENT_LENGTH from the prepared body).
    fn body_and_params(&self, call: &Call<'_, '_>, body: Prepared) -> (BodyIn, MetaVars) {
        let (body, length) = body_in(body);
        let params = env::meta_variables(call.req, call.script, call.ex.ends(), length, &self.site);
        (body, params)
    }

    /// Serves the request with a worker from the script's own pool, or from the
    /// `shared` pool of its extension's program. A request whose kept connection
    /// turned out dead before it was sent goes to another worker, once.
    pub async fn run_pooled(
        &self,
        call: Call<'_, '_>,
        shared: Option<&SharedPool>,
        body: Prepared,
        settings: &dyn Fn() -> relay::Settings,
    ) -> Result<Served, Error> {
        let (mut body, params) = self.body_and_params(&call, body);
        let Call {
            ex,
            script,
            tag,
            id,
            ..
        } = call;
        let pool = match shared {
            // No argument: the program serves whichever file SCRIPT_FILENAME names.
            Some(p) => {
                self.pools
                    .pool(&p.name, &p.program, &p.cwd, (p.program.clone(), Vec::new()))
            }
            None => self.pools.pool(
                &script.script_name,
                &script.file,
                script.file.parent().unwrap_or(Path::new("/")),
                command(script),
            ),
        };
        let mut retried = false;
        loop {
            let asked = Instant::now();
            let mut worker = pool.acquire().await?;
            self.stats.set_pid(id, worker.pid);
            let cold = worker.served == 0;
            let mut settings = settings();
            // A cold worker's start is its own phase, not queueing.
            settings.timing.spawn = if cold {
                worker.spawn_took
            } else {
                Duration::ZERO
            };
            settings.timing.queue = asked.elapsed().saturating_sub(settings.timing.spawn);
            let log = ScriptLog::new(format!("{tag} {}", worker.tag), self.log.clone());
            let has_body = !matches!(body, BodyIn::None);
            let body_before = body.left(ex);
            let mut session = Session::new(&mut worker.stream, &params, true, cold, has_body, log)?;
            let outcome = relay::run(ex, &mut body, &mut session, settings).await;
            // Only a request the worker never read, with its body still in hand, may go
            // to another worker: anything else could have been acted on.
            let replayable = body.left(ex) == body_before;
            let ending = if outcome.client_left() {
                session.abort(ABORT_WAIT).await
            } else {
                session.ending()
            };
            if let Some(values) = session.values.take() {
                worker.values = Some(values);
            }
            drop(session);
            let pid = worker.pid;
            match (ending, outcome) {
                (Ending::Clean, outcome) => {
                    pool.release(worker, Verdict::Healthy, None);
                    return Ok(Served { outcome, pid, cold });
                }
                (Ending::LostBeforeUse, Outcome::Failed(Error::WorkerLost(why)))
                    if !cold && !retried && replayable =>
                {
                    self.log.log(&format!(
                        "{tag} worker pid {pid} {why}; trying another worker"
                    ));
                    pool.release(worker, Verdict::Retire, None);
                    retried = true;
                }
                (_, Outcome::Failed(Error::WorkerLost(why))) if cold => {
                    let why = worker.failure_reason(&why).await;
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

    /// The external server `--fastcgi` names `name` after.
    pub fn external(&self, name: &str) -> Option<&External> {
        self.external.iter().find(|e| e.name() == name)
    }

    /// Serves the request with an external FastCGI server (`--fastcgi NAME=ADDR`), one
    /// connection per request.
    pub async fn run_external(
        &self,
        call: Call<'_, '_>,
        backend: &External,
        body: Prepared,
        settings: relay::Settings,
    ) -> Result<Served, Error> {
        let (mut body, params) = self.body_and_params(&call, body);
        let Call { ex, tag, .. } = call;
        let mut stream = backend.connect(&self.log).await?;
        let log = ScriptLog::new(format!("{tag} [fcgi {}]", backend.name()), self.log.clone());
        let has_body = !matches!(body, BodyIn::None);
        let mut session = Session::new(&mut stream, &params, false, false, has_body, log)?;
        let outcome = relay::run(ex, &mut body, &mut session, settings).await;
        if outcome.client_left() {
            session.abort(ABORT_WAIT).await;
        }
        Ok(Served {
            outcome,
            pid: 0,
            cold: false,
        })
    }
}

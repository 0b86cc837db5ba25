//! Classic CGI: one process per request. Builds the environment, starts the script,
//! hands its pipes and pidfd to the relay (all watched by the event loop), and makes
//! sure the process group is gone afterwards. A script slot (`--max-procs`) is held
//! until the process has exited, even when it outlives its answer.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::gateway::env::{self, Site};
use crate::http::body::Prepared;
use crate::limits::{Enforcer, ProcessLimits};
use crate::logger::Logger;
use crate::process::{Child, ExitInfo, Registry};
use crate::relay::{self, Backend, BodyIn, Call, Outcome, Output};
use crate::script_log::ScriptLog;
use crate::spawn::{self, Input, Job, SpawnMode};
use crate::stats::Stats;
use crate::sys;

/// After the script exits, how long a grandchild may keep its stdout open.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// After stdout ends, how long we wait for the script to exit (it usually exits right
/// after) before its answer is taken as complete and the process is left to linger.
const EXIT_WAIT: Duration = Duration::from_millis(100);
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// What the CGI model needs from the server.
pub struct Cgi {
    pub site: Site,
    pub spawn: SpawnMode,
    pub limits: Arc<Enforcer>,
    pub children: Arc<Registry>,
    pub log: Arc<Logger>,
    pub stats: Arc<Stats>,
    /// `--max-procs`: scripts alive at once, lingering ones included.
    pub slots: Arc<Semaphore>,
    pub max_procs: usize,
    /// How long a request waits for a slot before 503.
    pub slot_wait: Duration,
}

/// What one CGI run produced, for the access log.
pub struct Ran {
    pub outcome: Outcome,
    pub pid: i32,
    /// `None` when the script outlived its answer and is reaped later.
    pub exit: Option<ExitInfo>,
}

impl Cgi {
    /// Waits (in the loop) for a script slot, up to `--max-procs`' wait bound.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        let wait = self.slots.clone().acquire_owned();
        match tokio::time::timeout(self.slot_wait, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::Overloaded(format!(
                "all {} script slots busy for {} (--max-procs)",
                self.max_procs,
                humantime::format_duration(self.slot_wait)
            ))),
        }
    }

    /// Runs `call.script` for its request under `slot`. The caller has checked the
    /// method and body size.
    pub async fn run(
        &self,
        call: Call<'_, '_>,
        body: Prepared,
        slot: OwnedSemaphorePermit,
        mut settings: relay::Settings,
    ) -> Result<Ran, Error> {
        let Call {
            ex,
            req,
            script,
            tag,
            id,
        } = call;
        let (input, mut body_in, length) = match body {
            Prepared::None => (Input::Null, BodyIn::None, None),
            Prepared::Socket(0) => (Input::Null, BodyIn::None, Some(0)),
            Prepared::Socket(n) => (Input::Pipe, BodyIn::Socket, Some(n)),
            Prepared::Memory(v) => {
                let n = v.len() as u64;
                (Input::Pipe, BodyIn::Memory(v), Some(n))
            }
            Prepared::File(f, n) => (Input::File(f), BodyIn::None, Some(n)),
        };
        let env = env::meta_variables(req, script, ex.ends(), length, &self.site);
        let (_, query) = req.path_and_query();
        let words = env::argv_from_query(&req.method, query);
        let mut args: Vec<OsString> = Vec::new();
        let program = match &script.interpreter {
            Some(interp) => {
                args.push(script.file.clone().into_os_string());
                interp.clone()
            }
            None => script.file.clone(),
        };
        args.extend(words.iter().map(|w| OsStr::from_bytes(w).to_owned()));
        let cwd = script.file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let limits = self.limits.for_process().map_err(Error::Internal)?;
        let spawn_started = Instant::now();
        // Counted as it starts, so the status page's rate includes scripts running now.
        self.stats.spawned();
        let job = Job {
            program,
            args,
            env,
            cwd,
            input,
            limits,
        };
        let (spawned, limits) = spawn::start_off_loop(self.spawn, job).await?;
        settings.timing.spawn = spawn_started.elapsed();
        let pid = spawned.pid;
        self.stats.set_pid(id, pid);
        let child = Child::adopt_since(pid, self.children.clone(), spawn_started);
        let mut backend = CgiScript {
            stdin: spawned
                .stdin
                .map(sender)
                .transpose()
                .map_err(Error::Internal)?,
            stdout: Some(receiver(spawned.stdout).map_err(Error::Internal)?),
            stdout_ended: None,
            stderr: Some(receiver(spawned.stderr).map_err(Error::Internal)?),
            child,
            log: ScriptLog::new(format!("{tag} pid {pid}"), self.log.clone()),
            exited_at: None,
            exit_seen: false,
            limits,
            slot,
        };
        settings.max_output = self.limits.limits.output;
        let deadline = settings.deadline;
        let outcome = relay::run(ex, &mut body_in, &mut backend, settings).await;
        let (exit, limits) = backend.finish(outcome.is_abort(), deadline).await;
        let over = match (exit, &limits) {
            (Some(e), Some(l)) => self.limits.verdict(l, e.signal, e.user + e.system),
            _ => None,
        };
        // Named in the request's one error line, or in a line of its own if it answered.
        let outcome = match (over, outcome) {
            (Some(which), Outcome::Failed(_)) => Outcome::Failed(Error::LimitExceeded(which)),
            (
                Some(which),
                Outcome::Sent {
                    status,
                    body_bytes,
                    error: Some(_),
                    timing,
                    excess,
                },
            ) => Outcome::Sent {
                status,
                body_bytes,
                error: Some(Error::LimitExceeded(which)),
                timing,
                excess,
            },
            (Some(which), outcome) => {
                self.log.log(&format!("{tag} pid {pid} ran into {which}"));
                outcome
            }
            (None, outcome) => outcome,
        };
        Ok(Ran { outcome, pid, exit })
    }
}

fn sender(fd: OwnedFd) -> io::Result<pipe::Sender> {
    sys::set_nonblocking(fd.as_fd())?;
    pipe::Sender::from_owned_fd_unchecked(fd)
}

fn receiver(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    sys::set_nonblocking(fd.as_fd())?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

struct CgiScript {
    child: Child,
    stdin: Option<pipe::Sender>,
    stdout: Option<pipe::Receiver>,
    /// When stdout reached its end (the answer may be complete before the exit).
    stdout_ended: Option<Instant>,
    stderr: Option<pipe::Receiver>,
    log: ScriptLog,
    exited_at: Option<Instant>,
    /// The loop said the pidfd is readable: the process has exited.
    exit_seen: bool,
    /// Its cgroup lives as long as the process.
    limits: ProcessLimits,
    /// Freed when the process is gone, not when its answer is.
    slot: OwnedSemaphorePermit,
}

impl Backend for CgiScript {
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        want_input: bool,
        want_output: bool,
    ) -> Poll<()> {
        let mut ready = false;
        if want_input && let Some(stdin) = &self.stdin {
            ready |= stdin.poll_write_ready(cx).is_ready();
        }
        if want_output
            && self.stdout_ended.is_none()
            && let Some(out) = &self.stdout
        {
            ready |= out.poll_read_ready(cx).is_ready();
        }
        if let Some(err) = &self.stderr {
            ready |= err.poll_read_ready(cx).is_ready();
        }
        if self.exited_at.is_none() && self.child.poll_exit(cx).is_ready() {
            self.exit_seen = true;
            ready = true;
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn write_input(&mut self, data: &[u8]) -> io::Result<usize> {
        match &self.stdin {
            Some(f) => f.try_write(data),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn close_input(&mut self) {
        self.stdin = None;
    }

    fn read_output(&mut self, buf: &mut [u8]) -> Result<Output, Error> {
        let Some(out) = &self.stdout else {
            return Ok(Output::End);
        };
        if self.stdout_ended.is_none() {
            match out.try_read(buf) {
                Ok(0) => self.stdout_ended = Some(Instant::now()),
                Ok(n) => return Ok(Output::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The script is gone but something it started still holds stdout.
                    if self.exited_at.is_some_and(|t| t.elapsed() >= EXIT_GRACE) {
                        self.stdout = None;
                        return Ok(Output::End);
                    }
                    return Ok(Output::Pending);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Output::Pending),
                Err(e) => return Err(Error::ScriptFailed(format!("reading stdout: {e}"))),
            }
        }
        // Stdout ended. A script killed mid-answer must not have its output passed off
        // as complete: the answer then keeps its final chunk back and closes.
        if self.child.has_exited() {
            self.stdout = None;
            return match self.child.killed_by() {
                Some(sig) => Err(Error::ScriptFailed(format!("killed by signal {sig}"))),
                None => Ok(Output::End),
            };
        }
        if self.stdout_ended.is_some_and(|t| t.elapsed() >= EXIT_WAIT) {
            // Still running with stdout closed: the answer is complete; the process
            // lingers and is seen to later.
            self.stdout = None;
            return Ok(Output::End);
        }
        // Its exit (a pidfd event, usually a moment after the end of stdout) says
        // whether the output ended well.
        Ok(Output::Ending)
    }

    fn housekeeping(&mut self) {
        self.drain_stderr();
        // Asked of the kernel only once the loop saw the exit (or, without a pidfd,
        // on every turn): one system call per script, not one per turn.
        let may_have_exited = self.exit_seen || self.child.exit_poll_interval().is_some();
        if self.exited_at.is_none() && may_have_exited && self.child.has_exited() {
            self.exited_at = Some(Instant::now());
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        let mut at = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a: Instant| a.min(t)));
        if self.stdout.is_some() {
            if let Some(t) = self.exited_at {
                earliest(t + EXIT_GRACE);
            }
            if let Some(t) = self.stdout_ended {
                earliest(t + EXIT_WAIT);
            }
        }
        if self.exited_at.is_none()
            && let Some(every) = self.child.exit_poll_interval()
        {
            earliest(Instant::now() + every);
        }
        at
    }
}

impl CgiScript {
    fn drain_stderr(&mut self) {
        let mut buf = [0u8; 8192];
        // Bounded per turn so a flood cannot starve the rest of the loop.
        for _ in 0..16 {
            let Some(err) = &self.stderr else { return };
            match err.try_read(&mut buf) {
                Ok(0) => self.stderr = None,
                Ok(n) => self.log.write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Ends the process: killed on abort, reaped if done, else left to linger in the
    /// loop (holding its slot) until it exits or its deadline passes. Gives back the
    /// exit and the limits to judge it by, when the process is already gone.
    async fn finish(
        mut self,
        abort: bool,
        deadline: Instant,
    ) -> (Option<ExitInfo>, Option<ProcessLimits>) {
        self.stdin = None;
        self.stdout = None;
        let exit = if abort {
            self.child.terminate(KILL_GRACE).await
        } else if self.child.wait_exit(EXIT_WAIT).await {
            self.drain_stderr();
            self.child.reap()
        } else {
            tokio::task::spawn_local(self.linger(deadline));
            return (None, None);
        };
        self.drain_stderr();
        self.log_exit(&exit);
        let CgiScript { limits, slot, .. } = self;
        drop(slot);
        (Some(exit), Some(limits))
    }

    /// For a script that closed stdout but kept running: wait for it (draining its
    /// stderr) until its deadline, then kill it.
    async fn linger(mut self, deadline: Instant) {
        let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
        while !self.child.has_exited() && Instant::now() < deadline {
            if let Some(every) = self.child.exit_poll_interval() {
                timer
                    .as_mut()
                    .reset((Instant::now() + every).min(deadline).into());
            }
            std::future::poll_fn(|cx| {
                let stderr = self
                    .stderr
                    .as_ref()
                    .is_some_and(|e| e.poll_read_ready(cx).is_ready());
                let exited = self.child.poll_exit(cx).is_ready();
                let timed_out = timer.as_mut().poll(cx).is_ready();
                if stderr || exited || timed_out {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            self.drain_stderr();
        }
        let exit = self.child.terminate(KILL_GRACE).await;
        self.drain_stderr();
        self.log_exit(&exit);
    }

    fn log_exit(&mut self, exit: &ExitInfo) {
        self.log.finish();
        if exit.code != 0 {
            self.log.log_line(&format!("{} {exit}", self.log.tag()));
        }
    }
}

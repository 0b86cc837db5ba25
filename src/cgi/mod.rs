//! Classic CGI: one process per request. Builds the environment, starts the script,
//! hands its pipes to the relay, and makes sure the process group is gone afterwards.

pub mod process;
pub mod spawn;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dispatch::Call;
use crate::error::Error;
use crate::gateway::env;
use crate::http::body::Prepared;
use crate::relay::{self, Backend, BodyIn, Outcome, Output};
use crate::script_log::ScriptLog;
use crate::sys::{self, Interest};
use process::{Child, ExitInfo};
use spawn::{Command, Input};

/// After the script exits, how long a grandchild may keep its stdout open.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// After stdout ends, how long we wait inline for the script to exit (it usually
/// exits right after) before leaving it to a watcher thread.
const EXIT_WAIT: Duration = Duration::from_millis(100);
/// Between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// What one CGI run produced, for the access log.
pub struct Ran {
    pub outcome: Outcome,
    pub pid: i32,
    /// `None` when the script outlived its response and is reaped later.
    pub exit: Option<ExitInfo>,
    pub spawned_at: Instant,
}

/// Runs `script` for `req`. The caller has checked the method and body size.
pub fn run(call: Call<'_>, body: Prepared, mut settings: relay::Settings) -> Result<Ran, Error> {
    let Call {
        shared,
        conn,
        req,
        script,
        tag,
        id,
    } = call;
    let (input, mut body_in, length) = match body {
        Prepared::None => (Input::Null, BodyIn::None, None),
        Prepared::Socket(0) => (Input::Null, BodyIn::None, Some(0)),
        Prepared::Socket(n) => (Input::Pipe, BodyIn::Socket(n), Some(n)),
        Prepared::Memory(v) => {
            let n = v.len() as u64;
            (Input::Pipe, BodyIn::Memory(v), Some(n))
        }
        Prepared::File(f, n) => (Input::File(f), BodyIn::None, Some(n)),
    };
    let vars = env::meta_variables(req, script, conn.ends, length, &shared.site);
    let (_, query) = req.path_and_query();
    let words = env::argv_from_query(&req.method, query);
    let mut args: Vec<&OsStr> = Vec::new();
    let program: &Path = match &script.interpreter {
        Some(interp) => {
            args.push(script.file.as_os_str());
            interp
        }
        None => &script.file,
    };
    args.extend(words.iter().map(|w| OsStr::from_bytes(w)));
    let cwd = script.file.parent().unwrap_or(Path::new("/"));
    let limits = shared.limits.for_process().map_err(Error::Internal)?;
    let spawn_started = Instant::now();
    let spawned = spawn::spawn(
        shared.config.spawn,
        Command {
            program,
            args,
            env: &vars,
            cwd,
            input,
            limits: (!limits.is_empty()).then(|| limits.in_child()),
        },
    )?;
    let spawned_at = Instant::now();
    settings.timing.spawn = spawned_at - spawn_started;
    let pid = spawned.pid;
    shared.stats.set_pid(id, pid);
    let child = Child::adopt_since(pid, shared.children.clone(), spawn_started);
    let mut backend = CgiScript {
        stdin: spawned
            .stdin
            .map(nonblocking)
            .transpose()
            .map_err(Error::Internal)?,
        stdout: Some(nonblocking(spawned.stdout).map_err(Error::Internal)?),
        stderr: Some(nonblocking(spawned.stderr).map_err(Error::Internal)?),
        child,
        log: ScriptLog::new(format!("{tag} pid {pid}"), shared.log.clone()),
        exited_at: None,
    };
    settings.max_output = shared.limits.limits.output;
    let deadline = settings.deadline;
    let outcome = relay::run(conn, req, &mut body_in, &mut backend, settings);
    let exit = backend.finish(outcome.is_abort(), deadline);
    let over = exit.and_then(|e| shared.limits.verdict(&limits, e.signal, e.user + e.system));
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
            },
        ) => Outcome::Sent {
            status,
            body_bytes,
            error: Some(Error::LimitExceeded(which)),
            timing,
        },
        (Some(which), outcome) => {
            shared.log.log(&format!("{tag} pid {pid} ran into {which}"));
            outcome
        }
        (None, outcome) => outcome,
    };
    drop(limits);
    Ok(Ran {
        outcome,
        pid,
        exit,
        spawned_at,
    })
}

fn nonblocking(fd: OwnedFd) -> io::Result<File> {
    sys::set_nonblocking(fd.as_fd())?;
    Ok(File::from(fd))
}

struct CgiScript {
    child: Child,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    log: ScriptLog,
    exited_at: Option<Instant>,
}

impl Backend for CgiScript {
    fn interests(&self, want_input: bool, want_output: bool, set: &mut Vec<Interest>) {
        let mut add = |f: &Option<File>, events| {
            if let Some(f) = f {
                set.push(Interest {
                    fd: f.as_raw_fd(),
                    events,
                });
            }
        };
        if want_input {
            add(&self.stdin, sys::WRITE);
        }
        if want_output {
            add(&self.stdout, sys::READ);
        }
        add(&self.stderr, sys::READ);
        if let (None, Some(fd)) = (self.exited_at, self.child.exit_fd()) {
            set.push(Interest {
                fd: fd.as_raw_fd(),
                events: sys::READ,
            });
        }
    }

    fn write_input(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.stdin {
            Some(f) => f.write(data),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn close_input(&mut self) {
        self.stdin = None;
    }

    fn read_output(&mut self, buf: &mut [u8]) -> Result<Output, Error> {
        let Some(out) = &mut self.stdout else {
            return Ok(Output::End);
        };
        match out.read(buf) {
            Ok(0) => {
                self.stdout = None;
                // A script killed mid-answer must not have its output passed off as
                // complete: the relay then withholds the final chunk and closes.
                if let Some(sig) = self
                    .child
                    .wait_exit(EXIT_WAIT)
                    .then(|| self.child.killed_by())
                    .flatten()
                {
                    return Err(Error::ScriptFailed(format!("killed by signal {sig}")));
                }
                Ok(Output::End)
            }
            Ok(n) => Ok(Output::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The script is gone but something it started still holds stdout open.
                if self.exited_at.is_some_and(|t| t.elapsed() >= EXIT_GRACE) {
                    self.stdout = None;
                    return Ok(Output::End);
                }
                Ok(Output::Pending)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Output::Pending),
            Err(e) => Err(Error::ScriptFailed(format!("reading stdout: {e}"))),
        }
    }

    fn housekeeping(&mut self) {
        self.drain_stderr();
        if self.exited_at.is_none() && self.child.has_exited() {
            self.exited_at = Some(Instant::now());
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        self.stdout.as_ref()?;
        self.exited_at.map(|t| t + EXIT_GRACE)
    }
}

impl CgiScript {
    fn drain_stderr(&mut self) {
        let mut buf = [0u8; 8192];
        // Bounded per turn so a flood cannot starve the rest of the loop.
        for _ in 0..16 {
            let Some(err) = &mut self.stderr else { return };
            match err.read(&mut buf) {
                Ok(0) => self.stderr = None,
                Ok(n) => self.log.write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Ends the process: killed on abort, reaped if done, else left to a watcher
    /// thread until it exits or its deadline passes.
    fn finish(mut self, abort: bool, deadline: Instant) -> Option<ExitInfo> {
        self.stdin = None;
        self.stdout = None;
        let exit = if abort {
            self.child.terminate(KILL_GRACE)
        } else if self.child.wait_exit(EXIT_WAIT) {
            self.drain_stderr();
            self.child.reap()
        } else {
            std::thread::Builder::new()
                .name("cgi-linger".into())
                .spawn(move || self.linger(deadline))
                .ok();
            return None;
        };
        self.drain_stderr();
        self.log_exit(&exit);
        Some(exit)
    }

    /// For a script that closed stdout but kept running: wait for it (draining its
    /// stderr) until its deadline, then kill it.
    fn linger(mut self, deadline: Instant) {
        let mut revents = Vec::new();
        while !self.child.has_exited() && Instant::now() < deadline {
            let mut set = Vec::new();
            self.interests(false, false, &mut set);
            if sys::poll(&set, Some(deadline), &mut revents).is_err() {
                break;
            }
            self.drain_stderr();
        }
        let exit = self.child.terminate(KILL_GRACE);
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

//! Starting one script process: posix_spawn(3), or fork+execve through nix with
//! everything prepared before the fork. Either way the child gets a clean
//! environment, its own process group, the script's directory as cwd, an empty
//! signal mask with every signal at its default, and only descriptors 0, 1 and 2.
//!
//! The signals are the subtle part. The server blocks SIGINT and SIGTERM (a thread
//! waits for them), Rust ignores SIGPIPE, and whoever started the server may have
//! left signals ignored (`nohup`, a shell's background job); a blocked mask and
//! ignored dispositions both survive exec. std's `Command` keeps the parent's mask
//! and resets SIGPIPE only, and glibc's posix_spawn sets its internal signals (32,
//! 33) to SIG_IGN in the child unless they are in the spawn's default set. So the
//! posix_spawn path calls posix_spawn itself with an empty mask and every signal in
//! the default set, and the fork paths reset all of them between fork and exec.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::fcntl::OFlag;

use crate::gateway::env::MetaVars;
use crate::limits::{ChildSide, ProcessLimits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SpawnMode {
    /// posix_spawn(3), called directly (std's `Command` cannot set the signals).
    #[default]
    PosixSpawn,
    /// fork + execve via nix, argv/envp built before the fork.
    Fork,
}

/// The scheduling policy FastCGI workers run under (`--worker-sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WorkerSched {
    /// SCHED_BATCH: a worker woken by a request never preempts the loop that woke it.
    #[default]
    Batch,
    /// SCHED_OTHER, like the server itself.
    Normal,
}

/// Makes a `std::process::Command` start its child under SCHED_BATCH.
///
/// Why: a loop wakes a worker when it sends a request, and (for a libfcgi worker on a
/// unix socket, blocked reading its next request) again when it reads the answer,
/// since freeing the worker's sent data wakes whoever sleeps on that socket. Under
/// SCHED_OTHER a woken worker may preempt the loop on its CPU, so the loop's other
/// ready connections wait and each wake-up carries one request. A SCHED_BATCH task
/// never preempts on wake-up; it still gets its fair share of the CPU, on the tick.
/// With the small libfcgi hello this took the worker path from 26-27k to 35-39k
/// req/s on 2 cores (benches/README.md); a child's failure to switch (the server
/// itself under SCHED_IDLE, say) leaves it at the server's own policy.
pub fn batch_scheduling(cmd: &mut std::process::Command) {
    // SAFETY: sched_setscheduler is a plain system call, async-signal-safe, on data
    // made here; its result is ignored on purpose (see above).
    unsafe {
        cmd.pre_exec(|| {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            Ok(())
        })
    };
}

/// What the child reads as stdin.
pub enum Input {
    Null,
    /// A pipe the caller writes the body into.
    Pipe,
    /// A spooled body; the child reads it directly.
    File(File),
}

pub struct Command<'a> {
    pub program: &'a Path,
    /// argv after argv[0].
    pub args: Vec<&'a OsStr>,
    pub env: &'a MetaVars,
    pub cwd: &'a Path,
    pub input: Input,
    /// Rlimits and cgroup to take on before exec (`--limit-*`).
    pub limits: Option<ChildSide>,
}

/// Our ends of the child's standard descriptors.
pub struct Spawned {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

#[derive(Debug)]
pub enum SpawnError {
    NotFound(io::Error),
    PermissionDenied(io::Error),
    /// The file is neither a binary nor has a `#!` line (ENOEXEC).
    NotExecutable(io::Error),
    Other(io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound(e) => write!(f, "cannot start script (interpreter missing?): {e}"),
            SpawnError::PermissionDenied(e) => write!(f, "cannot start script: {e}"),
            SpawnError::NotExecutable(e) => {
                write!(f, "script has no #! line and is not a binary: {e}")
            }
            SpawnError::Other(e) => write!(f, "cannot start script: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

impl From<io::Error> for SpawnError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) => SpawnError::NotFound(e),
            Some(libc::EACCES) | Some(libc::EPERM) => SpawnError::PermissionDenied(e),
            Some(libc::ENOEXEC) => SpawnError::NotExecutable(e),
            _ => SpawnError::Other(e),
        }
    }
}

pub fn spawn(mode: SpawnMode, cmd: Command<'_>) -> Result<Spawned, SpawnError> {
    // posix_spawn cannot set rlimits or join a cgroup, nor search the child's PATH
    // for a bare program name: those go through std, which then forks.
    let plain = cmd.limits.is_none() && cmd.program.as_os_str().as_bytes().contains(&b'/');
    match mode {
        SpawnMode::PosixSpawn if plain => spawn_posix(cmd),
        SpawnMode::PosixSpawn => spawn_std(cmd),
        SpawnMode::Fork => spawn_fork(cmd),
    }
}

/// A [`Command`] that owns its parts, so it can be started on another thread.
pub struct Job {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: MetaVars,
    pub cwd: PathBuf,
    pub input: Input,
    /// `--limit-*`: kept with the job, since the child writes into its descriptors.
    pub limits: ProcessLimits,
}

/// Starts `job` in the calling loop's small blocking pool and hands back the child
/// and the job's limits. posix_spawn (vfork) and std's fork both hold the calling
/// thread until the child has exec'd, which under load is mostly the child waiting
/// for a CPU: measured at 565–867 µs per script at 8 connections, most of a loop's
/// time. The loop serves its other connections meanwhile. A child whose caller is
/// gone by the time it starts is killed and reaped there, not left behind.
pub async fn start_off_loop(
    mode: SpawnMode,
    job: Job,
) -> Result<(Spawned, ProcessLimits), SpawnError> {
    let start = move || {
        let Job {
            program,
            args,
            env,
            cwd,
            input,
            limits,
        } = job;
        let cmd = Command {
            program: &program,
            args: args.iter().map(OsString::as_os_str).collect(),
            env: &env,
            cwd: &cwd,
            input,
            limits: (!limits.is_empty()).then(|| limits.in_child()),
        };
        spawn(mode, cmd).map(|s| (Unclaimed(Some(s)), limits))
    };
    let (mut started, limits) = tokio::task::spawn_blocking(start)
        .await
        .map_err(|e| SpawnError::Other(io::Error::other(e.to_string())))??;
    match started.0.take() {
        Some(spawned) => Ok((spawned, limits)),
        None => Err(SpawnError::Other(io::Error::other("child already claimed"))),
    }
}

/// A started child nobody has taken yet: dropped so, it is killed with its group and
/// reaped.
struct Unclaimed(Option<Spawned>);

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(s.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
        }
    }
}

/// Makes a `std::process::Command` start its child with an empty signal mask and
/// every signal at its default (see the module doc for why std's own reset is not
/// enough). std takes its fork+exec path for it, since posix_spawn has no hook.
pub fn default_signals(cmd: &mut std::process::Command) {
    let signals = &to_default().list;
    // SAFETY: `reset_signals` makes only async-signal-safe calls and allocates nothing.
    unsafe { cmd.pre_exec(move || reset_signals(signals)) };
}

/// Highest signal number the kernel has (`_NSIG - 1` on Linux).
const MAX_SIGNAL: i32 = 64;
/// The kernel's `sigset_t`, in bytes, as rt_sigaction(2) wants it.
const KERNEL_SIGSET_BYTES: usize = 8;

/// Signals to set back to SIG_DFL in a child, since exec keeps SIG_IGN and a script
/// must not inherit our SIGPIPE, nor a nohup's SIGHUP: every standard signal (1-31,
/// the ones a launcher may ignore at any time), glibc's internal 32 and 33 (its
/// posix_spawn would otherwise set them to SIG_IGN in the child), and the real-time
/// ones this process ignored when first asked. Handlers need nothing: exec resets
/// them. Resetting all 64 in every child would cost 64 system calls per script.
struct ToDefault {
    set: libc::sigset_t,
    list: Vec<i32>,
}

// SAFETY: a sigset_t is plain data, only read after it is built.
unsafe impl Sync for ToDefault {}
unsafe impl Send for ToDefault {}

fn to_default() -> &'static ToDefault {
    static ONCE: std::sync::OnceLock<ToDefault> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let mut list: Vec<i32> = (1..=33)
            .filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
            .collect();
        for sig in 34..=MAX_SIGNAL {
            let mut old = [0 as libc::c_ulong; 8];
            // SAFETY: rt_sigaction with a null new action only reads the current one
            // into a buffer larger than the kernel's struct sigaction.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    std::ptr::null::<libc::c_void>(),
                    old.as_mut_ptr(),
                    KERNEL_SIGSET_BYTES,
                )
            };
            // The handler is the first word of the kernel's struct sigaction.
            if r == 0 && old[0] == libc::SIG_IGN as libc::c_ulong {
                list.push(sig);
            }
        }
        // SAFETY: plain sigset operations on a local set.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in &list {
                // sigaddset refuses 32 and 33, so their bits are set by hand.
                if libc::sigaddset(&mut set, sig) != 0 {
                    let words = (&mut set as *mut libc::sigset_t).cast::<libc::c_ulong>();
                    let bit = (sig - 1) as usize;
                    *words.add(bit / 64) |= 1 << (bit % 64);
                }
            }
            set
        };
        ToDefault { set, list }
    })
}

/// Between fork and exec: empty mask, and the signals this process ignores back at
/// SIG_DFL (see [`to_default`]). rt_sigaction is called directly: glibc's sigaction
/// refuses its internal signals 32 and 33, which may be ignored too.
///
/// # Safety
/// Only for the child between fork and exec: it changes the whole process's signals.
/// `signals` must have been built before the fork (nothing here allocates).
unsafe fn reset_signals(signals: &[i32]) -> io::Result<()> {
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel's struct sigaction with every field zero: SIG_DFL, no flags, no
        // restorer, empty mask; sized generously for every architecture's layout.
        let default = [0 as libc::c_ulong; 8];
        for &sig in signals {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                KERNEL_SIGSET_BYTES,
            );
        }
    }
    Ok(())
}

pub fn retry_text_busy<T>(mut start: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..20 {
        match start() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
    start()
}

fn spawn_std(cmd: Command<'_>) -> Result<Spawned, SpawnError> {
    let mut c = std::process::Command::new(cmd.program);
    c.args(&cmd.args)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, OsStr::from_bytes(v))))
        .current_dir(cmd.cwd)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match cmd.input {
        Input::Null => c.stdin(Stdio::null()),
        Input::Pipe => c.stdin(Stdio::piped()),
        Input::File(f) => c.stdin(Stdio::from(f)),
    };
    if let Some(limits) = cmd.limits {
        // SAFETY: `apply` only makes async-signal-safe calls on prepared data.
        unsafe { c.pre_exec(move || limits.apply()) };
    }
    default_signals(&mut c);
    let mut child = retry_text_busy(|| c.spawn())?;
    let pid = child.id() as i32;
    let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => (OwnedFd::from(o), OwnedFd::from(e)),
        _ => return Err(SpawnError::Other(io::Error::other("no stdout/stderr pipe"))),
    };
    // Dropping `Child` neither waits nor kills; the caller owns the pid from here.
    Ok(Spawned {
        pid,
        stdin: child.stdin.take().map(OwnedFd::from),
        stdout,
        stderr,
    })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// The C strings a child is started with, built before it exists.
struct Words<'a> {
    path: CString,
    cwd: CString,
    _owned: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `envp` points into the command's environment.
    _env: std::marker::PhantomData<&'a MetaVars>,
}

impl<'a> Words<'a> {
    fn new(cmd: &Command<'a>) -> io::Result<Words<'a>> {
        let path = cstring(cmd.program.as_os_str().as_bytes())?;
        let cwd = cstring(cmd.cwd.as_os_str().as_bytes())?;
        let mut argv_owned = vec![path.clone()];
        for a in &cmd.args {
            argv_owned.push(cstring(a.as_bytes())?);
        }
        // The environment's entries are C strings already; one with a NUL inside
        // would be cut short, so it is refused as before.
        let mut envp = Vec::with_capacity(cmd.env.len() + 1);
        for entry in cmd.env.entries() {
            if entry[..entry.len() - 1].contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL in environment",
                ));
            }
            envp.push(entry.as_ptr().cast());
        }
        envp.push(std::ptr::null());
        let argv = argv_owned
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // The pointers point into the CStrings' heap buffers, which moving them here
        // does not move, and into `cmd.env`, which the lifetime keeps.
        Ok(Words {
            path,
            cwd,
            _owned: argv_owned,
            argv,
            envp,
            _env: std::marker::PhantomData,
        })
    }
}

/// The child's ends of stdin, stdout and stderr, and ours.
struct Pipes {
    /// The child's stdin; `None`: the server's one /dev/null.
    child_in: Option<OwnedFd>,
    child_out: OwnedFd,
    child_err: OwnedFd,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// /dev/null, opened once: a script without a body reads it as stdin, and opening it
/// for every script is two system calls each time.
fn dev_null() -> io::Result<RawFd> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd: OwnedFd = File::open("/dev/null")?.into();
    Ok(NULL.get_or_init(|| fd).as_raw_fd())
}

impl Pipes {
    fn new(input: Input) -> io::Result<Pipes> {
        let (child_in, stdin): (Option<OwnedFd>, Option<OwnedFd>) = match input {
            Input::Null => (None, None),
            Input::Pipe => {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            }
            Input::File(f) => (Some(f.into()), None),
        };
        let (stdout, child_out) = pipe()?;
        let (stderr, child_err) = pipe()?;
        Ok(Pipes {
            child_in,
            child_out,
            child_err,
            stdin,
            stdout,
            stderr,
        })
    }

    fn child_fds(&self) -> io::Result<[i32; 3]> {
        let stdin = match &self.child_in {
            Some(fd) => fd.as_raw_fd(),
            None => dev_null()?,
        };
        Ok([
            stdin,
            self.child_out.as_raw_fd(),
            self.child_err.as_raw_fd(),
        ])
    }

    /// Closes the child's ends (it has its own copies now) and returns ours.
    fn spawned(self, pid: i32) -> Spawned {
        Spawned {
            pid,
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

fn spawn_posix(cmd: Command<'_>) -> Result<Spawned, SpawnError> {
    let words = Words::new(&cmd)?;
    let pipes = Pipes::new(cmd.input)?;
    let fds = pipes.child_fds()?;
    let pid = retry_text_busy(|| posix_spawn_once(&words, &fds))?;
    Ok(pipes.spawned(pid))
}

/// Frees posix_spawn's attribute and file-action objects however we leave.
struct SpawnAttrs {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl Drop for SpawnAttrs {
    fn drop(&mut self) {
        // SAFETY: both were initialized in `posix_spawn_once` before this guard existed.
        unsafe {
            libc::posix_spawnattr_destroy(&mut self.attr);
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
        }
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// One posix_spawn: 0/1/2 from `fds`, cwd, its own process group, an empty signal
/// mask and every signal at its default. Exec errors come back as its result.
fn posix_spawn_once(w: &Words<'_>, fds: &[i32; 3]) -> io::Result<i32> {
    // SAFETY: the objects are initialized before use and destroyed once (SpawnAttrs);
    // every pointer passed stays valid for the call (`w` and `fds` outlive it).
    unsafe {
        let mut a = SpawnAttrs {
            attr: std::mem::zeroed(),
            actions: std::mem::zeroed(),
        };
        check(libc::posix_spawnattr_init(&mut a.attr))?;
        if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut a.actions)) {
            libc::posix_spawnattr_destroy(&mut a.attr);
            return Err(e);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::posix_spawnattr_setsigmask(&mut a.attr, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(
            &mut a.attr,
            &to_default().set,
        ))?;
        check(libc::posix_spawnattr_setpgroup(&mut a.attr, 0))?;
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        check(libc::posix_spawnattr_setflags(
            &mut a.attr,
            flags as libc::c_short,
        ))?;
        for (target, &fd) in fds.iter().enumerate() {
            check(libc::posix_spawn_file_actions_adddup2(
                &mut a.actions,
                fd,
                target as i32,
            ))?;
        }
        check(libc::posix_spawn_file_actions_addchdir_np(
            &mut a.actions,
            w.cwd.as_ptr(),
        ))?;
        let mut pid: libc::pid_t = 0;
        // Every other descriptor of ours is close-on-exec (`sys::cloexec_inherited`).
        check(libc::posix_spawn(
            &mut pid,
            w.path.as_ptr(),
            &a.actions,
            &a.attr,
            w.argv.as_ptr().cast(),
            w.envp.as_ptr().cast(),
        ))?;
        Ok(pid)
    }
}

fn spawn_fork(cmd: Command<'_>) -> Result<Spawned, SpawnError> {
    // Everything the child touches is built here: after fork only async-signal-safe
    // calls are allowed, so no allocation happens on the child's side.
    let words = Words::new(&cmd)?;
    let pipes = Pipes::new(cmd.input)?;
    let fds = pipes.child_fds()?;
    let prepared = Prepared {
        fds: &fds,
        cwd: words.cwd.as_ptr(),
        path: words.path.as_ptr(),
        argv: &words.argv,
        envp: &words.envp,
        limits: cmd.limits.as_ref(),
        signals: &to_default().list,
    };
    let pid = retry_text_busy(|| fork_exec(&prepared))?;
    Ok(pipes.spawned(pid))
}

/// One fork and exec; the child's exec error comes back through a CLOEXEC pipe,
/// which reads end-of-file once the exec succeeded.
fn fork_exec(prepared: &Prepared<'_>) -> io::Result<i32> {
    let (report_r, report_w) = pipe()?;
    let report = report_w.as_raw_fd();
    // SAFETY: the child only calls async-signal-safe functions on data prepared
    // before the fork, then execs or exits.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Child => unsafe { child_after_fork(prepared, report) },
        nix::unistd::ForkResult::Parent { child } => {
            drop(report_w);
            let pid = child.as_raw();
            let error = match read_exec_report(File::from(report_r)) {
                Ok(None) => return Ok(pid),
                Ok(Some(errno)) => io::Error::from_raw_os_error(errno),
                Err(e) => e,
            };
            let mut status = 0;
            // SAFETY: reaping the child that failed to exec.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(error)
        }
    }
}

/// Reads the report pipe: `None` at end-of-file (exec succeeded and closed it), else
/// the child's errno. A signal landing in this thread (EINTR) is not an exec failure:
/// treating it as one used to block in `waitpid` until the script ended by itself.
fn read_exec_report(mut report: File) -> io::Result<Option<i32>> {
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        match report.read(&mut errno[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::other("short exec report")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(i32::from_ne_bytes(errno)))
}

/// What the forked child uses, all built before the fork.
struct Prepared<'a> {
    fds: &'a [i32; 3],
    cwd: *const libc::c_char,
    path: *const libc::c_char,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    limits: Option<&'a ChildSide>,
    /// The signals to set back to their default (see [`to_default`]).
    signals: &'a [i32],
}

/// Runs in the forked child: wire up 0/1/2, new process group, cwd, limits, default
/// signals, exec. On failure the errno goes down the CLOEXEC report pipe.
unsafe fn child_after_fork(p: &Prepared<'_>, report: i32) -> ! {
    let Prepared {
        fds,
        cwd,
        path,
        argv,
        envp,
        limits,
        signals,
    } = *p;
    unsafe {
        let fail = |report: i32| -> ! {
            let e = *libc::__errno_location();
            libc::write(report, (&e as *const i32).cast(), 4);
            libc::_exit(127)
        };
        for (target, &fd) in fds.iter().enumerate() {
            if libc::dup2(fd, target as i32) < 0 {
                fail(report);
            }
        }
        if libc::setpgid(0, 0) < 0 || libc::chdir(cwd) < 0 {
            fail(report);
        }
        if let Some(l) = limits
            && l.apply().is_err()
        {
            fail(report);
        }
        // Nothing but 0, 1, 2 and the report pipe (closed by exec) may cross over.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            (report as u32).saturating_sub(1),
            0u32,
        );
        libc::syscall(libc::SYS_close_range, report as u32 + 1, u32::MAX, 0u32);
        if reset_signals(signals).is_err() {
            fail(report);
        }
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        fail(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// `SigBlk` and `SigIgn` of a program started in `mode` that reads its own
    /// /proc/self/status, started from a thread that blocks SIGINT while the process
    /// ignores SIGHUP (as under nohup).
    fn child_signals(start: impl FnOnce() -> Spawned + Send) -> (String, String) {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: plain signal-mask and disposition calls, undone below.
                    let old = unsafe {
                        let mut int: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut int);
                        libc::sigaddset(&mut int, libc::SIGINT);
                        libc::pthread_sigmask(libc::SIG_BLOCK, &int, std::ptr::null_mut());
                        libc::signal(libc::SIGHUP, libc::SIG_IGN)
                    };
                    let spawned = start();
                    // SAFETY: as above.
                    unsafe { libc::signal(libc::SIGHUP, old) };
                    let mut out = String::new();
                    File::from(spawned.stdout).read_to_string(&mut out).unwrap();
                    let mut status = 0;
                    // SAFETY: reaping our own child.
                    unsafe { libc::waitpid(spawned.pid, &mut status, 0) };
                    let field = |name: &str| {
                        out.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .unwrap_or_else(|| panic!("{name} missing: {out}"))
                            .trim()
                            .to_owned()
                    };
                    (field("SigBlk:"), field("SigIgn:"))
                })
                .join()
                .unwrap()
        })
    }

    fn reader<'a>(env: &'a MetaVars) -> Command<'a> {
        Command {
            program: Path::new("/bin/grep"),
            args: vec![OsStr::new("^Sig"), OsStr::new("/proc/self/status")],
            env,
            cwd: Path::new("/"),
            input: Input::Null,
            limits: None,
        }
    }

    #[test]
    fn children_start_with_no_blocked_and_no_ignored_signal() {
        let env = MetaVars::new();
        let none = "0000000000000000";
        for mode in [SpawnMode::PosixSpawn, SpawnMode::Fork] {
            let got = child_signals(|| spawn(mode, reader(&env)).unwrap());
            assert_eq!(got, (none.into(), none.into()), "{mode:?}");
        }
        // The std path (used with limits, and for workers) with `default_signals`.
        let got = child_signals(|| {
            let mut c = std::process::Command::new("/bin/grep");
            c.args(["^Sig", "/proc/self/status"])
                .stdout(Stdio::piped())
                .process_group(0);
            default_signals(&mut c);
            #[allow(clippy::zombie_processes, reason = "child_signals reaps it")]
            let mut child = c.spawn().unwrap();
            Spawned {
                pid: child.id() as i32,
                stdin: None,
                stdout: child.stdout.take().unwrap().into(),
                stderr: File::open("/dev/null").unwrap().into(),
            }
        });
        assert_eq!(got, (none.into(), none.into()), "std::process::Command");
    }

    #[test]
    fn exec_errors_come_back_in_both_modes() {
        let env = MetaVars::new();
        for mode in [SpawnMode::PosixSpawn, SpawnMode::Fork] {
            let mut cmd = reader(&env);
            cmd.program = Path::new("/nonexistent/program");
            assert!(
                matches!(spawn(mode, cmd), Err(SpawnError::NotFound(_))),
                "{mode:?}"
            );
        }
    }

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn a_signal_while_waiting_for_the_exec_report_is_no_failure() {
        // A handler without SA_RESTART, so a blocked read(2) returns EINTR.
        // SAFETY: installs a handler that does nothing, for a signal no test uses.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        for errno in [None, Some(libc::ENOENT)] {
            let (r, mut w) = std::io::pipe().unwrap();
            let done = std::sync::Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            let reader = std::thread::spawn(move || {
                let got = read_exec_report(File::from(OwnedFd::from(r)));
                flag.store(true, Ordering::SeqCst);
                got
            });
            let thread = reader.as_pthread_t();
            for _ in 0..20 {
                // SAFETY: the thread is alive until joined below.
                unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!done.load(Ordering::SeqCst), "EINTR ended the wait");
            if let Some(e) = errno {
                w.write_all(&e.to_ne_bytes()).unwrap();
            }
            drop(w);
            assert_eq!(reader.join().unwrap().unwrap(), errno);
        }
    }
}

//! Starting one script process: posix_spawn through `std::process::Command`, or
//! fork+execve through nix with everything prepared before the fork. Either way the
//! child gets a clean environment, its own process group, the script's directory as
//! cwd, default signal handling and only descriptors 0, 1 and 2.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::OFlag;

use crate::gateway::env::MetaVars;
use crate::limits::ChildSide;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SpawnMode {
    /// posix_spawn via std::process::Command.
    #[default]
    PosixSpawn,
    /// fork + execve via nix, argv/envp built before the fork.
    Fork,
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
    match mode {
        SpawnMode::PosixSpawn => spawn_std(cmd),
        SpawnMode::Fork => spawn_fork(cmd),
    }
}

/// Runs `start` again when exec failed with ETXTBSY: a file just written can still be
/// open for writing in a child some other thread forked at that moment (until that
/// child's exec closes it), which makes exec refuse it for a few milliseconds.
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
        // posix_spawn has no attribute for rlimits or cgroups, so with limits std
        // takes its fork+exec path to run this between the two.
        // SAFETY: `apply` only makes async-signal-safe calls on prepared data.
        unsafe { c.pre_exec(move || limits.apply()) };
    }
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

fn spawn_fork(cmd: Command<'_>) -> Result<Spawned, SpawnError> {
    // Everything the child touches is built here: after fork only async-signal-safe
    // calls are allowed, so no allocation happens on the child's side.
    let path = cstring(cmd.program.as_os_str().as_bytes())?;
    let cwd = cstring(cmd.cwd.as_os_str().as_bytes())?;
    let mut argv_owned = vec![path.clone()];
    for a in &cmd.args {
        argv_owned.push(cstring(a.as_bytes())?);
    }
    let envp_owned = cmd
        .env
        .iter()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v].concat()))
        .collect::<io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = argv_owned
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envp_owned
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    let (child_in, our_in): (OwnedFd, Option<OwnedFd>) = match cmd.input {
        Input::Null => (File::open("/dev/null")?.into(), None),
        Input::Pipe => {
            let (r, w) = pipe()?;
            (r, Some(w))
        }
        Input::File(f) => (f.into(), None),
    };
    let (our_out, child_out) = pipe()?;
    let (our_err, child_err) = pipe()?;
    let fds = [
        child_in.as_raw_fd(),
        child_out.as_raw_fd(),
        child_err.as_raw_fd(),
    ];
    let prepared = Prepared {
        fds: &fds,
        cwd: cwd.as_ptr(),
        path: path.as_ptr(),
        argv: &argv,
        envp: &envp,
        limits: cmd.limits.as_ref(),
    };
    let pid = retry_text_busy(|| fork_exec(&prepared))?;
    drop((child_in, child_out, child_err));
    Ok(Spawned {
        pid,
        stdin: our_in,
        stdout: our_out,
        stderr: our_err,
    })
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
            let mut errno = [0u8; 4];
            match File::from(report_r).read(&mut errno) {
                Ok(0) => Ok(pid),
                _ => {
                    let mut status = 0;
                    // SAFETY: reaping the child that failed to exec.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
                }
            }
        }
    }
}

/// What the forked child uses, all built before the fork.
struct Prepared<'a> {
    fds: &'a [i32; 3],
    cwd: *const libc::c_char,
    path: *const libc::c_char,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    limits: Option<&'a ChildSide>,
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
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Rust ignores SIGPIPE; a script must get the default back.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execve(path, argv.as_ptr(), envp.as_ptr());
        fail(report)
    }
}

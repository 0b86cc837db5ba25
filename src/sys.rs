//! Thin safe wrappers over the few Linux calls std does not offer: poll, non-blocking
//! socket I/O without changing the descriptor's mode, pidfds, descriptor counts.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// One descriptor to wait on and what to wait for.
#[derive(Debug, Clone, Copy)]
pub struct Interest {
    pub fd: RawFd,
    pub events: i16,
}

pub const READ: i16 = libc::POLLIN;
pub const WRITE: i16 = libc::POLLOUT;
/// The peer shut down its sending side (Linux).
pub const PEER_CLOSED: i16 = libc::POLLRDHUP;

/// Waits until one of `set` is ready or `until` passes; returns `revents` per entry.
pub fn poll(set: &[Interest], until: Option<Instant>, revents: &mut Vec<i16>) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = set
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd,
            events: i.events,
            revents: 0,
        })
        .collect();
    loop {
        let timeout = match until {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                // Round up so we do not spin just before a deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    revents.clear();
    revents.extend(fds.iter().map(|p| p.revents));
    Ok(())
}

/// Waits for one descriptor; true when it is ready (or in error) before `timeout`.
pub fn wait_one(fd: RawFd, events: i16, timeout: Duration) -> io::Result<bool> {
    let mut rev = Vec::with_capacity(1);
    poll(
        &[Interest { fd, events }],
        Some(Instant::now() + timeout),
        &mut rev,
    )?;
    Ok(rev.first().is_some_and(|&r| r != 0))
}

/// `recv` that never blocks, whatever the socket's mode.
pub fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    retry_interrupted(|| {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
    })
}

/// Non-blocking `recv` of up to `max` bytes appended to `buf`, without zeroing first.
pub fn recv_append(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    let n = retry_interrupted(|| {
        // SAFETY: the kernel writes at most `len` bytes into the reserved, unused capacity.
        unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) }
    })?;
    // SAFETY: the first n bytes of the spare capacity were just initialized by recv.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `send` that never blocks and never raises SIGPIPE.
pub fn send_nonblocking(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    retry_interrupted(|| {
        // SAFETY: buf is valid for reads of buf.len() bytes.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }
    })
}

/// Runs a syscall again when a signal handler interrupted it (threads of a process
/// with handlers installed, such as a test harness, can see EINTR at any time).
fn retry_interrupted(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int through the pointer; one call, where fcntl takes a
    // read and a write of the flags.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `path` for reading only if no component of it is a symlink (openat2's
/// RESOLVE_NO_SYMLINKS, Linux 5.6+; before it, or where a seccomp filter refuses it,
/// only the last component is checked, with O_NOFOLLOW). A path made canonical earlier
/// that now meets a symlink was changed since: ELOOP.
pub fn open_no_symlinks(path: &std::path::Path) -> io::Result<std::fs::File> {
    use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(AT_FDCWD, path, how).map_err(io::Error::from) {
        Ok(fd) => Ok(fd.into()),
        Err(e) if errno_is(&e, libc::ENOSYS) || errno_is(&e, libc::EPERM) => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        }
        Err(e) => Err(e),
    }
}

/// Number of descriptors this process has open (for leak checks and status).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

pub fn errno_is(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}

/// Marks every descriptor above 2 close-on-exec. Ours already are; this catches ones
/// inherited from whoever started us, so scripts never see them.
pub fn cloexec_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only change a flag; a closed fd just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// `sendfile(2)`: up to `count` bytes of `input` from `offset` to the socket `out`.
pub fn sendfile(out: RawFd, input: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    retry_interrupted(|| {
        // SAFETY: both descriptors are open for the call and `off` is a live local.
        unsafe { libc::sendfile(out, input, &mut off, count) }
    })
}

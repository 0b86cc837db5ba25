"""Starting and stopping one cgi-testbed server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Iterator, Mapping, Optional, Sequence, Union

from ._binary import find_binary
from ._capture import Capture

PathLike = Union[str, "os.PathLike[str]"]

READY = b"listening on "


class ServerError(RuntimeError):
    """The server exited when it should have been serving; `stderr` says why."""

    def __init__(self, message: str, returncode: Optional[int], stderr: str) -> None:
        detail = stderr.rstrip()
        super().__init__(f"{message}:\n{detail}" if detail else message)
        self.returncode = returncode
        self.stderr = stderr


def server_args(
    root: Optional[PathLike] = None,
    cgi_dir: Optional[PathLike] = None,
    args: Sequence[PathLike] = (),
) -> list[str]:
    """The command-line arguments for `--root`, `--cgi-dir` and extra `args`."""
    if isinstance(args, (str, bytes)):
        # A lone string would otherwise become one argument per character.
        raise TypeError(f"args must be a sequence of arguments, not {args!r}")
    extra = [os.fspath(a) for a in args]
    argv = []
    # Port 0 lets tests run in parallel without picking ports; an explicit --listen
    # in args wins (the server rejects the option twice).
    if not any(a == "--listen" or a.startswith("--listen=") for a in extra):
        argv += ["--listen", "127.0.0.1:0"]
    if root is not None:
        argv += ["--root", os.fspath(root)]
    if cgi_dir is not None:
        argv += ["--cgi-dir", os.fspath(cgi_dir)]
    return argv + extra


class Server:
    """A running `cgi-testbed`; `Server.start` starts one, `stop` stops it."""

    def __init__(self, process: subprocess.Popen, stdout: Capture, stderr: Capture, url: str):
        self.process = process
        self.url = url
        self._stdout = stdout
        self._stderr = stderr
        self._exited_on_its_own: Optional[bool] = None
        # Whether stop() had to SIGKILL it: then its status is ours, not its own.
        self._killed = False

    @classmethod
    def start(
        cls,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: float = 30.0,
    ) -> "Server":
        """Runs `cgi-testbed ARGS` and returns once it listens.

        `env` adds to (does not replace) this process's environment, which is what
        the server's `--pass-env` copies from. Raises `ServerError`, carrying the
        server's stderr, if it exits or has not listened within `timeout` seconds.
        """
        binary = find_binary()
        process = subprocess.Popen(
            [binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
        )
        stdout = Capture(process.stdout, f"cgi-testbed {process.pid} stdout")
        stderr = Capture(process.stderr, f"cgi-testbed {process.pid} stderr")
        try:
            listening = stdout.wait_for(lambda data: _url(data) is not None, timeout)
        except BaseException:  # e.g. Ctrl-C while waiting: leave no server behind
            process.kill()
            process.wait()
            raise
        if not listening:
            # The end of stdout means it exited (or is exiting); otherwise it hangs.
            timed_out = not stdout.ended
            if timed_out:
                process.kill()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            stdout.close(timeout=5)
            stderr.close(timeout=5)
            why = (
                f"cgi-testbed did not listen within {timeout} s"
                if timed_out
                else f"cgi-testbed exited with status {process.returncode} before listening"
            )
            raise ServerError(why, process.returncode, stderr.text() or stdout.text())
        url = _url(stdout.data())
        assert url is not None
        return cls(process, stdout, stderr, url)

    def error_log(self) -> str:
        """What the server wrote to stderr so far: its error log and scripts' stderr."""
        return self._stderr.text()

    def output(self) -> str:
        """What the server wrote to stdout so far (the `listening on` line, `--access-log -`)."""
        return self._stdout.text()

    @property
    def exited_on_its_own(self) -> bool:
        """Whether the server had exited before `stop` (or now, if not stopped yet)."""
        if self._exited_on_its_own is not None:
            return self._exited_on_its_own
        return self.process.poll() is not None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL if it has not exited within `timeout` seconds.

        The server lets in-flight requests finish for its `--grace` (10 s by default)
        before it exits. Returns its exit status; stopping twice is harmless.
        """
        if self._exited_on_its_own is None:
            self._exited_on_its_own = self.process.poll() is not None
            if not self._exited_on_its_own:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killed = True
                self.process.kill()
                self.process.wait()
            self._stdout.close(timeout=5)
            self._stderr.close(timeout=5)
        return self.process.returncode

    def failure(self) -> Optional[str]:
        """Why the server's end was not a clean stop, if it was not; None while it runs."""
        status = self.process.poll()
        if status is None:
            return None
        # A server that is dying can have closed its socket before the kernel lets us
        # reap it, so "not exited yet when stop() began" does not prove a clean stop:
        # the exit status does. SIGTERM makes the server exit with 0.
        if self.exited_on_its_own or (status != 0 and not self._killed):
            return f"cgi-testbed ({self.url}) exited with status {status} before it was stopped"
        return None

    def check(self) -> None:
        """Raises `ServerError` if the server's end was not a clean stop."""
        failure = self.failure()
        if failure:
            raise ServerError(failure, self.process.returncode, self.error_log())


def _url(stdout: bytes) -> Optional[str]:
    for line in stdout.split(b"\n")[:-1]:
        if line.startswith(READY):
            return line[len(READY):].strip().decode()
    return None


@contextlib.contextmanager
def serve(
    root: Optional[PathLike] = None,
    cgi_dir: Optional[PathLike] = None,
    args: Sequence[PathLike] = (),
    env: Optional[Mapping[str, str]] = None,
    *,
    timeout: float = 30.0,
) -> Iterator[str]:
    """Runs a cgi-testbed on 127.0.0.1 (a free port) for the `with` block.

    Yields the base URL, `http://127.0.0.1:PORT`. `root` is served as static files
    with `root/cgi-bin/` and `root/htbin/` as scripts (as `python -m http.server
    --cgi` did); `cgi_dir` names the script directory instead; `args` are more
    command-line options, e.g. `["--interpreter", "py=/usr/bin/python3"]`; `env`
    adds to the server's environment. On leaving the block the server gets SIGTERM
    and is waited for. Raises `ServerError` with the server's stderr if it exits
    before listening, or before the block ends.
    """
    server = Server.start(server_args(root, cgi_dir, args), env=env, timeout=timeout)
    try:
        yield server.url
    except BaseException:
        server.stop()
        raise
    server.stop()
    server.check()

"""Everything a child process writes to one pipe, kept in memory."""

from __future__ import annotations

import os
import select
import threading
from typing import IO, Callable


class Capture:
    """Reads a pipe to its end on a background thread.

    A child that writes more than a pipe holds (64 KiB on Linux; an error or access
    log easily does) blocks until someone reads, so someone must read all the time.
    The pipe is non-blocking and every read happens under one lock, so `text()` can
    also read whatever is still in the pipe itself: it returns every byte written
    before it was called, not just what the thread happened to have read so far.
    """

    def __init__(self, pipe: IO[bytes], name: str) -> None:
        self._pipe = pipe
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)
        self._data = bytearray()
        self._eof = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # poll, not select: select fails on descriptors above 1023, which a test
        # process with many open files can reach.
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._read_available():
            poller.poll()

    def _read_available(self) -> bool:
        """Appends what the pipe holds now; True once the writers have all closed it."""
        with self._changed:
            while not self._eof:
                try:
                    chunk = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    break
                if chunk:
                    self._data += chunk
                else:
                    self._eof = True
            self._changed.notify_all()
            return self._eof

    @property
    def ended(self) -> bool:
        """Whether every writer has closed the pipe (all the data is in)."""
        return self._read_available()

    def data(self) -> bytes:
        self._read_available()
        with self._changed:
            return bytes(self._data)

    def text(self) -> str:
        return self.data().decode("utf-8", "replace")

    def wait_for(self, found: Callable[[bytearray], bool], timeout: float) -> bool:
        """Waits until `found(data so far)` holds or the pipe ends; returns `found`."""
        with self._changed:
            self._changed.wait_for(lambda: self._eof or found(self._data), timeout)
            return found(self._data)

    def close(self, timeout: float) -> None:
        """Waits for the end of the pipe, then closes it.

        A script that left a process behind holding the pipe keeps it open; then the
        reader is left running rather than have its descriptor closed under it.
        """
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._pipe.close()

"""One launcher per data directory, enforced with an advisory lock file."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import DataDirBusy


class DataDirLock:
    """An exclusive ``flock`` on ``<data-dir>/launcher.lock``, which also holds the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if free; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self) -> None:
        """Take the lock or raise DataDirBusy naming the launcher that holds it."""
        if not self.try_acquire():
            holder = self.holder_pid()
            who = f"pid {holder}" if holder else "another process"
            raise DataDirBusy(
                f"another launcher ({who}) is using {self.path.parent}; stop it first "
                f"(Ctrl-C there, or: python -m carnet_launcher stop --data-dir {self.path.parent})"
            )

    def holder_pid(self) -> int | None:
        """The pid written by the current holder, if readable."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text(encoding="ascii").strip())
        return None

    def release(self) -> None:
        """Let go of the lock (the file stays)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

"""The coordinator's exclusive lock on its home: one writer of ``xylen.db`` at a time.

The coordinator holds ``<home>/coordinator.lock`` (``fcntl.flock``, exclusive, non-blocking) for
its whole life and writes its pid into the file; ``xylen db restore`` and ``xylen db migrate`` hold
the same lock while they work.  Whoever finds it taken refuses with :class:`HomeLocked`, whose
message names the pid of the holder.  The kernel drops the lock when the holder's process ends,
however it ends (a SIGKILL included), so a stale file never blocks a start: only a live holder
does.  The file itself is left in place (deleting it would let two processes lock two different
files of the same name).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from xylen.errors import XylenError

LOCK_NAME: Final = "coordinator.lock"


class HomeLocked(XylenError):
    """The home is locked by another live process (exit 1); the message names its pid."""


def lock_path(root: Path) -> Path:
    return root / LOCK_NAME


def holder_pid(root: Path) -> int | None:
    """The pid written in the lock file (None when there is none or it is unreadable)."""
    try:
        text = lock_path(root).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class HomeLock:
    """An exclusive ``flock`` on ``<root>/coordinator.lock`` holding this process's pid."""

    def __init__(self, root: Path, purpose: str = "the coordinator") -> None:
        self.root = root
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`HomeLocked` naming the holder's pid."""
        if self._fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = lock_path(self.root)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(self.root)
            who = f"pid {pid}" if pid is not None else "a process whose pid is not recorded yet"
            raise HomeLocked(
                f"{self.root} is in use by {who} (lock {path}): stop that coordinator first;"
                f" {self.purpose} refused"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the pid and drop the lock (also done by the kernel when the process ends)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self) -> Iterator[HomeLock]:
        """Hold the lock for a ``with`` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()


__all__ = ["LOCK_NAME", "HomeLock", "HomeLocked", "holder_pid", "lock_path"]

"""Advisory file locks (flock) so that processes working on the same object wait for each other."""

from __future__ import annotations

import contextlib
import fcntl
import os
from types import TracebackType


class FileLock:
    """An exclusive (or shared) flock on a lock file; released on close, exit or process death.

    A `transient` lock guards one object (a layer, a blob): its file is deleted when the lock is released,
    so that `locks/` does not keep a file for every object the store ever held. A waiter may then hold a
    descriptor of a deleted file; it checks after each flock that the file it locked is still the one at
    the path, and tries again if not. Every lock on a path (transient or not) makes that check.

    >>> with FileLock(os.path.join(store.locks_dir, "refs.lock")):
    ...     update_refs()
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False, transient: bool = False) -> None:
        if shared and transient:
            raise ValueError("a shared lock cannot delete its file: another holder may still use it")
        self.path = os.fspath(path)
        self.shared = shared
        self.transient = transient
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; with `blocking=False` return False instead of waiting."""
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, op if blocking else op | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    self._fd = fd
                    return True
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # its holder deleted it while we waited: lock the file that is there now

    def release(self) -> None:
        if self._fd is not None:
            if self.transient:
                _unlink(self.path)  # still holding it: nobody can lock this file meanwhile
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_idle(path: str | os.PathLike[str]) -> bool:
    """Delete the lock file at `path` if nobody holds it (old per-object locks); True if it went."""
    lock = FileLock(path, transient=True)
    try:
        return lock.acquire(blocking=False)
    finally:
        lock.release()

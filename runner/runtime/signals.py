"""Forward the signals a user sends to `minirun` to the container's PID 1."""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType, TracebackType

FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


class SignalForwarder:
    """Installs handlers that pass signals on to `pid`; signals arriving before `pid` is known wait in a queue.

    Install it *before* the container starts (so a Ctrl-C during start-up is not lost or turned into a
    KeyboardInterrupt) and give it the PID with `target()`. With a terminal, SIGWINCH is left to the
    terminal session (`skip`).
    """

    def __init__(self, skip: tuple[int, ...] = ()) -> None:
        self.signals = tuple(s for s in FORWARDED if s not in skip)
        self.pid: int | None = None
        self.pending: list[int] = []
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def target(self, pid: int) -> None:
        self.pid = pid
        pending, self.pending = self.pending, []
        for signum in pending:
            self._handle(signum, None)

    def __enter__(self) -> SignalForwarder:
        for signum in self.signals:
            self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
        self._old.clear()


def reset_in_child() -> None:
    """Default dispositions and an empty mask, as a freshly exec'ed process expects (Python ignores SIGPIPE)."""
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        # Python records every disposition at start-up (inherited SIG_IGN too): no syscall to ask.
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(signum) != signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])

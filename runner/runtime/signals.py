"""Signals: reading a signal a user names, and forwarding the ones sent to `minirun` to the container's PID 1."""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType, TracebackType


def signal_number(text: str) -> int:
    """A signal by name (`SIGTERM`, `term`, `SIGRTMIN+3`, `SIGRTMAX-1`) or number (`15`); 0 if it names none.

    The one reading of a signal both command lines take (`minirun kill -s`, `minirun-runtime kill`); each
    says in its own words what is wrong with a 0.
    """
    value = text.strip().upper()
    if value.isdigit():
        number = int(value)
    else:
        name = value if value.startswith("SIG") else "SIG" + value
        rt_min, rt_max = name.partition("SIGRTMIN+")[2], name.partition("SIGRTMAX-")[2]
        if rt_min.isdigit():
            number = signal.SIGRTMIN + int(rt_min)
        elif rt_max.isdigit():
            number = signal.SIGRTMAX - int(rt_max)
        else:
            member = signal.Signals.__members__.get(name)
            number = int(member) if member is not None else 0
    return number if 0 < number < signal.NSIG else 0


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

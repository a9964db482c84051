"""Signals through `_signal`, the C module `signal` re-exports, and signal names <-> numbers.

`import signal` imports enum and builds the Signals, Handlers and Sigmasks enums (~1.2 ms of a
`minirun --rm IMAGE true`, ~3.7 ms with enum). `_signal` has the same functions and int constants; what
differs is only that results are plain ints (`signal(...)` and `getsignal(...)` return 0 for SIG_DFL, not
Handlers.SIG_DFL; `pthread_sigmask` returns a set of ints), so compare handlers with `==`, never `is`.
"""

from __future__ import annotations

from _signal import (
    NSIG,
    SIG_BLOCK,
    SIG_DFL,
    SIG_IGN,
    SIG_SETMASK,
    SIG_UNBLOCK,
    SIGABRT,
    SIGALRM,
    SIGCHLD,
    SIGCONT,
    SIGHUP,
    SIGINT,
    SIGKILL,
    SIGPIPE,
    SIGQUIT,
    SIGSTOP,
    SIGTERM,
    SIGTSTP,
    SIGTTIN,
    SIGTTOU,
    SIGUSR1,
    SIGUSR2,
    SIGWINCH,
    getsignal,
    pthread_sigmask,
    set_wakeup_fd,
    signal,
)

__all__ = [
    "NSIG", "SIGABRT", "SIGALRM", "SIGCHLD", "SIGCONT", "SIGHUP", "SIGINT", "SIGKILL", "SIGPIPE", "SIGQUIT",
    "SIGSTOP", "SIGTERM", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIG_BLOCK",
    "SIG_DFL", "SIG_IGN", "SIG_SETMASK", "SIG_UNBLOCK", "getsignal", "name", "number", "pthread_sigmask",
    "set_wakeup_fd", "signal",
]  # fmt: skip

_NAMES: dict[int, str] = {}
_NUMBERS: dict[str, int] = {}


def _tables() -> tuple[dict[int, str], dict[str, int]]:
    """Every SIG* constant of `_signal` (aliases too: SIGIOT, SIGCLD, SIGPOLL), as `signal.Signals` has them."""
    if not _NUMBERS:
        import _signal

        found = [(v, k) for k, v in vars(_signal).items() if k.startswith("SIG") and not k.startswith("SIG_")]
        for value, key in sorted(found):  # Signals' canonical name of an alias pair: the first in order
            _NAMES.setdefault(value, key)
            _NUMBERS[key] = value
    return _NAMES, _NUMBERS


def name(signum: int) -> str | None:
    """`signal.Signals(signum).name` ("SIGTERM"), or None for a number with no name."""
    return _tables()[0].get(signum)


def number(signame: str) -> int | None:
    """The number of a signal named exactly as `signal.Signals` names it ("SIGTERM", "SIGRTMIN"), else None."""
    return _tables()[1].get(signame)

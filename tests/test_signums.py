"""minicache.signums against the signal module: same constants, same handlers, same names."""

from __future__ import annotations

import os
import signal

from minicache import signums


def test_constants_and_functions_are_signals() -> None:
    import _signal

    for name in signums.__all__:
        if name in ("name", "number"):
            continue
        assert getattr(signums, name) is getattr(_signal, name), name
        assert getattr(signums, name) == getattr(signal, name) or callable(getattr(signal, name)), name


def test_names_and_numbers_match_signal_signals() -> None:
    for n in range(-1, signal.NSIG + 2):
        try:
            expected = signal.Signals(n).name
        except ValueError:
            expected = None
        assert signums.name(n) == expected, n
    for alias, member in signal.Signals.__members__.items():  # aliases too: SIGIOT, SIGCLD, SIGPOLL
        assert signums.number(alias) == member.value, alias
    assert signums.number("SIGCLD") == signal.SIGCHLD and signums.name(signal.SIGCHLD) == "SIGCHLD"
    for bad in ("TERM", "sigterm", "SIG_DFL", "SIGNOPE", ""):
        assert signums.number(bad) is None


def test_handlers_are_plain_ints_and_round_trip() -> None:
    """What differs from signal: SIG_DFL/SIG_IGN come back as 0/1, which restore the same disposition."""
    seen: list[int] = []
    old = signums.signal(signal.SIGUSR1, lambda signum, _frame: seen.append(signum))
    try:
        assert old == signal.SIG_DFL and type(old) is int
        os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [signal.SIGUSR1]
        assert signums.getsignal(signal.SIGUSR1) is signal.getsignal(signal.SIGUSR1)
    finally:
        signums.signal(signal.SIGUSR1, old)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signums.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python ignores SIGPIPE at start-up
    blocked = signums.pthread_sigmask(signums.SIG_BLOCK, [signal.SIGUSR2])
    try:
        assert signal.SIGUSR2 in signums.pthread_sigmask(signums.SIG_BLOCK, [])
    finally:
        signums.pthread_sigmask(signums.SIG_SETMASK, blocked)
    assert signal.SIGUSR2 not in signal.pthread_sigmask(signal.SIG_BLOCK, [])

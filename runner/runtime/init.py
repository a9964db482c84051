"""A minimal init for `--init` when tini is not installed: reap zombies, forward signals, pass on the status.

Runs as the container's PID 1 (the runtime's child process, already inside every namespace and under
every restriction the command gets) and forks the command. Like tini: the command runs in its own
process group (the foreground one on a terminal), and the init exits with the command's status, or
128+N when a signal N killed it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import NoReturn

from minirun.runtime import syscalls

NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}


def run(start_command: Callable[[], NoReturn], on_forked: Callable[[], None]) -> NoReturn:
    """Fork `start_command` (which execs or exits) and act as its init until it exits.

    `on_forked` runs in the init right after the fork (the runtime closes its channel end there).
    """
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        if os.isatty(0):
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, old)
        start_command()
    on_forked()
    with contextlib.suppress(OSError, ValueError, IndexError):
        syscalls.set_process_title("init")  # not the host's `python .../minirun ...` command line

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in range(1, signal.NSIG):
        if signum in NOT_FORWARDED:
            continue
        try:
            signal.signal(signum, forward)
        except (OSError, ValueError):
            continue
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)

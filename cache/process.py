"""Process identity that survives PID reuse: (pid, start time), plus the boot ID.

The store names its staging entries after the process that made them, to tell debris from work in
progress; minirun records its containers' processes the same way.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def is_alive(pid: int, started: int | None) -> bool:
    """True if `pid` still runs and is the same process that had start time `started`."""
    if pid <= 0:
        return False
    now = start_time(pid)
    if now is None:
        return False
    if started is not None and now != started:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # read() says ESRCH when it ended after open()
        return False
    return state not in (b"Z", b"X")


def boot_id() -> str:
    """This boot's random ID: state recorded under another boot ID describes processes that are gone."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def self_token() -> str:
    """`PID-STARTTIME` of this process, used to name staging entries so debris can be told from work."""
    pid = os.getpid()
    return f"{pid}-{start_time(pid)}"

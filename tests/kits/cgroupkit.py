"""Helpers for the cgroup tests: child processes that join a cgroup, and waiting for a condition."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from minirun import cgroups

from kits.runkit import wait_until

wait_for = functools.partial(wait_until, interval=0.01)  # a cgroup file changes at once: poll often


# A workload whose progress shows from outside: it counts, writing each number to the file it is given (replaced
# whole, so a reader never sees half a number), until it is killed. Frozen, the number stops.
COUNTER = """
import os, sys, time
n = 0
while True:
    n += 1
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.01)
"""


def remove_parent(name: str) -> None:
    """The cgroup parent `name` (a test's or a benchmark's own) in every hierarchy, with the empty cgroups the
    runtimes left under it (runc makes one per container and does not remove the parent)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / name
        if parent.is_dir():
            for child in sorted(parent.glob("*/"), reverse=True):
                child.rmdir()
            parent.rmdir()


class Workload:
    """A Python child process that joined a cgroup before exec (as the container's init will)."""

    def __init__(self, cg: cgroups.Cgroup, code: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], preexec_fn=cg.join, close_fds=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

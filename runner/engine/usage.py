"""What a running container uses now: its cgroup's counters, its network counters and its processes.

One place for these readings: `minirun stats`/`top` print them, `minirun serve` answers the Engine API's
stats/top and feeds the dashboard with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minirun.cgroups import CgroupStats
    from minirun.cgroups.base import Cgroup
    from minirun.engine.containers import Container


def net_io(pid: int) -> tuple[int, int] | None:
    """(received, sent) bytes of every interface but loopback in the network namespace of `pid`."""
    counters = interfaces(pid)
    if counters is None:
        return None
    return sum(v[0] for v in counters.values()), sum(v[1] for v in counters.values())


def interfaces(pid: int) -> dict[str, tuple[int, int, int, int]] | None:
    """Per interface but loopback in the network namespace of `pid`: (rx bytes, tx bytes, rx packets, tx packets)."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    out = {}
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 10:
            out[name.strip()] = (int(fields[0]), int(fields[8]), int(fields[1]), int(fields[9]))
    return out


def reading(container: Container, cgroup: Cgroup | None = None) -> tuple[CgroupStats | None, int]:
    """The cgroup's counters and the init's PID; (None, 0) when the container does not run.

    A caller that reads the same container again and again (a stats stream) passes its `cgroup`
    (lifecycle.container_cgroup), which is otherwise found from the spec each time.
    """
    from minicache.errors import MiniError
    from minirun.engine import lifecycle
    from minirun.engine.containers import ACTIVE

    state = lifecycle.observe(container, patience=0)
    if state.Status not in ACTIVE:
        return None, 0
    try:
        return (cgroup or lifecycle.container_cgroup(container)).stats(), state.Pid
    except MiniError:  # it ended between the two reads
        return None, 0


def filter_ps(output: str, pids: set[int]) -> list[str]:
    """The header of `ps` output and the lines whose PID column is one of `pids`."""
    from minicache.errors import InvalidSpec

    lines = output.splitlines()
    if not lines:
        return []
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidSpec("the ps options give no PID column", hint="include PID, e.g. -o pid,comm")
    column = header.index("PID")
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split(None, column + 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            kept.append(line)
    return kept


def in_pid_namespace(pids: list[int], init: int) -> set[int]:
    """The PIDs that share the container init's PID namespace: an `exec`'s stand-in is in the cgroup, not
    in the container (minirun.runtime.child)."""
    import os

    try:
        own = os.stat(f"/proc/{init}/ns/pid")
    except OSError:
        return set(pids)
    out = set()
    for pid in pids:
        try:
            ns = os.stat(f"/proc/{pid}/ns/pid")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (own.st_dev, own.st_ino):
            out.add(pid)
    return out


def processes(container: Container, ps_args: list[str] | None = None) -> list[str]:
    """`docker top`: the host's `ps` (default -ef) lines of the processes in the container's cgroup, header first.

    As Docker does: ps runs on the host and its lines are kept by PID.
    """
    import subprocess

    from minicache.errors import InvalidSpec
    from minirun.engine import lifecycle
    from minirun.engine.containers import ACTIVE
    from minirun.errors import ContainerStateError

    if lifecycle.observe(container).Status not in ACTIVE:
        raise ContainerStateError(f"container {container.name} is not running", hint="start it first")
    pids = in_pid_namespace(lifecycle.container_cgroup(container).pids(), container.state().Pid)
    try:
        result = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InvalidSpec("ps is not installed on this host", hint="install procps") from None
    if result.returncode != 0:
        raise InvalidSpec(f"ps failed: {result.stderr.strip()}", hint="check the ps options")
    return filter_ps(result.stdout, pids)

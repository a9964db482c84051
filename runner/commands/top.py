"""`minirun top CONTAINER [ps OPTIONS]`: the container's processes, as the host's `ps` shows them.

As Docker does: run `ps` (default options -ef) on the host and keep the lines whose PID is in the
container's cgroup.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS")


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


def _in_pid_namespace(pids: list[int], init: int) -> set[int]:
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


def execute(args: argparse.Namespace) -> int:
    import subprocess

    from minicache.errors import ContainerStateError, InvalidSpec
    from minirun import engine, lifecycle
    from minirun.commands.common import get, open_store
    from minirun.containers import ACTIVE

    container = get(open_store(args, create=False), args.container)
    if lifecycle.observe(container).Status not in ACTIVE:
        raise ContainerStateError(f"container {args.container} is not running", hint="start it first")
    pids = _in_pid_namespace(engine.container_cgroup(container).pids(), container.state().Pid)
    try:
        result = subprocess.run(["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InvalidSpec("ps is not installed on this host", hint="install procps") from None
    if result.returncode != 0:
        raise InvalidSpec(f"ps failed: {result.stderr.strip()}", hint="check the ps options")
    print("\n".join(filter_ps(result.stdout, pids)))
    return 0

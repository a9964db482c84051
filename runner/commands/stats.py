"""`minirun stats [-a] [--no-stream] [--format json] [CONTAINER...]`: live resource use, like docker stats.

CPU % (of one CPU, from the cgroup's CPU time between two readings a second apart), MEM USAGE / LIMIT
(without the reclaimable page cache; the host's memory for an unlimited container), MEM %, NET I/O (the
container's network namespace, loopback left out), BLOCK I/O and PIDS. Without names: the running
containers (-a: all; stopped ones show no figures).
"""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.cgroups import CgroupStats
    from minirun.containers import Container

INTERVAL = 1.0  # seconds between readings, as docker stats


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all containers (default: running ones)")
    parser.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def net_io(pid: int) -> tuple[int, int] | None:
    """(received, sent) bytes of every interface but loopback in the network namespace of `pid`."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    received = sent = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            received += int(fields[0])
            sent += int(fields[8])
    return received, sent


def _reading(container: Container) -> tuple[CgroupStats | None, int]:
    from minicache.errors import MiniError
    from minirun import engine, lifecycle
    from minirun.containers import ACTIVE

    state = lifecycle.observe(container, patience=0)
    if state.Status not in ACTIVE:
        return None, 0
    try:
        return engine.container_cgroup(container).stats(), state.Pid
    except MiniError:  # it ended between the two reads
        return None, 0


def execute(args: argparse.Namespace) -> int:
    import time

    from minirun.cgroups import stats as fmt
    from minirun.commands.common import get, open_store
    from minirun.containers import ContainerStore

    store = open_store(args, create=False)
    if args.containers:
        containers = [get(store, ref) for ref in args.containers]
        named = True
    else:
        containers, named = ContainerStore(store).all(), False
    total = fmt.host_memory()
    before = {c.id: _reading(c)[0] for c in containers}
    try:
        while True:
            time.sleep(INTERVAL)
            rows = []
            for container in containers:
                now, pid = _reading(container)
                if now is None:
                    if named or args.all:
                        rows.append(_empty_row(container))
                    continue
                net = net_io(pid) if pid else None
                rows.append(
                    fmt.stats_row(
                        container.id, container.name, now, before.get(container.id), net_io=net, total_memory=total
                    )
                )
                before[container.id] = now
            if args.format == "json":
                for row in rows:
                    print(fmt.format_json(row))
            else:
                if not args.no_stream and sys.stdout.isatty():
                    print("\033[2J\033[H", end="")
                print(fmt.format_table(rows))
            sys.stdout.flush()
            if args.no_stream:
                return 0
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


def _empty_row(container: Container) -> dict[str, str]:
    from minirun.cgroups.stats import NO_VALUE

    row = dict.fromkeys(("CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"), NO_VALUE)
    row.update(ID=container.id[:12], Name=container.name)
    return row

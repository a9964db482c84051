"""`minirun stats [-a] [--no-stream] [--format json] [CONTAINER...]`: live resource use, like docker stats.

CPU % (of one CPU, from the cgroup's CPU time between two readings a second apart), MEM USAGE / LIMIT
(without the reclaimable page cache; the host's memory for an unlimited container), MEM %, NET I/O (the
container's network namespace, loopback left out), BLOCK I/O and PIDS. Without names: the running
containers (-a: all; stopped ones show no figures).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minirun.engine.containers import Container

INTERVAL = 1.0  # seconds between readings, as docker stats


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all containers (default: running ones)")
    parser.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    import time

    from minirun.cgroups import stats as fmt
    from minirun.cli.commands.common import get, open_store
    from minirun.engine.containers import ContainerStore
    from minirun.engine.usage import net_io, reading

    store = open_store(args, create=False)
    if args.containers:
        containers = [get(store, ref) for ref in args.containers]
        named = True
    else:
        containers, named = ContainerStore(store).all(), False
    total = fmt.host_memory()
    before = {c.id: reading(c)[0] for c in containers}
    try:
        while True:
            time.sleep(INTERVAL)
            rows = []
            for container in containers:
                now, pid = reading(container)
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

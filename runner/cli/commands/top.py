"""`minirun top CONTAINER [ps OPTIONS]`: the container's processes, as the host's `ps` shows them.

As Docker does: run `ps` (default options -ef) on the host and keep the lines whose PID is in the
container's cgroup.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import get, open_store
    from minirun.engine import usage

    container = get(open_store(args, create=False), args.container)
    print("\n".join(usage.processes(container, args.ps_args)))
    return 0

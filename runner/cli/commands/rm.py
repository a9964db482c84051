"""`minirun rm [-f] [-v] CONTAINER...`: remove containers; a running one only with -f (killed first).

Whatever a crash left behind goes too: mounts, the cgroup and processes in it. -v is accepted for
Docker's sake: minirun has no anonymous volumes, and bind-mounted host paths are never deleted.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="kill and remove a running container")
    parser.add_argument("-v", "--volumes", action="store_true", help="accepted; there are no anonymous volumes")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each_container
    from minirun.engine import lifecycle

    return each_container(args, lambda store, container: lifecycle.remove(store, container, force=args.force))

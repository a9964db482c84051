"""`minirun stop [-t SECONDS] CONTAINER...`: the stop signal, then SIGKILL after the timeout.

The signal is the image's StopSignal (or --stop-signal, default SIGTERM); the timeout defaults to the
container's --stop-timeout or 10 s. A stopped container stays as it is (exit 0); no restart follows.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", "--timeout", type=int, dest="time", metavar="SECONDS", help="grace period")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each_container
    from minirun.engine import lifecycle

    return each_container(args, lambda store, container: lifecycle.stop(store, container, args.time))

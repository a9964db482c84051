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
    from minirun.cli.commands.common import each, get, open_store
    from minirun.engine import lifecycle

    store = open_store(args)

    def stop(ref: str) -> None:
        lifecycle.stop(store, get(store, ref), args.time)
        print(ref)

    return each(args.containers, stop)

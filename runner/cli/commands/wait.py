"""`minirun wait CONTAINER...`: block until each container stops, then print its exit code."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each, get, open_store
    from minirun.engine import lifecycle

    store = open_store(args, create=False)
    return each(args.containers, lambda ref: print(lifecycle.wait_exit(get(store, ref)), flush=True))

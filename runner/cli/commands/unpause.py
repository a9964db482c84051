"""`minirun unpause CONTAINER...`: let a paused container's processes run again."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each, get, open_store
    from minirun.engine import lifecycle

    store = open_store(args)

    def act(ref: str) -> None:
        lifecycle.unpause(store, get(store, ref))
        print(ref)

    return each(args.containers, act)

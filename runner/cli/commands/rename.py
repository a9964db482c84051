"""`minirun rename CONTAINER NEW_NAME`."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("new_name", metavar="NEW_NAME")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import get, open_store
    from minirun.engine.containers import ContainerStore

    store = open_store(args)
    container = get(store, args.container)
    with container.lock():
        ContainerStore(store).rename(container, args.new_name)
    return 0

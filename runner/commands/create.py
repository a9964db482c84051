"""`minirun create [OPTIONS] IMAGE [COMMAND [ARG...]]`: make a container without starting it; prints its ID."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from minirun.commands.run import add_container_flags

    add_container_flags(parser)


def execute(args: argparse.Namespace) -> int:
    from minirun.cgroups import show_warnings
    from minirun.commands.common import PROG, open_store
    from minirun.commands.run import create

    show_warnings(PROG)
    container = create(open_store(args), args, attach=False)
    print(container.id)
    return 0

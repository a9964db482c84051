"""`minirun create [OPTIONS] IMAGE [COMMAND [ARG...]]`: make a container without starting it; prints its ID."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minirun.cli.commands import run

if TYPE_CHECKING:
    import argparse

OPTIONS = run.CONTAINER_OPTIONS  # run's but -d


def configure(parser: argparse.ArgumentParser) -> None:
    run.add_container_flags(parser, OPTIONS)


def execute(args: argparse.Namespace) -> int:
    from minirun.cgroups import show_warnings
    from minirun.cli.commands.common import PROG, open_store

    show_warnings(PROG)
    container = run.create(open_store(args), args, attach=False)
    print(container.id)
    return 0

"""`minirun pause CONTAINER...`: freeze every process of the container (cgroup freezer)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each_container
    from minirun.engine import lifecycle

    return each_container(args, lifecycle.pause)

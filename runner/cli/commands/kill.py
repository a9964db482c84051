"""`minirun kill [-s SIGNAL] CONTAINER...`: send a signal (default SIGKILL) to the container's init."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", default="SIGKILL", metavar="SIGNAL", help="name or number (default KILL)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each_container
    from minirun.engine import lifecycle
    from minirun.engine.flags import parse_signal

    sig = parse_signal(args.signal)
    return each_container(args, lambda store, container: lifecycle.kill(store, container, sig))

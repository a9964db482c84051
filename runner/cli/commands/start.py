"""`minirun start [-a] [-i] CONTAINER...`: start stopped containers.

Without -a each container is handed to a monitor (as `run -d`) and its name is printed; starting a
running container does nothing. With -a (one container) this process runs it in the foreground, with
its saved configuration and its filesystem as it was left, and exits with its status; -i passes stdin.
A container that already runs is followed instead: its log until it ends, then its status.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minicache.store import Store
    from minirun.engine.containers import Container


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr and wait for the exit")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import each, get, open_store

    store = open_store(args)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            from minicache.errors import InvalidSpec

            raise InvalidSpec("you cannot start and attach multiple containers at once", hint="start them one by one")
        return _attached(store, get(store, args.containers[0]), args.interactive)
    args.container_process = False  # a detached start's errors exit 1, as `docker start`
    return each(args.containers, lambda ref: _detached(args, store, ref))


def _detached(args: argparse.Namespace, store: Store, ref: str) -> None:
    from minirun.cli.commands.common import PROG, get, store_args
    from minirun.engine import monitor

    container = get(store, ref)
    if not container.process_alive(container.state()):  # the helper checks again, holding the lock
        report = monitor.launch(store_args(args), monitor.existing(container.id))
        for warning in report.get("warnings", ()):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    print(ref)


def _attached(store: Store, container: Container, interactive: bool) -> int:
    from minirun.cgroups import show_warnings
    from minirun.cli.commands.common import PROG
    from minirun.engine import lifecycle, steps
    from minirun.engine.containers import ACTIVE, RESTARTING

    show_warnings(PROG)
    with container.lock():
        state = lifecycle.settle(store, container)
    if state.Status in ACTIVE or state.Status == RESTARTING:
        from minirun.cli.commands.logs import follow

        follow(container, tail=0, timestamps=False)
        return lifecycle.wait_exit(container)
    return steps.run_attached(store, container, stdin_open=interactive)

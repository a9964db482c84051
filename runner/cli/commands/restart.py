"""`minirun restart [-t SECONDS] CONTAINER...`: stop (if running) and start again, detached.

The saved configuration and the container's filesystem are kept, as with `stop` + `start`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from minicache.store import Store
    from minirun.engine.containers import Container


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", "--timeout", type=int, dest="time", metavar="SECONDS", help="grace period")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _stop_then_start(container_id: str, timeout: int | None) -> Callable[[Store], Container]:
    """The monitor's first job: stop the running container (its old monitor records the exit), then start."""

    def job(store: Store) -> Container:
        from minirun.engine import lifecycle
        from minirun.engine.containers import Container

        container = Container(store, container_id)
        lifecycle.stop(store, container, timeout)
        from minicache import events

        events.container(store, "restart", container.id, container.record)
        return container

    return job


def execute(args: argparse.Namespace) -> int:
    from minirun.cli.commands.common import PROG, each, get, open_store, store_args
    from minirun.engine import monitor

    store = open_store(args)

    def restart(ref: str) -> None:
        container = get(store, ref)
        report = monitor.launch(store_args(args), _stop_then_start(container.id, args.time))
        for warning in report.get("warnings", ()):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        print(ref)

    return each(args.containers, restart)

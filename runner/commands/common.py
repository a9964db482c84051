"""Helpers shared by command modules."""

from __future__ import annotations

import sys

from minicache.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from minirun.containers import Container

PROG = "minirun"


def open_store(args: argparse.Namespace) -> Store:
    """The store named by --root/--runroot (or the environment, or the default)."""
    return Store(args.root, args.runroot)


def store_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """What `Store(...)` needs, for a process that opens the store itself (the monitor's helpers)."""
    return args.root, args.runroot


def get(store: Store, ref: str) -> Container:
    """A container by name, ID or unique ID prefix; NotFound ("No such container: x") otherwise."""
    from minirun.containers import ContainerStore

    return ContainerStore(store).get(ref)


def each(refs: list[str], action: Callable[[str], None]) -> int:
    """Docker's way with several containers: act on each, report each failure on its own line, carry on.

    Exit status 1 if any failed, else 0.
    """
    from minicache.errors import MiniError, one_line

    failed = False
    for ref in refs:
        try:
            action(ref)
        except MiniError as err:
            print(one_line(PROG, err), file=sys.stderr)
            failed = True
    return 1 if failed else 0

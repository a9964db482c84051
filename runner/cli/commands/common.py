"""Helpers shared by command modules."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from minicache.store import Store

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from minirun.engine.containers import Container

PROG = "minirun"


def require_root() -> None:
    """Every minirun command that touches the store needs root: refuse at once, before anything is made."""
    if os.geteuid() != 0:
        from minicache.errors import PermissionDenied

        raise PermissionDenied(
            "minirun needs root: it mounts filesystems and makes namespaces and cgroups",
            hint="run it as root (sudo minirun ...)",
        )


def open_store(args: argparse.Namespace, *, create: bool = True) -> Store:
    """The store named by --root/--runroot (or the environment, or the default).

    Commands that only read (`ps`, `inspect`, `logs`, ...) pass `create=False`: a store that does not
    exist is an error, not made.
    """
    require_root()
    return Store(args.root, args.runroot, create=create)


def store_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """What `Store(...)` needs, for a process that opens the store itself (the monitor's helpers).

    The store is opened here once, so that a store that cannot be used fails in the CLI, in one line.
    """
    open_store(args)
    return args.root, args.runroot


def get(store: Store, ref: str) -> Container:
    """A container by name, ID or unique ID prefix; NotFound ("No such container: x") otherwise."""
    from minirun.engine.containers import ContainerStore

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


def each_container(args: argparse.Namespace, action: Callable[[Store, Container], object]) -> int:
    """`action` on each CONTAINER the command names, then the name as given printed (Docker's verbs: stop,
    kill, rm, pause, ...); failures as `each`."""
    store = open_store(args)

    def act(ref: str) -> None:
        action(store, get(store, ref))
        print(ref)

    return each(args.containers, act)

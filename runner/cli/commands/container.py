"""`minirun container prune [-f]` (and `container ls`, as `ps`): commands on containers as a group."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    from minirun.cli.commands import ps

    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    prune = sub.add_parser("prune", help="remove all stopped containers", description="Remove all stopped containers")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    for name in ("ls", "list", "ps"):
        ps.configure(sub.add_parser(name, help="list containers" if name == "ls" else argparse.SUPPRESS))


def _size(path: str) -> int:
    """The sizes of everything the container wrote (its upper directory, as deep as it made it)."""
    from minicache.gc import tree_size

    return tree_size(path, allocated=False)


def prune(args: argparse.Namespace) -> int:
    from minicache.errors import MiniError, NotFound, one_line
    from minirun.cli.commands.common import PROG, open_store
    from minirun.engine import lifecycle
    from minirun.engine.containers import CREATED, EXITED, ContainerStore
    from minishow import human_size

    if not args.force:
        print("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ", end="")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    store = open_store(args)
    deleted, reclaimed, failed = [], 0, False
    for container in ContainerStore(store).all():
        try:
            if lifecycle.observe(container).Status not in (CREATED, EXITED):
                continue
            size = _size(str(container.upper))
            lifecycle.remove(store, container)  # refuses (and says so) if it was started meanwhile
        except MiniError as err:
            if not isinstance(err, NotFound):  # removed by another command meanwhile: not a failure
                print(one_line(PROG, err), file=sys.stderr)
                failed = True
            continue
        deleted.append(container.id)
        reclaimed += size
    if deleted:
        print("Deleted Containers:")
        print("\n".join(deleted))
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 1 if failed else 0


def execute(args: argparse.Namespace) -> int:
    if args.subcommand == "prune":
        return prune(args)
    from minirun.cli.commands import ps

    return ps.execute(args)

"""`minirun logs [-f] [--tail N] [-t] CONTAINER`: what a detached container wrote (stdout and stderr apart).

Containers started in the foreground write to the terminal directly and keep no log.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from minirun.engine.containers import Container


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing while the container runs")
    parser.add_argument("-n", "--tail", default="all", metavar="N", help="only the last N lines (default: all)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    parser.add_argument("container", metavar="CONTAINER")


def _emit(entries: list[dict[str, Any]], timestamps: bool) -> None:
    for entry in entries:
        out = sys.stderr.buffer if entry.get("stream") == "stderr" else sys.stdout.buffer
        text = entry.get("log", "")
        if timestamps:
            text = f"{entry.get('time', '')} {text}"
        out.write(text.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()
    sys.stderr.buffer.flush()


def follow(container: Container, *, tail: int | None, timestamps: bool, keep_following: bool = True) -> None:
    """Print the log (its last `tail` entries), then, while the container runs, what it adds."""
    from minirun.engine import logs

    for entries in logs.follow(container, tail=tail, keep_following=keep_following):
        _emit(entries, timestamps)


def execute(args: argparse.Namespace) -> int:
    from minicache.errors import InvalidSpec
    from minirun.cli.commands.common import get, open_store

    if args.tail == "all":
        tail = None
    elif args.tail.isdigit():
        tail = int(args.tail)
    else:
        raise InvalidSpec(f"invalid --tail {args.tail!r}", hint="give a number of lines or 'all'")
    container = get(open_store(args, create=False), args.container)
    with contextlib.suppress(BrokenPipeError):
        follow(container, tail=tail, timestamps=args.timestamps, keep_following=args.follow)
    return 0

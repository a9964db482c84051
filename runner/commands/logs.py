"""`minirun logs [-f] [--tail N] [-t] CONTAINER`: what a detached container wrote (stdout and stderr apart).

Containers started in the foreground write to the terminal directly and keep no log.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minirun.containers import Container


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


def _emit_all(path: Any, offset: int, timestamps: bool) -> int:
    """Print every complete entry from `offset` on, a bounded piece at a time; the offset after them."""
    from minirun import logs

    while True:
        entries, end = logs.read_entries(path, offset)
        if end == offset:
            return offset
        offset = end
        _emit(entries, timestamps)


def follow(container: Container, *, tail: int | None, timestamps: bool, keep_following: bool = True) -> None:
    """Print the log (its last `tail` entries), then, while the container runs, what it adds."""
    import time

    from minirun import lifecycle, logs
    from minirun.containers import ACTIVE, RESTARTING

    path = container.dir / logs.LOG_NAME
    if tail is None:
        offset = _emit_all(path, 0, timestamps)
    else:
        from collections import deque

        last: deque[dict[str, Any]] = deque(maxlen=tail)
        offset = 0
        while True:
            entries, end = logs.read_entries(path, offset)
            if end == offset:
                break
            offset = end
            last.extend(entries)
        _emit(list(last), timestamps)
    delay = 0.01
    while keep_following:
        state = lifecycle.observe(container, patience=0)
        running = state.Status in ACTIVE or state.Status == RESTARTING
        if not running:
            time.sleep(0.05)  # the monitor flushes the last lines as the pipes close
        start = offset
        offset = _emit_all(path, offset, timestamps)
        if not running:
            return
        delay = 0.01 if offset != start else min(delay * 2, 0.2)
        time.sleep(delay)


def execute(args: argparse.Namespace) -> int:
    from minicache.errors import InvalidSpec
    from minirun.commands.common import get, open_store

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

"""`minirun ps [-a] [-q] [--no-trunc] [--format json] [--filter KEY=VALUE...]`: list containers.

Shows the truth, not just what the records claim: a container whose process is gone is shown exited
(with its monitor's exit code, or 255 when nothing saw it end) although no command has cleaned it yet.
Filters: status=created|restarting|running|removing|paused|exited|dead, name=REGEX, id=PREFIX; the same
key given twice matches either value, different keys must all match (as Docker).
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show every container (default: running ones)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    parser.add_argument("--no-trunc", action="store_true", help="do not shorten IDs and commands")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE", help="filter the list")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    from minicache.errors import InvalidSpec
    from minirun.cli.views import STATUSES

    filters: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in ("status", "name", "id"):
            raise InvalidSpec(f"invalid filter {item!r}", hint="use status=..., name=... or id=...")
        if key == "status" and value not in STATUSES:
            raise InvalidSpec(f"invalid filter 'status={value}'", hint=f"status is one of {', '.join(STATUSES)}")
        filters.setdefault(key, []).append(value)
    return filters


def matches(filters: dict[str, list[str]], container_id: str, name: str, status: str) -> bool:
    import re

    checks = {
        "status": lambda v: status == v,
        "name": lambda v: re.search(v, name) is not None,
        "id": lambda v: container_id.startswith(v),
    }
    return all(any(checks[key](v) for v in values) for key, values in filters.items())


def execute(args: argparse.Namespace) -> int:
    import time

    from minicache.errors import NotFound
    from minirun.cli import views
    from minirun.cli.commands.common import open_store
    from minirun.engine import lifecycle
    from minirun.engine.containers import ContainerStore

    filters = parse_filters(args.filter)
    shown_all = args.all or "status" in filters
    rows = []
    now = time.time()
    for container in ContainerStore(open_store(args, create=False)).all():
        try:
            state = lifecycle.observe(container)
            record = container.record
        except NotFound:  # removed while we listed
            continue
        if not shown_all and state.Status not in ("running", "paused", "restarting"):
            continue
        if not matches(filters, container.id, record.get("Name", ""), state.Status):
            continue
        rows.append((record.get("Created", ""), views.ps_row(container, state, truncate=not args.no_trunc, now=now)))
    rows.sort(key=lambda item: item[0], reverse=True)  # newest first
    if args.quiet:
        for _, row in rows:
            print(row["ID"])
    elif args.format == "json":
        import json

        for _, row in rows:
            print(json.dumps(row, separators=(",", ":")))
    else:
        print(views.table([row for _, row in rows], views.PS_COLUMNS))
    return 0

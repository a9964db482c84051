"""`minibuild build` read without typer: a fully cached rebuild is mostly start-up, and typer's import is
the largest part of it. The options are the typer command's (minibuild.commands.build, which still serves
`--help` and anything this reader does not take); both end in `run`.
"""

from __future__ import annotations

import argparse
import os
import sys

PROG = "minibuild"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def pairs(values: list[str] | None, flag: str, *, bare_from_env: bool = False) -> dict[str, str]:
    """`KEY=VALUE` options; with `bare_from_env`, a bare `KEY` takes the environment's value (Docker's --build-arg)."""
    from minicache.errors import InvalidSpec

    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidSpec(f"{flag} {item!r} has no name", hint=f"write {flag} KEY=VALUE")
        if not sep:
            if not bare_from_env:
                raise InvalidSpec(f"{flag} {item!r} is not KEY=VALUE", hint=f"write {flag} KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def run(
    root: str | None,
    context: str,
    *,
    file: str | None,
    tags: list[str],
    build_args: list[str],
    target: str | None,
    platform: str | None,
    no_cache: bool,
    network: str,
    compression: str,
    timestamp: int | None,
    labels: list[str],
    quiet: bool,
) -> None:
    """The `build` command behind both readers: check the names, build, print the ID when quiet."""
    import io

    from minibuild.build.builder import BuildOptions, build
    from minicache.reference import parse
    from minicache.store import Store

    for name in tags:
        parse(name)  # a bad name fails before any step runs
    opts = BuildOptions(
        context=context,
        file=file,
        tags=list(tags),
        build_args=pairs(build_args, "--build-arg", bare_from_env=True),
        target=target,
        platform=platform,
        no_cache=no_cache,
        network=network,
        compression=compression,
        timestamp=timestamp,
        labels=pairs(labels, "--label"),
        out=io.StringIO() if quiet else sys.stdout,
        quiet=quiet,
    )
    result = build(Store(root), opts)
    if quiet:
        print(result.image_id)


def main(args: list[str]) -> int | None:
    """Run `build` from `args`; None when the line is not one this reader takes (typer's parser then does)."""
    root = os.environ.get("MINICONTAINER_ROOT") or None
    debug = False
    i = 0
    while i < len(args) and args[i] != "build":
        if args[i] == "--root" and i + 1 < len(args):
            root = args[i + 1]
            i += 2
        elif args[i].startswith("--root="):
            root = args[i].split("=", 1)[1]
            i += 1
        elif args[i] == "--debug":
            debug = True
            i += 1
        else:
            return None
    if i >= len(args) or any(a in ("--help", "-h") for a in args[i + 1 :]):
        return None
    parser = _Parser(prog=f"{PROG} build", add_help=False)
    parser.add_argument("context")
    parser.add_argument("-f", "--file")
    parser.add_argument("-t", "--tag", action="append", default=[])
    parser.add_argument("--build-arg", action="append", default=[])
    parser.add_argument("--target")
    parser.add_argument("--platform")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--network", default="none")
    parser.add_argument("--compression", default="gzip")
    parser.add_argument("--timestamp", type=int)
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("-q", "--quiet", action="store_true")
    from minicache.errors import MiniError, StoreUnavailable, one_line

    try:
        ns = parser.parse_args(args[i + 1 :])
    except _UsageError as e:
        print(f"{PROG}: error: {e}; see '{PROG} build --help'", file=sys.stderr)
        return 125
    try:
        run(
            root, ns.context, file=ns.file, tags=ns.tag, build_args=ns.build_arg, target=ns.target,
            platform=ns.platform, no_cache=ns.no_cache, network=ns.network, compression=ns.compression,
            timestamp=ns.timestamp, labels=ns.label, quiet=ns.quiet,
        )  # fmt: skip
    except MiniError as err:
        if debug:
            raise
        print(one_line(PROG, err), file=sys.stderr)
        return err.exit_code if isinstance(err, StoreUnavailable) else 1
    except KeyboardInterrupt:
        return 130
    return 0

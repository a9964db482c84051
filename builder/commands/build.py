"""`minibuild build [OPTIONS] CONTEXT`: a Containerfile into an image (see minibuild.build.builder)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from minibuild.app import app


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


@app.command("build")
def build_cmd(
    ctx: typer.Context,
    context: Annotated[str, typer.Argument(metavar="CONTEXT", help="Directory, tar archive, or - (a tar on stdin).")],
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="The Containerfile (default CONTEXT/Containerfile).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Name the image NAME[:TAG]; repeatable.")] = None,
    build_arg: Annotated[
        list[str] | None, typer.Option("--build-arg", help="Set an ARG: KEY=VALUE; repeatable.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Build this stage (and what it needs) only.")] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="OS/ARCH of the image (default: this host).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step again.")] = False,
    network: Annotated[str, typer.Option("--network", help="RUN steps' network: none (default) or host.")] = "none",
    compression: Annotated[
        str, typer.Option("--compression", help="Layer blobs: gzip (default), zstd or none.")
    ] = "gzip",
    timestamp: Annotated[
        int | None,
        typer.Option("--timestamp", help="Seconds since the epoch for every time in the image: reproducible builds."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="Add a label KEY=VALUE; repeatable.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the image ID.")] = False,
) -> None:
    """Build an image from a Containerfile (Dockerfile syntax), reusing cached steps."""
    import io

    from minibuild.build.builder import BuildOptions, build
    from minicache.reference import parse
    from minicache.store import Store

    tags = list(tag or [])
    for name in tags:
        parse(name)  # a bad name fails before any step runs
    opts = BuildOptions(
        context=context,
        file=file,
        tags=tags,
        build_args=pairs(build_arg, "--build-arg", bare_from_env=True),
        target=target,
        platform=platform,
        no_cache=no_cache,
        network=network,
        compression=compression,
        timestamp=timestamp,
        labels=pairs(label, "--label"),
        out=io.StringIO() if quiet else sys.stdout,
        quiet=quiet,
    )
    result = build(Store(ctx.obj.root), opts)
    if quiet:
        print(result.image_id)

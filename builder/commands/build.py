"""`minibuild build [OPTIONS] CONTEXT`: a Containerfile into an image (see minibuild.build.builder)."""

from __future__ import annotations

import os
import sys

from minibuild.app import Context, arg, command, flag, repeated


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


@command(
    "build",
    arg("context", metavar="CONTEXT", help="Directory, tar archive, or - (a tar on stdin)."),
    arg("--file", "-f", help="The Containerfile (default CONTEXT/Containerfile)."),
    repeated("--tag", "-t", metavar="NAME[:TAG]", help="Name the image NAME[:TAG]; repeatable."),
    repeated("--build-arg", metavar="KEY=VALUE", help="Set an ARG: KEY=VALUE; repeatable."),
    arg("--target", metavar="STAGE", help="Build this stage (and what it needs) only."),
    arg("--platform", metavar="OS/ARCH", help="OS/ARCH of the image (default: this host)."),
    flag("--no-cache", help="Run every step again."),
    arg("--network", default="none", metavar="none|host", help="RUN steps' network: none (default) or host."),
    arg("--compression", default="gzip", metavar="gzip|zstd|none", help="Layer blobs: gzip (default), zstd or none."),
    arg(
        "--timestamp",
        type=int,
        metavar="EPOCH",
        help="Seconds since the epoch for every time in the image: reproducible builds.",
    ),
    repeated("--label", metavar="KEY=VALUE", help="Add a label KEY=VALUE; repeatable."),
    flag("--quiet", "-q", help="Print only the image ID."),
)
def build_cmd(
    ctx: Context,
    context: str,
    file: str | None,
    tag: list[str] | None,
    build_arg: list[str] | None,
    target: str | None,
    platform: str | None,
    no_cache: bool,
    network: str,
    compression: str,
    timestamp: int | None,
    label: list[str] | None,
    quiet: bool,
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
    result = build(Store(ctx.root), opts)
    if quiet:
        print(result.image_id)

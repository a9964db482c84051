"""`minibuild build [OPTIONS] CONTEXT`: a Containerfile into an image (see minibuild.build.builder).

Most lines are read by minibuild.build.fastcli without typer; this command serves `--help` and the rest.
"""

from __future__ import annotations

from typing import Annotated

import typer
from minibuild.app import app


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
    from minibuild.build.fastcli import run

    run(
        ctx.obj.root, context, file=file, tags=list(tag or []), build_args=list(build_arg or []), target=target,
        platform=platform, no_cache=no_cache, network=network, compression=compression, timestamp=timestamp,
        labels=list(label or []), quiet=quiet,
    )  # fmt: skip

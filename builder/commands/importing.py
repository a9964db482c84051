"""`minibuild from-tar FILE|-`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from minibuild.app import app, store_of


@app.command("from-tar")
def from_tar(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="docker export/save tarball or OCI layout archive.")],
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Name the image NAME[:TAG].")] = None,
    change: Annotated[
        list[str] | None,
        typer.Option("--change", "-c", help="Dockerfile instruction for a flat rootfs (CMD, ENV, ...); repeatable."),
    ] = None,
    no_layer_blob: Annotated[
        bool,
        typer.Option("--no-layer-blob", help="Keep no tar-split record of a flat rootfs (no push)."),
    ] = False,
) -> None:
    """Import a tarball: a `docker export` rootfs, a `docker save` archive or an OCI layout (gzip/zstd too)."""
    from minibuild.importer import import_tarball
    from minicache.errors import NotFound
    from minicache.reference import parse

    store = store_of(ctx)
    if file == "-":
        source = sys.stdin.buffer
    else:
        try:
            source = open(file, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(
                f"no such file: {file}", hint="give the path of a tarball, or - for standard input"
            ) from None
        except IsADirectoryError:
            raise NotFound(f"{file} is a directory, not a tarball", hint="tar it first, or use - with a pipe") from None
    try:
        result = import_tarball(store, source, tag=tag, changes=change or [], keep_layer_blob=not no_layer_blob)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    for image_id, names in result.images:
        if result.kind == "export":
            typer.echo(image_id)
        elif names:
            for name in names:
                typer.echo(f"Loaded image: {parse(name).familiar}")
        else:
            typer.echo(f"Loaded image ID: {image_id}")

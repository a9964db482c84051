"""`minibuild images|inspect|tag|rm|prune|export|mount|umount|save`: thin wrappers over the library."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from minibuild.app import app, store_of


@app.command("images")
def images_cmd(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="'table' (default) or 'json' (one object per line).")] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only image IDs.")] = False,
) -> None:
    """List images."""
    from minibuild import images
    from minicache.errors import InvalidSpec

    rows = images.list_images(store_of(ctx, create=False))
    if quiet:
        seen = []
        for row in rows:
            if row.id not in seen:
                seen.append(row.id)
                typer.echo(row.id.split(":")[1][:12])
    elif fmt == "json":
        for obj in images.images_json(rows):
            typer.echo(json.dumps(obj))
    elif fmt == "table":
        typer.echo(images.images_table(rows))
    else:
        raise InvalidSpec(f"unknown --format {fmt!r}", hint="use --format table or --format json")


@app.command("inspect")
def inspect_cmd(ctx: typer.Context, names: Annotated[list[str], typer.Argument(metavar="IMAGE...")]) -> None:
    """Show images' details as JSON (like docker image inspect)."""
    from minibuild import images

    typer.echo(json.dumps([images.inspect(store_of(ctx, create=False), n) for n in names], indent=4))


@app.command("tag")
def tag_cmd(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE_IMAGE")],
    target: Annotated[str, typer.Argument(metavar="TARGET_IMAGE[:TAG]")],
) -> None:
    """Give an image another name."""
    from minibuild import images

    images.tag(store_of(ctx), source, target)


@app.command("rm")
def rm_cmd(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Untag even if a container uses the image.")] = False,
) -> None:
    """Remove images (untag; delete an image left without a name), like docker rmi."""
    from minibuild import images

    for line in images.remove(store_of(ctx), names, force=force):
        typer.echo(line)


@app.command("prune")
def prune_cmd(ctx: typer.Context) -> None:
    """Remove dangling images and every blob and layer no image needs."""
    from minibuild import images
    from minishow import human_size

    report = images.prune(store_of(ctx))
    for image_id in report.images:
        typer.echo(f"Deleted Images: {image_id}")
    typer.echo(
        f"Deleted {len(report.layers)} layers and {len(report.blobs)} blobs; "
        f"Total reclaimed space: {human_size(report.bytes_freed)}"
    )


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="IMAGE")],
    output: Annotated[str, typer.Option("--output", "-o", help="Write to FILE instead of standard output.")] = "-",
) -> None:
    """Write the image's flattened root filesystem as a tar archive."""
    from minibuild import images
    from minicache.atomic import fsync_dir
    from minicache.errors import InvalidSpec, NotFound

    store = store_of(ctx)
    if output == "-":
        if sys.stdout.isatty():
            raise InvalidSpec("refusing to write a tar archive to a terminal", hint="use -o FILE or a pipe")
        images.export(store, name, sys.stdout.buffer)
        return
    import os
    from pathlib import Path

    final = Path(output)
    if final.is_dir():
        raise InvalidSpec(f"cannot write to {output}: it is a directory", hint="give -o the path of a file")
    if not final.parent.is_dir():
        raise NotFound(
            f"cannot write to {output}: the directory {final.parent} does not exist",
            hint="create it first, or give -o a path in an existing directory",
        )
    store.images.resolve(name)  # an unknown image fails before anything is written
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            images.export(store, name, f)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


@app.command("mount")
def mount_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="IMAGE")]) -> None:
    """Mount the image's root filesystem read-only and print the path."""
    from minibuild import images

    typer.echo(images.mount(store_of(ctx), name))


@app.command("umount")
def umount_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="IMAGE")]) -> None:
    """Unmount an image mounted with `minibuild mount`."""
    from minibuild import images

    images.umount(store_of(ctx), name)


@app.command("save")
def save_cmd(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="IMAGE...")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="docker-archive (default, as docker save) or oci-archive.")
    ] = "docker-archive",
) -> None:
    """Save images to a tarball that `podman load` and `docker load` read."""
    from minibuild.save import save, save_to_path
    from minicache.errors import InvalidSpec

    if output is None:
        if sys.stdout.isatty():
            raise InvalidSpec("refusing to write a tarball to a terminal", hint="give -o FILE or redirect stdout")
        save(store_of(ctx), names, sys.stdout.buffer, fmt)
    else:
        save_to_path(store_of(ctx), names, output, fmt)

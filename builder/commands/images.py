"""`minibuild images|inspect|tag|rm|prune|export|mount|umount|save`: thin wrappers over the library."""

from __future__ import annotations

import json
import sys

from minibuild.app import Context, arg, command, flag, store_of


@command(
    "images",
    arg("--format", dest="fmt", default="table", help="'table' (default) or 'json' (one object per line)."),
    flag("--quiet", "-q", help="Only image IDs."),
)
def images_cmd(ctx: Context, fmt: str, quiet: bool) -> None:
    """List images."""
    from minibuild import images
    from minicache.errors import InvalidSpec

    rows = images.list_images(store_of(ctx, create=False))
    if quiet:
        seen = []
        for row in rows:
            if row.id not in seen:
                seen.append(row.id)
                print(row.id.split(":")[1][:12])
    elif fmt == "json":
        for obj in images.images_json(rows):
            print(json.dumps(obj))
    elif fmt == "table":
        print(images.images_table(rows))
    else:
        raise InvalidSpec(f"unknown --format {fmt!r}", hint="use --format table or --format json")


@command("inspect", arg("names", nargs="+", metavar="IMAGE"))
def inspect_cmd(ctx: Context, names: list[str]) -> None:
    """Show images' details as JSON (like docker image inspect)."""
    from minibuild import images

    print(json.dumps([images.inspect(store_of(ctx, create=False), n) for n in names], indent=4))


@command("tag", arg("source", metavar="SOURCE_IMAGE"), arg("target", metavar="TARGET_IMAGE[:TAG]"))
def tag_cmd(ctx: Context, source: str, target: str) -> None:
    """Give an image another name."""
    from minibuild import images

    images.tag(store_of(ctx), source, target)


@command(
    "rm",
    arg("names", nargs="+", metavar="IMAGE"),
    flag("--force", "-f", help="Untag even if a container uses the image."),
)
def rm_cmd(ctx: Context, names: list[str], force: bool) -> None:
    """Remove images (untag; delete an image left without a name), like docker rmi."""
    from minibuild import images

    for line in images.remove(store_of(ctx), names, force=force):
        print(line)


@command("prune")
def prune_cmd(ctx: Context) -> None:
    """Remove dangling images and every blob and layer no image needs."""
    from minibuild import images
    from minishow import human_size

    report = images.prune(store_of(ctx))
    for image_id in report.images:
        print(f"Deleted Images: {image_id}")
    print(
        f"Deleted {len(report.layers)} layers and {len(report.blobs)} blobs; "
        f"Total reclaimed space: {human_size(report.bytes_freed)}"
    )


@command(
    "export",
    arg("name", metavar="IMAGE"),
    arg("--output", "-o", default="-", metavar="FILE", help="Write to FILE instead of standard output."),
)
def export_cmd(ctx: Context, name: str, output: str) -> None:
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


@command("mount", arg("name", metavar="IMAGE"))
def mount_cmd(ctx: Context, name: str) -> None:
    """Mount the image's root filesystem read-only and print the path."""
    from minibuild import images

    print(images.mount(store_of(ctx), name))


@command("umount", arg("name", metavar="IMAGE"))
def umount_cmd(ctx: Context, name: str) -> None:
    """Unmount an image mounted with `minibuild mount`."""
    from minibuild import images

    images.umount(store_of(ctx), name)


@command(
    "save",
    arg("names", nargs="+", metavar="IMAGE"),
    arg("--output", "-o", help="Write to this file (default: stdout)."),
    arg(
        "--format",
        dest="fmt",
        default="docker-archive",
        help="docker-archive (default, as docker save) or oci-archive.",
    ),
)
def save_cmd(ctx: Context, names: list[str], output: str | None, fmt: str) -> None:
    """Save images to a tarball that `podman load` and `docker load` read."""
    from minibuild.save import save, save_to_path
    from minicache.errors import InvalidSpec

    if output is None:
        if sys.stdout.isatty():
            raise InvalidSpec("refusing to write a tarball to a terminal", hint="give -o FILE or redirect stdout")
        save(store_of(ctx), names, sys.stdout.buffer, fmt)
    else:
        save_to_path(store_of(ctx), names, output, fmt)

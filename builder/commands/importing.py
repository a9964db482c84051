"""`minibuild from-tar FILE|-`."""

from __future__ import annotations

import sys

from minibuild.app import Context, arg, command, flag, repeated, store_of


@command(
    "from-tar",
    arg("file", metavar="FILE|-", help="docker export/save tarball or OCI layout archive."),
    arg("--tag", "-t", metavar="NAME[:TAG]", help="Name the image NAME[:TAG]."),
    repeated(
        "--change",
        "-c",
        metavar="INSTRUCTION",
        help="Dockerfile instruction for a flat rootfs (CMD, ENV, ...); repeatable.",
    ),
    flag("--no-layer-blob", help="Keep no tar-split record of a flat rootfs (no push)."),
)
def from_tar(ctx: Context, file: str, tag: str | None, change: list[str] | None, no_layer_blob: bool) -> None:
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
            print(image_id)
        elif names:
            for name in names:
                print(f"Loaded image: {parse(name).familiar}")
        else:
            print(f"Loaded image ID: {image_id}")

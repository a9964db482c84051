"""`minirun commit [-m MESSAGE] [-a AUTHOR] CONTAINER [IMAGE[:TAG]]`: a container's changes as a new image.

The container's overlay upper directory becomes one new layer on top of its image, through the same
layer differ as `minibuild build` (`minicache.newimage.commit_upper`); the mount points and files the
engine made for the runtime (/proc, /dev, /sys, /etc/hosts, ...) are left out when they are empty
placeholders. The new config is the image's, with the container's command, entrypoint, environment,
working directory and user, as `docker commit` records them. A running container is read as it is.
"""

from __future__ import annotations

import argparse

# What the engine and the runtime create in a container's root for their mounts: not the user's changes.
PLACEHOLDERS = ("proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf", "run/.containerenv")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("image", metavar="IMAGE[:TAG]", nargs="?")
    parser.add_argument("-m", "--message", default="", help="commit message (the history entry's comment)")
    parser.add_argument("-a", "--author", default="", help='author (e.g. "Jane Doe <jane@example.com>")')
    parser.add_argument(
        "--compression", default="gzip", choices=("gzip", "zstd", "none"), help="of the new layer blob (default gzip)"
    )


def _config(base: dict, record: dict) -> dict:
    """The image config's `config` object after the container's own settings."""
    config = dict(base.get("config") or {})
    view = record.get("Config") or {}
    if view.get("Cmd"):
        config["Cmd"] = list(view["Cmd"])
    if view.get("Entrypoint") is not None:
        config["Entrypoint"] = [view["Entrypoint"]] if view["Entrypoint"] else None
        if view["Entrypoint"] == "":
            config.pop("Entrypoint", None)
    env = list(config.get("Env") or [])
    for item in view.get("Env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    if env:
        config["Env"] = env
    for field in ("WorkingDir", "User"):
        if view.get(field):
            config[field] = view[field]
    return config


def execute(args: argparse.Namespace) -> int:
    from minicache import gc, newimage
    from minicache.errors import InvalidSpec
    from minicache.reference import parse
    from minirun.cli.commands.common import get, open_store
    from minirun.engine.containers import now

    if args.image:
        parse(args.image)  # a bad name fails before anything is written
    store = open_store(args)
    container = get(store, args.container)
    record = container.record
    if record.get("Driver") == "copy":
        raise InvalidSpec(
            "commit needs a container on the overlay driver (its changes are an upper directory)",
            hint="run the container without MINICONTAINER_STORAGE_DRIVER=copy",
        )
    base = store.images.get(record["Image"])
    base_config = store.images.config(base)
    created = now()
    image = {k: base_config[k] for k in ("architecture", "os", "variant", "history") if base_config.get(k)}
    image.update(created=created, config=_config(base_config, record))
    if args.author:
        image["author"] = args.author
    view = record.get("Config") or {}
    command = " ".join([record.get("Path", ""), *(record.get("Args") or [])]).strip()
    history = {"created": created, "created_by": command or "minirun commit", "comment": args.message or None}
    history = {k: v for k, v in history.items() if v is not None}
    if view.get("Image"):
        history.setdefault("comment", f"committed from a container of {view['Image']}")
    with gc.hold(store):
        new = newimage.commit_upper(
            store,
            container.upper,
            base,
            image,
            history,
            compression=args.compression,
            exclude_placeholders=PLACEHOLDERS,
        )
        store.images.put(new, [args.image] if args.image else [])
    print(new.id)
    return 0

"""Crash-safe file updates: write to a temporary name, fsync, rename, fsync the directory.

How the store publishes its records; both CLIs write their own records (containers, networks,
credentials) the same way. Append-only logs (events, container logs) are read back with `json_lines`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see either the old or the new content, never a mix.

    The file is private (0600) unless `mode` says otherwise: the store's records hold environments.

    With `durable` the data and the rename reach the disk before this returns.
    """
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(head or ".")


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> None:
    """`atomic_write` of `obj` as compact, key-sorted JSON.

    Compact because json's C encoder serves only that form: with `indent` the pure-Python encoder wrote
    each container record and state on the `run` path; `jq .` shows them indented.
    """
    atomic_write(path, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n", durable=durable)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by `atomic_write_json`."""
    with open(path, "rb") as f:
        return json.load(f)


def json_lines(data: bytes) -> list[Any]:
    """The JSON value of each line of `data` (JSON-lines logs); a line torn by a crash of its writer is skipped."""
    values = []
    for line in data.splitlines():
        try:
            values.append(json.loads(line))
        except ValueError:
            continue
    return values

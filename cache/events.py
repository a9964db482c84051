"""The store's event log: one JSON line per lifecycle or image event, appended by every CLI.

    root/events.log      {"Type":"container","Action":"start","ID":"<id>","Attributes":{...},"timeNano":N}
    root/events.log.1    the previous log, once the current one grew past MAX_BYTES

`minirun serve` reads it for Docker's `GET /events` and the dashboard's feed, so it sees what every
CLI did, with or without a server running. An append is one open, one write(2) of one line with
O_APPEND (whole lines, never interleaved) and one close: cheap enough for the `run` path. Losing an
event (disk full, read-only store) never fails the command that caused it.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

from minicache.atomic import json_lines

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from minicache.store import Store

MAX_BYTES = 4 * 1024 * 1024  # then the log is renamed to events.log.1 and a new one starts
CONTAINER, IMAGE = "container", "image"


def path(store: Store) -> str:
    return os.fspath(store.events_log)


def append(store: Store, kind: str, action: str, actor_id: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add one event; never raises for I/O trouble (the event is lost, the command goes on)."""
    line = json.dumps(
        {
            "Type": kind,
            "Action": action,
            "ID": actor_id,
            "Attributes": {k: str(v) for k, v in (attributes or {}).items() if v is not None},
            "timeNano": time.time_ns(),
        },
        separators=(",", ":"),
    )
    name = path(store)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line.encode() + b"\n")
        if os.fstat(fd).st_size > MAX_BYTES:
            os.rename(name, name + ".1")  # readers holding the old file still finish it
    except OSError:
        pass
    finally:
        os.close(fd)


def container(store: Store, action: str, container_id: str, record: Mapping[str, Any], **extra: Any) -> None:
    """A container event with Docker's attributes (name, image, labels) from the container's record."""
    labels = (record.get("Config") or {}).get("Labels") or {}
    attributes = {**labels, "image": record.get("ImageName") or record.get("Image"), "name": record.get("Name")}
    append(store, CONTAINER, action, container_id, {**attributes, **extra})


def read(store: Store, offset: int = 0, inode: int | None = None) -> tuple[list[dict[str, Any]], int, int | None]:
    """Complete events from byte `offset` of the current log, the offset after them and the log's inode.

    A log that was rotated since (`inode` changed) is read from its start again.
    """
    try:
        with open(path(store), "rb") as f:
            st = os.fstat(f.fileno())
            if inode is not None and st.st_ino != inode:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0, None
    end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
    return json_lines(data[:end]), offset + end, st.st_ino


def history(store: Store) -> list[dict[str, Any]]:
    """Every stored event, oldest first (the rotated log, then the current one)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path(store) + ".1", "rb") as f:
            out.extend(json_lines(f.read()))
    except FileNotFoundError:
        pass
    out.extend(read(store)[0])
    return out

"""`--user` / the image's User → numeric uid, gid, supplementary groups and home, from the image's files.

As Docker does: `NAME`, `UID`, `NAME:GROUP`, `UID:GID` (numbers need no entry in /etc/passwd); the files
are found by descriptor inside the container's root (symlinks cannot point them at the host's), and only
regular files are opened (a FIFO would hang; a device node's open would run its driver here, on the host,
outside the container's device cgroup).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minicache.inroot import Root
from minicache.record import Record

if TYPE_CHECKING:
    from pathlib import Path

_MAX_ID = 2**32 - 2


class User(Record):
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"
    name: str | None = None


def _read_table(rootfs: Path, name: str) -> list[list[str]]:
    try:
        with Root(rootfs) as root:
            found = root.open(name)  # O_PATH: opening a device node would run its driver's open, here on the host
        try:
            if not stat.S_ISREG(os.fstat(found).st_mode):
                return []
            # the same inode, reopened for reading: whatever is at the path by now does not matter
            fd = os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        finally:
            os.close(found)
        with open(fd, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 22)
    except OSError:  # missing, a directory, a symlink loop...: no entries
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _number(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value > _MAX_ID:
            raise InvalidSpec(f"user or group ID {text} is out of range", hint=f"IDs go from 0 to {_MAX_ID}")
        return value
    return None


def resolve(rootfs: Path, spec: str | None) -> User:
    """Resolve a user spec against the image at `rootfs` (empty/None: root); spec.image_settings checked its type."""
    spec = (spec or "").strip()
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    passwd = [e for e in _read_table(rootfs, "/etc/passwd") if len(e) >= 7]
    entry = None
    uid = _number(user_part)
    for e in passwd:
        if (uid is not None and e[2] == str(uid)) or (uid is None and e[0] == user_part):
            entry = e
            break
    if entry is None and uid is None:
        raise InvalidSpec(
            f"unable to find user {user_part}: no matching entries in passwd file",
            hint="give a numeric UID[:GID] or a user that exists in the image's /etc/passwd",
        )
    if uid is None:
        uid = int(entry[2])
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    name = entry[0] if entry is not None else None
    home = entry[5] if entry is not None and entry[5] else "/"
    groups = [e for e in _read_table(rootfs, "/etc/group") if len(e) >= 4]
    if group_part:
        number = _number(group_part)
        if number is not None:
            gid = number
        else:
            match = next((g for g in groups if g[0] == group_part), None)
            if match is None or not match[2].isdigit():
                raise InvalidSpec(
                    f"unable to find group {group_part}: no matching entries in group file",
                    hint="give a numeric GID or a group that exists in the image's /etc/group",
                )
            gid = int(match[2])
    extra: list[int] = []
    if name is not None and not group_part:
        for g in groups:
            if name in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid and int(g[2]) not in extra:
                extra.append(int(g[2]))
    return User(uid, gid, tuple(extra), home, name)

"""Resolve a path inside a container's root as the container would: symlinks and `..` cannot leave it.

Used wherever the engine or the runtime touches the image's files from the host (mount destinations,
/etc/passwd, working directories): an image may hold `/data -> /etc` or `../../../` links meant to make
the host act on its own files.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

MAX_LINKS = 255


def secure_join(root: str | os.PathLike[str], unsafe: str) -> str:
    """The host path of `unsafe` inside `root`; every step stays within `root` (like filepath-securejoin).

    Components that do not exist yet are joined lexically; `..` never climbs above `root`.
    """
    root_s = os.path.abspath(os.fspath(root)).rstrip("/")
    parts = deque(unsafe.split("/"))
    resolved = ""  # always "" or "/a/b", relative to root
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.rsplit("/", 1)[0]
            continue
        candidate = f"{resolved}/{part}"
        try:
            st = os.lstat(root_s + candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved = candidate
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved = candidate
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
        target = os.readlink(root_s + candidate)
        if target.startswith("/"):
            resolved = ""
        parts.extendleft(reversed(target.split("/")))
    return root_s + (resolved or "/")


def is_within(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True if the real path of `path` is `root` or below it."""
    root_r = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root_r or real.startswith(root_r.rstrip("/") + "/")

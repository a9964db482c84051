"""Which cgroup mode the host runs, read from /proc/self/mountinfo (no subprocess; well under a millisecond).

- "v2": a unified hierarchy and no v1 controller mounted.
- "v1": controllers mounted as v1 hierarchies; `hybrid` when a (controller-less) v2 hierarchy is also
  mounted, as on systemd's hybrid layout and on this project's CI machines.
- "disabled": neither, or nothing we may write to.
"""

from __future__ import annotations

import os
from functools import cache

from minicache.record import Record

# The v1 controllers a container's cgroup is made in (devices: the spec's device allowlist). net_cls and
# friends are not used.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
# The v2 controllers enabled for container cgroups (freeze and kill are core v2 features, no controller).
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
MOUNTINFO = "/proc/self/mountinfo"


class HostCgroups(Record):
    """The host's cgroup layout as this process sees it."""

    mode: str  # "v1" | "v2" | "disabled"
    v1: dict[str, str]  # controller -> its hierarchy's mount point
    unified: str | None = None  # the cgroup2 mount point, if any
    reason: str = ""  # why "disabled"

    @property
    def hybrid(self) -> bool:
        return self.mode == "v1" and self.unified is not None


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    import re  # only for a mount point with an escaped space, tab, newline or backslash

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> mount point, cgroup2 mount point) from mountinfo; the first mount of each wins."""
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_options = tail[0], tail[2]
        mount_point = _unescape(fields[4])
        if fstype == "cgroup2":
            unified = unified or mount_point
        elif fstype == "cgroup":
            for option in super_options.split(","):
                if option in V1_CONTROLLERS:
                    v1.setdefault(option, mount_point)
    return v1, unified


def detect_from(mountinfo: str) -> HostCgroups:
    v1, unified = parse_mountinfo(mountinfo)
    if v1:
        return HostCgroups("v1", v1, unified)
    if unified is not None:
        return HostCgroups("v2", {}, unified)
    return HostCgroups("disabled", {}, reason="no cgroup filesystem is mounted")


@cache
def detect() -> HostCgroups:
    """The host's cgroup mode, read once per process."""
    try:
        with open(MOUNTINFO) as f:
            text = f.read()
    except OSError as err:
        return HostCgroups("disabled", {}, reason=f"cannot read {MOUNTINFO}: {err.strerror}")
    return detect_from(text)


def writable(path: str) -> bool:
    """True if we may create cgroups below `path` (root on a read-write cgroupfs, or a delegated subtree)."""
    return os.access(path, os.W_OK | os.X_OK)

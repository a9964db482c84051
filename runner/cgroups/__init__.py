"""Container cgroups: one interface (`Cgroup`), drivers for cgroup v1, v2 and "disabled".

The runtime's single call site::

    cg = cgroups.open(container_id)           # the host's mode, detected once per process
    cg.create(spec["linux"].get("resources"))  # parent, before forking the container's init
    ...                                        # child, in the host's cgroup namespace: cg.join()
    cg.destroy()                               # parent, after the init exited (kills leftovers)

`open()` never touches the filesystem beyond reading /proc/self/mountinfo once; reopening the same ID
later (stats, pause, kill, rm) finds the same directories from any process. `flags` checks Docker's
resource flags and turns them into OCI resources; the command line makes them options.

May import: minicache only (not the command line, the engine or the runtime).
"""

from __future__ import annotations

from minirun.cgroups.base import (
    DEFAULT_PARENT,
    PARENT_ENV,
    Cgroup,
    CgroupError,
    CgroupWarning,
    default_parent,
    show_warnings,
)
from minirun.cgroups.host import HostCgroups, detect, writable
from minirun.cgroups.limits import Limits, parse_resources

__all__ = [
    "DEFAULT_PARENT",
    "PARENT_ENV",
    "Cgroup",
    "CgroupError",
    "CgroupStats",
    "CgroupWarning",
    "HostCgroups",
    "Limits",
    "detect",
    "open",
    "parse_resources",
    "show_warnings",
]

MODES = ("v1", "v2", "disabled")


def __getattr__(name: str) -> object:
    # CgroupStats is loaded on first use: `minirun --rm IMAGE true` never reads stats.
    if name == "CgroupStats":
        from minirun.cgroups.stats import CgroupStats

        return CgroupStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open(container_id: str, parent: str | None = None, *, mode: str | None = None) -> Cgroup:
    """The cgroup of container `container_id` under `parent` (default $MINICONTAINER_CGROUP_PARENT or
    "minicontainer"), with the driver for the host's mode, or `mode` ("v1", "v2", "disabled") if given.

    Falls back to the disabled driver, with the reason, when the host has no cgroups we may write to.
    """
    host = detect()
    parent = parent if parent is not None else default_parent()
    mode = mode or host.mode
    if mode not in MODES:
        from minicache.errors import InvalidSpec

        raise InvalidSpec(f"unknown cgroup mode {mode!r}", hint="use v1, v2 or disabled")
    if mode == "v1" and host.v1:
        from minirun.cgroups.v1 import V1Cgroup

        if all(writable(p) for p in host.v1.values()):
            return V1Cgroup(container_id, parent, mounts=host.v1)
        reason = f"cgroups are not writable here ({next(iter(host.v1.values()))} is read-only or not ours)"
    elif mode == "v2" and host.unified is not None:
        from minirun.cgroups.v2 import V2Cgroup

        if writable(host.unified):
            return V2Cgroup(container_id, parent, mount=host.unified)
        reason = f"cgroups are not writable here ({host.unified} is read-only or not ours)"
    elif mode == "disabled":
        reason = "cgroups are disabled"
    else:
        reason = host.reason or f"this host has no cgroup {mode} hierarchy"
    from minirun.cgroups.disabled import DisabledCgroup

    return DisabledCgroup(container_id, parent, reason=reason)

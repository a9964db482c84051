"""The runtime's one call site for cgroups, and where a bundle's cgroup comes from.

The parent calls `create(resources)` before forking the container and, after it exited, `oom_killed()`
then `destroy()`; the child calls `join()` first thing, while it is still in the host's cgroup namespace,
before unsharing its own, unless `clone_into()` named the directory it was created in (cgroup v2).
`None` instead of an object means: no cgroup.

A bundle names its cgroup with `linux.cgroupsPath` ("/PARENT/NAME", taken from each hierarchy's root as
with runc's cgroupfs driver) and its limits with `linux.resources`; without a path the cgroup is
`<default parent>/<container id>`. The drivers live in `minirun.cgroups`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec

if TYPE_CHECKING:
    from typing import Any, Protocol

    from minirun.cgroups import Cgroup
else:
    Protocol = object


class CgroupHook(Protocol):
    def create(self, resources: dict[str, Any]) -> None:
        """Make the container's cgroup(s) and write the limits of an OCI `linux.resources` dict."""

    def join(self) -> None:
        """Move the calling process into the container's cgroup(s)."""

    def clone_into(self) -> str | None:
        """The one cgroup v2 directory a child can be created in, so it need not join (optional: absent
        means none)."""

    def oom_killed(self) -> bool:
        """True if the kernel's OOM killer killed a process inside (optional: absent means no)."""

    def destroy(self) -> None:
        """Kill what is left inside and remove the cgroup(s); idempotent."""


def location(spec: dict[str, Any], container_id: str) -> tuple[str, str]:
    """(parent, name) of the bundle's cgroup from `linux.cgroupsPath`; InvalidSpec for a path we cannot use."""
    from minirun.cgroups import default_parent

    path = (spec.get("linux") or {}).get("cgroupsPath")
    if path is None or path == "":
        return default_parent(), container_id
    if not isinstance(path, str) or ":" in path:
        raise InvalidSpec(
            f"linux.cgroupsPath {path!r} is not a cgroupfs path",
            hint="use /PARENT/NAME (systemd slice:prefix:name paths are not supported)",
        )
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise InvalidSpec(f"linux.cgroupsPath {path!r} names no cgroup", hint="use /PARENT/NAME")
    if len(parts) == 1:
        return default_parent(), parts[0]
    return "/".join(parts[:-1]), parts[-1]


def for_spec(spec: dict[str, Any], container_id: str) -> Cgroup:
    """The cgroup driver object for a bundle (nothing is created yet)."""
    from minirun import cgroups

    parent, name = location(spec, container_id)
    return cgroups.open(name, parent)

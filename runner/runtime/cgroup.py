"""The runtime's one call site for cgroups. The drivers live in `minirun.cgroups` (a separate piece of work).

The parent calls `create(resources)` before forking the container and `destroy()` after it exited; the
child calls `join()` first thing, while it is still in the host's cgroup namespace, before unsharing its own.
`None` instead of an object means: no cgroup.
"""

from __future__ import annotations

from typing import Any, Protocol


class CgroupHook(Protocol):
    def create(self, resources: dict[str, Any]) -> None:
        """Make the container's cgroup(s) and write the limits of an OCI `linux.resources` dict."""

    def join(self) -> None:
        """Move the calling process into the container's cgroup(s)."""

    def destroy(self) -> None:
        """Kill what is left inside and remove the cgroup(s); idempotent."""

"""No cgroups: the container runs, but limits cannot be applied (said out loud) and nothing is accounted."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from minirun.cgroups.base import Cgroup, CgroupError, warn
from minirun.cgroups.limits import Limits

if TYPE_CHECKING:  # imported inside stats(): off the `run` hot path
    from typing import Any

    from minirun.cgroups.stats import CgroupStats


class DisabledCgroup(Cgroup):
    mode = "disabled"

    def __init__(self, container_id: str, parent: str | None = None, *, reason: str = "cgroups are disabled") -> None:
        super().__init__(container_id, parent)
        self.reason = reason

    @property
    def paths(self) -> dict[str, str]:
        return {}

    def create(self, resources: Mapping[str, Any] | Limits | None = None) -> None:
        self._warn_ignored(self._limits(resources))

    def set(self, resources: Mapping[str, Any] | Limits) -> None:
        self._warn_ignored(self._limits(resources))

    def _warn_ignored(self, limits: Limits) -> None:
        if requested := limits.requested():
            warn(f"{self.reason}: resource limits ignored ({', '.join(requested)})")

    def add(self, pid: int) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def stats(self) -> CgroupStats:
        from minirun.cgroups.stats import CgroupStats

        return CgroupStats()

    def oom_killed(self) -> bool:
        return False

    def freeze(self, timeout: float = 5.0) -> None:
        raise CgroupError(f"pausing needs the cgroup freezer; {self.reason}")

    thaw = freeze

    def frozen(self) -> bool:
        return False

    def kill_all(self, sig: int = signal.SIGKILL) -> int:
        return 0

    def destroy(self, timeout: float = 10.0) -> None:
        pass

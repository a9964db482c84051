"""cgroup v2 (unified): one directory, `<mount>/<parent>/<id>`.

Controllers reach the container's cgroup through `cgroup.subtree_control` of every level above it. We
enable them in the parent path's own levels (ours) and never in the hierarchy's root or anything else
above: a controller the host has not delegated to the parent's level is reported, not forced.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

from minicache import signums
from minicache.errors import Conflict, InvalidSpec, NotFound
from minirun.cgroups.base import (
    Cgroup,
    read,
    read_int,
    read_keyed,
    read_pids,
    wait_until,
    walk_bottom_up,
    warn,
    write,
)
from minirun.cgroups.host import V2_CONTROLLERS
from minirun.cgroups.limits import UNLIMITED, Limits, cpu_max, shares_to_weight, swap_v2

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (milliseconds of `minirun run` start-up)
if TYPE_CHECKING:  # imported inside stats(): off the `run` hot path
    from typing import Any

    from minirun.cgroups.stats import CgroupStats


def _v2_value(value: int) -> str | int:
    return "max" if value == UNLIMITED else value


def _needed_controllers(limits: Limits) -> dict[str, list[str]]:
    """controller -> the requested limits that need it."""
    needs: dict[str, list[str]] = {}
    for controller, name, value in (
        ("memory", "memory", limits.memory),
        ("memory", "memory-reservation", limits.memory_reservation),
        ("memory", "memory-swap", limits.memory_swap),
        ("cpu", "cpu-shares", limits.cpu_shares),
        ("cpu", "cpu-quota", limits.cpu_quota),
        ("cpu", "cpu-period", limits.cpu_period),
        ("cpuset", "cpuset-cpus", limits.cpuset_cpus),
        ("cpuset", "cpuset-mems", limits.cpuset_mems),
        ("pids", "pids-limit", limits.pids),
    ):
        if value is not None:
            needs.setdefault(controller, []).append(name)
    for key, _ in limits.unified:
        needs.setdefault(key.split(".", 1)[0], []).append(key)
    return needs


class V2Cgroup(Cgroup):
    mode = "v2"

    def __init__(self, container_id: str, parent: str | None = None, *, mount: Path) -> None:
        super().__init__(container_id, parent)
        self.mount = Path(mount)

    @cached_property
    def path(self) -> Path:
        return self.mount.joinpath(*self.parent_parts, self.container_id)

    @property
    def paths(self) -> dict[str, Path]:
        return {"unified": self.path}

    # -- life cycle ------------------------------------------------------------------------------------------
    def create(self, resources: Mapping[str, Any] | Limits | None = None) -> None:
        limits = self._limits(resources)
        level = self.mount
        for part in self.parent_parts:
            level = level / part
            self._mkdir(level)
            self._delegate(level)
        if not self._mkdir(self.path) and self.pids():
            raise Conflict(
                f"the cgroup of container {self.container_id} already exists and has processes",
                hint="a container with this ID is running; remove it first",
            )
        try:
            self._write_limits(limits)
            if limits.devices:
                self._attach_device_filter(limits.devices)
        except BaseException:
            self._remove_dirs()
            raise

    def _attach_device_filter(self, rules: tuple[tuple[bool, str], ...]) -> None:
        """The device allowlist as an eBPF program on the cgroup (v2 has no devices controller)."""
        from minirun.cgroups import devices_bpf

        try:
            devices_bpf.attach(str(self.path), rules)
        except OSError as err:
            warn(f"the device allowlist is not enforced: the kernel refused its eBPF program ({err.strerror})")

    def _delegate(self, level: Path) -> None:
        """Enable our controllers for the children of one level of the parent path (a level we own)."""
        available = set((read(level / "cgroup.controllers") or "").split())
        enabled = {c.lstrip("+") for c in (read(level / "cgroup.subtree_control") or "").split()}
        missing = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if missing:
            write(level / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def add(self, pid: int) -> None:
        write(self.path / "cgroup.procs", pid)

    def set(self, resources: Mapping[str, Any] | Limits) -> None:
        self._require()
        self._write_limits(self._limits(resources))

    def pids(self) -> list[int]:
        found: dict[int, None] = {}
        for directory in walk_bottom_up(self.path):
            found.update(dict.fromkeys(read_pids(directory / "cgroup.procs")))
        return list(found)

    def _write_limits(self, limits: Limits) -> None:
        available = set((read(self.path / "cgroup.controllers") or "").split())
        needs = _needed_controllers(limits)
        for controller, names in needs.items():
            if controller not in available:
                warn(
                    f"the {controller} cgroup v2 controller is not available under {self.mount / self.parent}: "
                    f"{', '.join(names)} ignored (enable it in {self.mount}/cgroup.subtree_control)"
                )
        d = self.path
        if "memory" in available:
            if limits.memory is not None:
                write(d / "memory.max", _v2_value(limits.memory))
            swap = swap_v2(limits.memory_swap, limits.memory)
            if swap is not None:
                if (d / "memory.swap.max").exists():
                    write(d / "memory.swap.max", _v2_value(swap))
                elif swap != UNLIMITED:
                    warn("this kernel does not account swap (no memory.swap.max): memory is limited without swap")
            if limits.memory_reservation is not None:
                write(d / "memory.high", _v2_value(limits.memory_reservation))
        if "cpu" in available:
            if limits.cpu_shares is not None:
                write(d / "cpu.weight", shares_to_weight(limits.cpu_shares))
            if (value := cpu_max(limits.cpu_quota, limits.cpu_period)) is not None:
                write(d / "cpu.max", value)
        if "cpuset" in available:
            if limits.cpuset_cpus is not None:
                write(d / "cpuset.cpus", limits.cpuset_cpus)
            if limits.cpuset_mems is not None:
                write(d / "cpuset.mems", limits.cpuset_mems)
        if "pids" in available and limits.pids is not None:
            write(d / "pids.max", _v2_value(limits.pids))
        for key, value in limits.unified:
            if key.split(".", 1)[0] not in available:
                continue
            if not (d / key).exists():
                raise InvalidSpec(
                    f"linux.resources.unified.{key}: no such cgroup file on this kernel",
                    hint=f"see the files in {d}",
                )
            write(d / key, value)

    # -- accounting ------------------------------------------------------------------------------------------
    def stats(self) -> CgroupStats:
        from minirun.cgroups.stats import CgroupStats

        d = self.path
        if not d.is_dir():
            raise NotFound(f"container {self.container_id} has no cgroup (it is not running)")
        cpu = read_keyed(d / "cpu.stat")
        memory_stat = read_keyed(d / "memory.stat")
        events = read_keyed(d / "memory.events")
        memory_limit = read_int(d / "memory.max")
        swap_max = read_int(d / "memory.swap.max")
        read_bytes, write_bytes = _io_bytes(d)

        def us_to_ns(key: str) -> int | None:
            return cpu[key] * 1000 if key in cpu else None

        return CgroupStats(
            cpu_ns=us_to_ns("usage_usec"),
            cpu_user_ns=us_to_ns("user_usec"),
            cpu_system_ns=us_to_ns("system_usec"),
            cpu_throttled_ns=us_to_ns("throttled_usec"),
            memory_bytes=read_int(d / "memory.current"),
            memory_cache_bytes=memory_stat.get("inactive_file"),
            memory_limit=memory_limit,
            memory_swap_limit=None if memory_limit is None or swap_max is None else memory_limit + swap_max,
            oom_kills=events.get("oom_kill", 0),
            memory_limit_hits=events.get("max", 0),
            pids=read_int(d / "pids.current"),
            pids_limit=read_int(d / "pids.max"),
            block_read_bytes=read_bytes,
            block_write_bytes=write_bytes,
        )

    def oom_killed(self) -> bool:
        return read_keyed(self.path / "memory.events").get("oom_kill", 0) > 0

    # -- freezer (core v2: no controller needed) -------------------------------------------------------------
    def _events(self) -> dict[str, int]:
        return read_keyed(self.path / "cgroup.events")

    def freeze(self, timeout: float = 5.0) -> None:
        self._require()
        write(self.path / "cgroup.freeze", 1)
        try:
            wait_until(lambda: self._events().get("frozen") == 1, timeout, f"container {self.container_id} to freeze")
        except BaseException:
            write(self.path / "cgroup.freeze", 0)
            raise

    def thaw(self, timeout: float = 5.0) -> None:
        self._require()
        write(self.path / "cgroup.freeze", 0)
        # None: removed meanwhile (its init reaped by the foreground CLI, which then destroys it): nothing to thaw
        wait_until(lambda: self._events().get("frozen", 0) == 0, timeout, f"container {self.container_id} to thaw")

    def frozen(self) -> bool:
        return self._events().get("frozen") == 1

    def kill_all(self, sig: int = signums.SIGKILL) -> int:
        """SIGKILL goes through cgroup.kill (Linux 5.14+): the kernel kills the whole subtree atomically."""
        if sig == signums.SIGKILL and (self.path / "cgroup.kill").exists():
            count = len(self.pids())
            write(self.path / "cgroup.kill", 1)
            return count
        return super().kill_all(sig)


def _io_bytes(directory: Path) -> tuple[int | None, int | None]:
    text = read(directory / "io.stat")
    if text is None:
        return None, None
    rbytes = wbytes = 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                rbytes += int(value)
            elif key == "wbytes":
                wbytes += int(value)
    return rbytes, wbytes

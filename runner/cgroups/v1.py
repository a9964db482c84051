"""cgroup v1 (legacy, and the v1/v2 hybrid): one directory per controller hierarchy.

The container's cgroup is `<mount>/<parent>/<id>` in every hierarchy of `V1_CONTROLLERS` the host mounts
(co-mounted controllers, such as "cpu,cpuacct", share one directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec, NotFound
from minirun.cgroups.base import (
    Cgroup,
    CgroupError,
    read,
    read_int,
    read_keyed,
    read_pids,
    wait_until,
    walk_bottom_up,
    warn,
    write,
)
from minirun.cgroups.limits import UNLIMITED, Limits

V1_THROTTLE_FILES = {
    "rbps": "read_bps_device",
    "wbps": "write_bps_device",
    "riops": "read_iops_device",
    "wiops": "write_iops_device",
}
if TYPE_CHECKING:  # imported inside stats(): off the `run` hot path
    from typing import Any

    from minirun.cgroups.stats import CgroupStats

# Above this a v1 memory limit means "unlimited" (the kernel shows PAGE_COUNTER_MAX pages in bytes).
_V1_UNLIMITED = 1 << 62


def _thread_count() -> int:
    """The calling process's number of threads (field 20 of /proc/self/stat)."""
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[17])


def _v1_value(value: int) -> int:
    return -1 if value == UNLIMITED else value


class V1Cgroup(Cgroup):
    mode = "v1"

    def __init__(self, container_id: str, parent: str | None = None, *, mounts: Mapping[str, str]) -> None:
        super().__init__(container_id, parent)
        self.mounts = dict(mounts)

    @cached_property
    def paths(self) -> dict[str, str]:
        return {c: os.path.join(mount, *self.parent_parts, self.container_id) for c, mount in self.mounts.items()}

    def _dirs(self) -> list[str]:
        """Each hierarchy's directory once (co-mounted controllers share one)."""
        return list(dict.fromkeys(self.paths.values()))

    def _file(self, controller: str, name: str) -> str | None:
        directory = self.paths.get(controller)
        return None if directory is None else os.path.join(directory, name)

    # -- life cycle ------------------------------------------------------------------------------------------
    def create(self, resources: Mapping[str, Any] | Limits | None = None) -> None:
        limits = self._limits(resources)
        if limits.unified:
            raise InvalidSpec(
                "linux.resources.unified needs cgroup v2, and this host runs cgroup v1",
                hint="express the limits with linux.resources.memory/cpu/pids instead",
            )
        for mount in dict.fromkeys(self.mounts.values()):
            if os.path.isdir(os.path.join(mount, *self.parent_parts)):
                continue  # made by an earlier container: one stat instead of a refused mkdir per level
            level = mount
            for part in self.parent_parts:
                level = os.path.join(level, part)
                self._mkdir(level)
        made = [d for d in self._dirs() if self._mkdir(d)]
        if len(made) < len(self._dirs()) and self.pids():
            raise Conflict(
                f"the cgroup of container {self.container_id} already exists and has processes",
                hint="a container with this ID is running; remove it first",
            )
        try:
            self._fill_cpusets()
            self._write_limits(limits)
        except BaseException:
            self._remove_dirs()
            raise

    def _fill_cpusets(self) -> None:
        """A new v1 cpuset has no CPUs and no memory nodes, so nothing can join it: copy them from above."""
        mount = self.mounts.get("cpuset")
        if mount is None:
            return
        levels = [os.path.join(mount, *self.parent_parts[: i + 1]) for i in range(len(self.parent_parts))]
        for directory in (*levels, self.paths["cpuset"]):
            for name in ("cpuset.cpus", "cpuset.mems"):
                if read(os.path.join(directory, name)) == "":
                    write(os.path.join(directory, name), read(os.path.join(os.path.dirname(directory), name)) or "")

    def join(self) -> None:
        """Move the calling process in.

        A single-threaded caller (the container's init, just forked) writes "0" to each hierarchy's
        `tasks`: moving the calling thread alone takes no lock over every thread group of the system, so
        the kernel does not wait for an RCU grace period as it does for a write to cgroup.procs. That
        wait would sit between the fork and the exec of every container. A caller with threads moves
        them all through cgroup.procs.
        """
        if _thread_count() != 1:
            self.add(0)
            return
        for directory in self._dirs():
            write(os.path.join(directory, "tasks"), 0)

    def add(self, pid: int) -> None:
        for directory in self._dirs():
            write(os.path.join(directory, "cgroup.procs"), pid)

    def set(self, resources: Mapping[str, Any] | Limits) -> None:
        self._require()
        limits = self._limits(resources)
        if limits.unified:
            raise InvalidSpec("linux.resources.unified needs cgroup v2, and this host runs cgroup v1")
        self._write_limits(limits)

    def pids(self) -> list[int]:
        found: dict[int, None] = {}
        for top in self._dirs():
            for directory in walk_bottom_up(top):
                found.update(dict.fromkeys(read_pids(os.path.join(directory, "cgroup.procs"))))
        return list(found)

    def _write_limits(self, limits: Limits) -> None:
        self._warn_missing(limits)
        if "memory" in self.paths:
            self._write_memory(limits)
        cpu = self.paths.get("cpu")
        if cpu is not None:
            if limits.cpu_shares is not None:
                write(os.path.join(cpu, "cpu.shares"), limits.cpu_shares)
            self._write_cfs(cpu, limits.cpu_quota, limits.cpu_period)
        cpuset = self.paths.get("cpuset")
        if cpuset is not None:
            if limits.cpuset_cpus is not None:
                write(os.path.join(cpuset, "cpuset.cpus"), limits.cpuset_cpus)
            if limits.cpuset_mems is not None:
                write(os.path.join(cpuset, "cpuset.mems"), limits.cpuset_mems)
        if limits.pids is not None and "pids" in self.paths:
            write(os.path.join(self.paths["pids"], "pids.max"), "max" if limits.pids == UNLIMITED else limits.pids)
        if limits.devices and "devices" in self.paths:
            self._write_devices(limits.devices)
        blkio = self.paths.get("blkio")
        if blkio is not None:
            if limits.blkio_weight is not None:
                bfq = os.path.join(blkio, "blkio.bfq.weight")  # CFQ's blkio.weight left the kernel with CFQ
                weight = (
                    bfq
                    if os.path.exists(bfq) or not os.path.exists(os.path.join(blkio, "blkio.weight"))
                    else os.path.join(blkio, "blkio.weight")
                )
                write(weight, limits.blkio_weight)
            for key, major, minor, rate in limits.blkio_throttle:
                write(os.path.join(blkio, f"blkio.throttle.{V1_THROTTLE_FILES[key]}"), f"{major}:{minor} {rate}")

    def _write_devices(self, rules: tuple[tuple[bool, str], ...]) -> None:
        """The device allowlist, rule by rule in the spec's order (a leading deny-all "a *:* rwm" clears the
        list inherited from the parent). Without it a container's root could mknod and open any device."""
        directory = self.paths["devices"]
        for allow, rule in rules:
            write(os.path.join(directory, "devices.allow" if allow else "devices.deny"), rule)

    def _warn_missing(self, limits: Limits) -> None:
        needs = {
            "memory": (limits.memory, limits.memory_reservation, limits.memory_swap),
            "cpu": (limits.cpu_shares, limits.cpu_quota, limits.cpu_period),
            "cpuset": (limits.cpuset_cpus, limits.cpuset_mems),
            "pids": (limits.pids,),
            "devices": (limits.devices or None,),
            "blkio": (limits.blkio_weight, limits.blkio_throttle or None),
        }
        if limits.hugepages:
            raise CgroupError(
                "hugepage limits need the hugetlb controller, which minirun manages on cgroup v2 only",
                hint="run on a cgroup v2 host, or drop linux.resources.hugepageLimits",
            )
        for controller, values in needs.items():
            if controller not in self.paths and any(v is not None for v in values):
                warn(f"this host does not mount the {controller} cgroup controller: {controller} limits are ignored")

    def _write_memory(self, limits: Limits) -> None:
        directory = self.paths["memory"]
        memory, swap = limits.memory, limits.memory_swap
        memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
        if swap is not None and not os.path.exists(memsw):
            if swap != UNLIMITED:
                warn(
                    "this kernel does not account swap (no memory.memsw.limit_in_bytes; boot with swapaccount=1): "
                    "memory is limited without swap"
                )
            swap = None
        # The kernel keeps memory <= memory+swap at every moment: raise memsw first when growing (runc's order).
        if memory is not None and swap is not None:
            current = read_int(os.path.join(directory, "memory.limit_in_bytes")) or 0
            if swap == UNLIMITED or current < swap:
                write(memsw, _v1_value(swap))
                write(os.path.join(directory, "memory.limit_in_bytes"), _v1_value(memory))
            else:
                write(os.path.join(directory, "memory.limit_in_bytes"), _v1_value(memory))
                write(memsw, _v1_value(swap))
        elif memory is not None:
            write(os.path.join(directory, "memory.limit_in_bytes"), _v1_value(memory))
        elif swap is not None:
            write(memsw, _v1_value(swap))
        if limits.memory_reservation is not None:
            write(os.path.join(directory, "memory.soft_limit_in_bytes"), _v1_value(limits.memory_reservation))

    @staticmethod
    def _write_cfs(directory: str, quota: int | None, period: int | None) -> None:
        """cfs period and quota; the kernel checks them as a pair, so retry in the other order (as runc)."""
        if period is not None:
            try:
                write(os.path.join(directory, "cpu.cfs_period_us"), period)
            except InvalidSpec:
                if quota is None:
                    raise
                write(os.path.join(directory, "cpu.cfs_quota_us"), quota)
                write(os.path.join(directory, "cpu.cfs_period_us"), period)
                return
        if quota is not None:
            write(os.path.join(directory, "cpu.cfs_quota_us"), quota)

    # -- accounting ------------------------------------------------------------------------------------------
    def stats(self) -> CgroupStats:
        from minirun.cgroups.stats import CgroupStats

        if not self.exists():
            raise NotFound(f"container {self.container_id} has no cgroup (it is not running)")
        values: dict[str, Any] = {}
        if (cpuacct := self.paths.get("cpuacct")) is not None:
            values["cpu_ns"] = read_int(os.path.join(cpuacct, "cpuacct.usage"))
            ticks = read_keyed(os.path.join(cpuacct, "cpuacct.stat"))
            ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            if "user" in ticks:
                values["cpu_user_ns"] = ticks["user"] * ns_per_tick
                values["cpu_system_ns"] = ticks.get("system", 0) * ns_per_tick
        if (cpu := self.paths.get("cpu")) is not None:
            values["cpu_throttled_ns"] = read_keyed(os.path.join(cpu, "cpu.stat")).get("throttled_time")
        if (memory := self.paths.get("memory")) is not None:
            stat = read_keyed(os.path.join(memory, "memory.stat"))
            limit = read_int(os.path.join(memory, "memory.limit_in_bytes"))
            swap_limit = read_int(os.path.join(memory, "memory.memsw.limit_in_bytes"))
            values.update(
                memory_bytes=read_int(os.path.join(memory, "memory.usage_in_bytes")),
                memory_cache_bytes=stat.get("total_inactive_file"),
                memory_limit=None if limit is None or limit >= _V1_UNLIMITED else limit,
                memory_swap_limit=None if swap_limit is None or swap_limit >= _V1_UNLIMITED else swap_limit,
                oom_kills=read_keyed(os.path.join(memory, "memory.oom_control")).get("oom_kill", 0),
                memory_limit_hits=max(
                    read_int(os.path.join(memory, "memory.failcnt")) or 0,
                    read_int(os.path.join(memory, "memory.memsw.failcnt")) or 0,
                ),
            )
        if (pids := self.paths.get("pids")) is not None:
            values["pids"] = read_int(os.path.join(pids, "pids.current"))
            values["pids_limit"] = read_int(os.path.join(pids, "pids.max"))
        if (blkio := self.paths.get("blkio")) is not None:
            values["block_read_bytes"], values["block_write_bytes"] = _blkio_bytes(blkio)
        return CgroupStats(**values)

    def oom_killed(self) -> bool:
        memory = self.paths.get("memory")
        if memory is None:
            return False
        oom = read_keyed(os.path.join(memory, "memory.oom_control"))
        if "oom_kill" in oom:
            return oom["oom_kill"] > 0
        # Kernels before 4.13 do not count OOM kills; hitting the limit is the best hint they give.
        return (read_int(os.path.join(memory, "memory.failcnt")) or 0) > 0

    # -- freezer ---------------------------------------------------------------------------------------------
    def _freezer_state(self) -> str:
        state = self._file("freezer", "freezer.state")
        if state is None:
            raise CgroupError(
                "pausing needs the freezer cgroup controller, which this host does not mount",
                hint="mount the v1 freezer hierarchy at /sys/fs/cgroup/freezer",
            )
        self._require()
        return state

    def freeze(self, timeout: float = 5.0) -> None:
        state = self._freezer_state()

        def frozen() -> bool:
            current = read(state)
            if current == "FREEZING":  # some kernels only make progress when asked again
                write(state, "FROZEN")
            return current == "FROZEN"

        write(state, "FROZEN")
        try:
            wait_until(frozen, timeout, f"the freezer to stop container {self.container_id}")
        except CgroupError:
            write(state, "THAWED")
            raise

    def thaw(self, timeout: float = 5.0) -> None:
        state = self._freezer_state()
        write(state, "THAWED")
        # None: removed meanwhile (its init reaped by the foreground CLI, which then destroys it): nothing to thaw
        wait_until(lambda: read(state) in ("THAWED", None), timeout, f"container {self.container_id} to thaw")

    def frozen(self) -> bool:
        state = self._file("freezer", "freezer.state")
        return state is not None and read(state) == "FROZEN"


def _blkio_bytes(directory: str) -> tuple[int | None, int | None]:
    text = read(os.path.join(directory, "blkio.throttle.io_service_bytes_recursive"))
    if text is None:
        return None, None
    totals = {"Read": 0, "Write": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in totals:
            totals[parts[1]] += int(parts[2])
    return totals["Read"], totals["Write"]

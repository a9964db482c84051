"""cgroup v2 (unified): one directory, `<mount>/<parent>/<id>`.

Controllers reach the container's cgroup through `cgroup.subtree_control` of every level above it. As runc's
`fs2.CreateCgroupPath` does, creating a container's cgroup enables them along the path from the hierarchy's
root, root included, within three rules:

- a level that holds processes (other than the root) is never given a controller: the kernel's "no internal
  processes" rule;
- on a systemd host the hierarchy's root is systemd's, and above a delegated cgroup (one systemd marked with
  the `trusted.delegate` or `user.delegate` attribute) nothing is ours: we write only inside the delegation;
- a level we may not write to is left alone.

A controller a requested limit needs and that cannot be enabled is an error naming the controller and the file
(never a container without its limits); the others (for `stats`) are enabled where they can be.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec, MiniError, NotFound
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
from minirun.cgroups.host import V2_CONTROLLERS
from minirun.cgroups.limits import (
    THROTTLE_FLAGS,
    UNLIMITED,
    Limits,
    blkio_to_io_weight,
    cpu_max,
    shares_to_weight,
    swap_v2,
)

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
    if limits.blkio_weight is not None:
        needs.setdefault("io", []).append("blkio-weight")
    for key, *_ in limits.blkio_throttle:
        needs.setdefault("io", []).append(f"device-{THROTTLE_FLAGS[key]}")
    for size, _ in limits.hugepages:
        needs.setdefault("hugetlb", []).append(f"hugepage limit {size}")
    for key, _ in limits.unified:
        needs.setdefault(key.split(".", 1)[0], []).append(key)
    return needs


DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")


def _delegated(level: str) -> bool:
    """True if systemd delegated this cgroup (it marks the delegated cgroup with an extended attribute)."""
    for name in DELEGATE_XATTRS:
        try:
            if os.getxattr(level, name) in (b"1", b"1\n"):
                return True
        except OSError:  # ENODATA: not marked; ENOTSUP/EPERM: cannot tell, as unmarked
            continue
    return False


class V2Cgroup(Cgroup):
    mode = "v2"

    def __init__(self, container_id: str, parent: str | None = None, *, mount: str) -> None:
        super().__init__(container_id, parent)
        self.mount = os.fspath(mount)

    @cached_property
    def path(self) -> str:
        return os.path.join(self.mount, *self.parent_parts, self.container_id)

    @property
    def paths(self) -> dict[str, str]:
        return {"unified": self.path}

    # -- life cycle ------------------------------------------------------------------------------------------
    def create(self, resources: Mapping[str, Any] | Limits | None = None) -> None:
        limits = self._limits(resources)
        levels = [self.mount]
        for part in self.parent_parts:
            levels.append(os.path.join(levels[-1], part))
        self._make_path(levels, _needed_controllers(limits))
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

    def _ours(self, levels: list[str]) -> list[bool]:
        """For each level from the root down: may we write its cgroup.subtree_control?"""
        ours = [
            not os.path.exists(level) or os.access(os.path.join(level, "cgroup.subtree_control"), os.W_OK)
            for level in levels
        ]
        if os.path.isdir(os.path.join(self.mount, "init.scope")):  # systemd runs as PID 1 and manages the root
            ours[0] = False
        for i in range(len(levels) - 1, 0, -1):
            if _delegated(levels[i]):  # systemd's above the delegated cgroup, ours from it down
                ours[:i] = [False] * i
                break
        return ours

    def _make_path(self, levels: list[str], needs: dict[str, list[str]]) -> None:
        """Make the parent path and enable in it, level by level from the root, the controllers the limits
        need (an error if one cannot be) and the ones `stats` reads (where they can be)."""
        wanted = list(dict.fromkeys([*V2_CONTROLLERS, *needs]))
        for level, ours in zip(levels, self._ours(levels), strict=True):
            if level != self.mount:
                self._mkdir(level)
            control = os.path.join(level, "cgroup.subtree_control")
            enabled = {c.lstrip("+") for c in (read(control) or "").split()}  # "+": a fake tree keeps what we wrote
            missing = [c for c in wanted if c not in enabled]
            if not missing:
                continue
            available = set((read(os.path.join(level, "cgroup.controllers")) or "").split())
            busy = level != self.mount and bool(read_pids(os.path.join(level, "cgroup.procs")))
            for controller in missing:
                if controller not in available:
                    why = (
                        f"this kernel has no {controller} controller ({level}/cgroup.controllers lacks it)"
                        if level == self.mount
                        else f"{os.path.dirname(level)}/cgroup.subtree_control does not give it to {level}"
                    )
                elif not ours:
                    why = f"{control} is not ours to change (the host or systemd manages it) and does not enable it"
                elif busy:
                    why = f"{level} holds processes, so the kernel allows no controller in {control}"
                else:
                    try:
                        enabled.add(controller)
                        write(control, " ".join(f"+{c}" for c in sorted(enabled)))
                        continue
                    except MiniError as err:
                        enabled.discard(controller)
                        why = str(err)
                wanted.remove(controller)
                if controller in needs:
                    raise CgroupError(
                        f"the {controller} cgroup controller is needed for {', '.join(needs[controller])} "
                        f"but cannot be enabled: {why}",
                        hint=f"enable {controller} in {control}, or run without {needs[controller][0]}",
                    )

    def _attach_device_filter(self, rules: tuple[tuple[bool, str], ...]) -> None:
        """The device allowlist as an eBPF program on the cgroup (v2 has no devices controller)."""
        from minirun.cgroups import devices_bpf

        try:
            devices_bpf.attach(str(self.path), rules)
        except OSError as err:
            warn(f"the device allowlist is not enforced: the kernel refused its eBPF program ({err.strerror})")

    def add(self, pid: int) -> None:
        write(os.path.join(self.path, "cgroup.procs"), pid)

    def clone_into(self) -> str | None:
        return str(self.path)

    def set(self, resources: Mapping[str, Any] | Limits) -> None:
        self._require()
        self._write_limits(self._limits(resources))

    def pids(self) -> list[int]:
        found: dict[int, None] = {}
        for directory in walk_bottom_up(self.path):
            found.update(dict.fromkeys(read_pids(os.path.join(directory, "cgroup.procs"))))
        return list(found)

    def _write_limits(self, limits: Limits) -> None:
        self._require_controllers(limits)
        self._write_memory(limits)
        self._write_cpu(limits)
        if limits.pids is not None:
            write(os.path.join(self.path, "pids.max"), _v2_value(limits.pids))
        self._write_io(limits)
        self._write_named_files(limits)

    def _require_controllers(self, limits: Limits) -> None:
        """CgroupError naming the limits that cannot apply when a controller they need is not enabled here."""
        available = set((read(os.path.join(self.path, "cgroup.controllers")) or "").split())
        for controller, names in _needed_controllers(limits).items():
            if controller not in available:  # create() enabled it; a live cgroup (set) may lack it
                raise CgroupError(
                    f"the {controller} cgroup controller is not enabled for {self.path}: "
                    f"{', '.join(names)} cannot be applied",
                    hint=f"enable {controller} in {os.path.dirname(self.path)}/cgroup.subtree_control",
                )

    def _write_memory(self, limits: Limits) -> None:
        d = self.path
        if limits.memory is not None:
            write(os.path.join(d, "memory.max"), _v2_value(limits.memory))
        swap = swap_v2(limits.memory_swap, limits.memory)
        if swap is not None:
            if os.path.exists(os.path.join(d, "memory.swap.max")):
                write(os.path.join(d, "memory.swap.max"), _v2_value(swap))
            elif swap != UNLIMITED:
                warn("this kernel does not account swap (no memory.swap.max): memory is limited without swap")
        if limits.memory_reservation is not None:
            # runc and crun: the reservation is a best-effort protection, memory.low (memory.high would throttle)
            write(
                os.path.join(d, "memory.low"),
                "max" if limits.memory_reservation == UNLIMITED else limits.memory_reservation,
            )

    def _write_cpu(self, limits: Limits) -> None:
        d = self.path
        if limits.cpu_shares is not None:
            write(os.path.join(d, "cpu.weight"), shares_to_weight(limits.cpu_shares))
        if (value := cpu_max(limits.cpu_quota, limits.cpu_period)) is not None:
            write(os.path.join(d, "cpu.max"), value)
        if limits.cpuset_cpus is not None:
            write(os.path.join(d, "cpuset.cpus"), limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            write(os.path.join(d, "cpuset.mems"), limits.cpuset_mems)

    def _write_io(self, limits: Limits) -> None:
        d = self.path
        if limits.blkio_weight is not None:
            # runc: BFQ's own weight where the device's scheduler is BFQ, else io.weight, converted
            if os.path.exists(os.path.join(d, "io.bfq.weight")):
                write(os.path.join(d, "io.bfq.weight"), limits.blkio_weight)
            else:
                write(os.path.join(d, "io.weight"), blkio_to_io_weight(limits.blkio_weight))
        for key, major, minor, rate in limits.blkio_throttle:
            write(os.path.join(d, "io.max"), f"{major}:{minor} {key}={rate}")

    def _write_named_files(self, limits: Limits) -> None:
        """Huge page limits and `unified` entries: files named by the spec, so each must exist on this kernel."""
        d = self.path
        for size, limit in limits.hugepages:
            if not os.path.exists(os.path.join(d, f"hugetlb.{size}.max")):
                raise InvalidSpec(
                    f"linux.resources.hugepageLimits: this kernel has no {size} huge pages",
                    hint=f"see the hugetlb.*.max files in {d}",
                )
            write(os.path.join(d, f"hugetlb.{size}.max"), limit)
        for key, value in limits.unified:
            if not os.path.exists(os.path.join(d, key)):
                raise InvalidSpec(
                    f"linux.resources.unified.{key}: no such cgroup file on this kernel",
                    hint=f"see the files in {d}",
                )
            write(os.path.join(d, key), value)

    # -- accounting ------------------------------------------------------------------------------------------
    def stats(self) -> CgroupStats:
        from minirun.cgroups.stats import CgroupStats

        d = self.path
        if not os.path.isdir(d):
            raise NotFound(f"container {self.container_id} has no cgroup (it is not running)")
        cpu = read_keyed(os.path.join(d, "cpu.stat"))
        memory_stat = read_keyed(os.path.join(d, "memory.stat"))
        events = read_keyed(os.path.join(d, "memory.events"))
        memory_limit = read_int(os.path.join(d, "memory.max"))
        swap_max = read_int(os.path.join(d, "memory.swap.max"))
        read_bytes, write_bytes = _io_bytes(d)

        def us_to_ns(key: str) -> int | None:
            return cpu[key] * 1000 if key in cpu else None

        return CgroupStats(
            cpu_ns=us_to_ns("usage_usec"),
            cpu_user_ns=us_to_ns("user_usec"),
            cpu_system_ns=us_to_ns("system_usec"),
            cpu_throttled_ns=us_to_ns("throttled_usec"),
            memory_bytes=read_int(os.path.join(d, "memory.current")),
            memory_cache_bytes=memory_stat.get("inactive_file"),
            memory_limit=memory_limit,
            memory_swap_limit=None if memory_limit is None or swap_max is None else memory_limit + swap_max,
            oom_kills=events.get("oom_kill", 0),
            memory_limit_hits=events.get("max", 0),
            pids=read_int(os.path.join(d, "pids.current")),
            pids_limit=read_int(os.path.join(d, "pids.max")),
            block_read_bytes=read_bytes,
            block_write_bytes=write_bytes,
        )

    def oom_killed(self) -> bool:
        return read_keyed(os.path.join(self.path, "memory.events")).get("oom_kill", 0) > 0

    # -- freezer (core v2: no controller needed) -------------------------------------------------------------
    def _events(self) -> dict[str, int]:
        return read_keyed(os.path.join(self.path, "cgroup.events"))

    def freeze(self, timeout: float = 5.0) -> None:
        self._require()
        write(os.path.join(self.path, "cgroup.freeze"), 1)
        try:
            wait_until(lambda: self._events().get("frozen") == 1, timeout, f"container {self.container_id} to freeze")
        except BaseException:
            write(os.path.join(self.path, "cgroup.freeze"), 0)
            raise

    def thaw(self, timeout: float = 5.0) -> None:
        self._require()
        write(os.path.join(self.path, "cgroup.freeze"), 0)
        # None: removed meanwhile (its init reaped by the foreground CLI, which then destroys it): nothing to thaw
        wait_until(lambda: self._events().get("frozen", 0) == 0, timeout, f"container {self.container_id} to thaw")

    def frozen(self) -> bool:
        return self._events().get("frozen") == 1

    def kill_all(self, sig: int = signal.SIGKILL) -> int:
        """SIGKILL goes through cgroup.kill (Linux 5.14+): the kernel kills the whole subtree atomically."""
        if sig == signal.SIGKILL and os.path.exists(os.path.join(self.path, "cgroup.kill")):
            count = len(self.pids())
            write(os.path.join(self.path, "cgroup.kill"), 1)
            return count
        return super().kill_all(sig)


def _io_bytes(directory: str) -> tuple[int | None, int | None]:
    text = read(os.path.join(directory, "io.stat"))
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

"""The OCI `linux.resources` dict, checked and turned into typed limits, and the v1 <-> v2 conversions.

The same dict comes from `minirun run` flags and from a bundle's config.json, so it is hostile input:
every field is type- and range-checked here, once, before any driver writes a byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicache.errors import InvalidSpec
from minicache.record import Record

UNLIMITED = -1
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144
MIN_CFS_PERIOD, MAX_CFS_PERIOD = 1000, 1000000  # microseconds, the kernel's bounds
MIN_CFS_QUOTA = 1000
DEFAULT_CFS_PERIOD = 100000
CPU_LIST = r"[0-9]{1,6}(-[0-9]{1,6})?(,[0-9]{1,6}(-[0-9]{1,6})?)*"  # ASCII digits only (\d takes any script's)
_INT64_MAX = 2**63 - 1
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000
# OCI blockIO list -> the io.max key it sets on v2 (v1: blkio.throttle.<v1 name>_device).
THROTTLES = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}
THROTTLE_FLAGS = {"rbps": "read-bps", "wbps": "write-bps", "riops": "read-iops", "wiops": "write-iops"}
_HINT = "see the OCI runtime spec, linux.resources"


class Limits(Record):
    """Typed resource limits. None: not set (leave the kernel's default); -1: explicitly unlimited.

    A Record, the project's one record type (cheap to define and to build on the `run` path). Treat it as
    read-only.
    """

    memory: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None  # memory + swap, as in OCI and cgroup v1's memsw
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids: int | None = None
    blkio_weight: int | None = None  # OCI blockIO.weight, 10 to 1000
    # OCI blockIO.throttle*Device as (file key, major, minor, rate): key "rbps", "wbps", "riops" or "wiops"
    blkio_throttle: tuple[tuple[str, int, int, int], ...] = ()
    hugepages: tuple[tuple[str, int], ...] = ()  # OCI hugepageLimits as (page size "2MB", bytes)
    unified: tuple[tuple[str, str], ...] = ()  # raw cgroup v2 files (OCI linux.resources.unified)
    # OCI linux.resources.devices in order, as (allow, "TYPE MAJOR:MINOR ACCESS") in v1 devices.list syntax.
    devices: tuple[tuple[bool, str], ...] = ()

    def requested(self) -> list[str]:
        """The names of the limits that are set, for messages ("memory", "cpu-shares", ...)."""
        names = {
            "memory": self.memory,
            "memory-reservation": self.memory_reservation,
            "memory-swap": self.memory_swap,
            "cpu-shares": self.cpu_shares,
            "cpu-quota": self.cpu_quota,
            "cpu-period": self.cpu_period,
            "cpuset-cpus": self.cpuset_cpus,
            "cpuset-mems": self.cpuset_mems,
            "pids-limit": self.pids,
            "blkio-weight": self.blkio_weight,
        }
        return (
            [name for name, value in names.items() if value is not None]
            + [f"device-{THROTTLE_FLAGS[key]}" for key, *_ in self.blkio_throttle]
            + [f"hugetlb {size}" for size, _ in self.hugepages]
            + [k for k, _ in self.unified]
        )


def _int(section: Mapping[str, Any], key: str, where: str, *, minimum: int = UNLIMITED) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; JSON true is not a number of bytes.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{where}.{key} must be an integer, not {value!r}", hint=_HINT)
    if value < minimum or value > _INT64_MAX:
        raise InvalidSpec(f"{where}.{key} is out of range: {value}", hint=_HINT)
    return value


def _cpu_list(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    import re  # only for --cpuset-cpus/--cpuset-mems: off the common `run` path

    if not isinstance(value, str) or not re.fullmatch(CPU_LIST, value):
        raise InvalidSpec(f"{where}.{key} must be a list like 0-2,4, not {value!r}", hint=_HINT)
    for lo, hi in parse_cpu_list(value):
        if hi < lo:
            raise InvalidSpec(f"{where}.{key} has a backwards range in {value!r}", hint=_HINT)
    return value


def _section(resources: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"linux.resources.{key} must be an object, not {value!r}", hint=_HINT)
    return value


def parse_resources(resources: Mapping[str, Any] | None) -> Limits:
    """Check an OCI `linux.resources` dict and return its limits; InvalidSpec names the first bad field."""
    if resources is None:
        return Limits()
    if not isinstance(resources, Mapping):
        raise InvalidSpec(f"linux.resources must be an object, not {resources!r}", hint=_HINT)
    memory, cpu, pids = (_section(resources, k) for k in ("memory", "cpu", "pids"))
    where = "linux.resources.memory"
    limits = Limits(
        memory=_zero_is_unset(_int(memory, "limit", where)),
        memory_reservation=_zero_is_unset(_int(memory, "reservation", where)),
        memory_swap=_zero_is_unset(_int(memory, "swap", where)),
        cpu_shares=_zero_is_unset(_int(cpu, "shares", "linux.resources.cpu", minimum=0)),
        cpu_quota=_zero_is_unset(_int(cpu, "quota", "linux.resources.cpu")),
        cpu_period=_zero_is_unset(_int(cpu, "period", "linux.resources.cpu", minimum=0)),
        cpuset_cpus=_cpu_list(cpu, "cpus", "linux.resources.cpu"),
        cpuset_mems=_cpu_list(cpu, "mems", "linux.resources.cpu"),
        pids=_pids(_int(pids, "limit", "linux.resources.pids", minimum=-(2**63))),
        unified=_unified(resources.get("unified")),
        devices=_devices(resources.get("devices")),
        **_block_io(_section(resources, "blockIO")),
        hugepages=_hugepages(resources.get("hugepageLimits")),
    )
    if limits.cpu_period is not None and not MIN_CFS_PERIOD <= limits.cpu_period <= MAX_CFS_PERIOD:
        raise InvalidSpec(
            f"linux.resources.cpu.period must be between {MIN_CFS_PERIOD} and {MAX_CFS_PERIOD} microseconds, "
            f"not {limits.cpu_period}",
            hint=_HINT,
        )
    if limits.cpu_quota is not None and limits.cpu_quota != UNLIMITED and limits.cpu_quota < MIN_CFS_QUOTA:
        raise InvalidSpec(
            f"linux.resources.cpu.quota must be -1 or at least {MIN_CFS_QUOTA} microseconds, not {limits.cpu_quota}",
            hint=_HINT,
        )
    if limits.memory_swap not in (None, UNLIMITED):
        if limits.memory in (None, UNLIMITED):
            raise InvalidSpec("a memory+swap limit needs a memory limit too", hint="set --memory as well")
        if limits.memory_swap < limits.memory:
            raise InvalidSpec(
                f"the memory+swap limit ({limits.memory_swap}) is below the memory limit ({limits.memory})",
                hint="--memory-swap counts memory plus swap, so it must be at least --memory",
            )
    return limits


def _zero_is_unset(value: int | None) -> int | None:
    """OCI (and runc) treat 0 as "not set" for these fields."""
    return None if value == 0 else value


def _pids(value: int | None) -> int | None:
    """runc's reading of pids.limit: 0 unset, negative unlimited, positive a limit."""
    if value is None or value == 0:
        return None
    return UNLIMITED if value < 0 else value


def _block_io(section: Mapping[str, Any]) -> dict[str, Any]:
    """OCI blockIO: the weight and the per-device throttles (weightDevice and leafWeight are not supported)."""
    where = "linux.resources.blockIO"
    for unsupported in ("leafWeight", "weightDevice"):
        if section.get(unsupported):
            raise InvalidSpec(f"{where}.{unsupported} is not supported", hint="use blockIO.weight")
    weight = _zero_is_unset(_int(section, "weight", where, minimum=0))
    if weight is not None and not MIN_BLKIO_WEIGHT <= weight <= MAX_BLKIO_WEIGHT:
        raise InvalidSpec(f"{where}.weight must be between 10 and 1000, not {weight}", hint=_HINT)
    throttles = []
    for field, key in THROTTLES.items():
        entries = section.get(field) or []
        if not isinstance(entries, list):
            raise InvalidSpec(f"{where}.{field} must be a list, not {entries!r}", hint=_HINT)
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise InvalidSpec(f"{where}.{field}[{i}] must be an object, not {entry!r}", hint=_HINT)
            numbers = [_int(entry, k, f"{where}.{field}[{i}]", minimum=0) for k in ("major", "minor", "rate")]
            if None in numbers or numbers[0] > 0xFFFFFFFF or numbers[1] > 0xFFFFFFFF:
                raise InvalidSpec(f"{where}.{field}[{i}] needs a major, a minor and a rate", hint=_HINT)
            throttles.append((key, *numbers))
    return {"blkio_weight": weight, "blkio_throttle": tuple(throttles)}


_PAGE_SIZE = r"[0-9]{1,4}[KMG]B"


def _hugepages(value: Any) -> tuple[tuple[str, int], ...]:
    """OCI hugepageLimits: [{"pageSize": "2MB", "limit": bytes}] (the size as the hugetlb file names it)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidSpec(f"linux.resources.hugepageLimits must be a list, not {value!r}", hint=_HINT)
    import re  # only with hugepageLimits: off the common `run` path

    limits = []
    for i, entry in enumerate(value):
        where = f"linux.resources.hugepageLimits[{i}]"
        size = entry.get("pageSize") if isinstance(entry, Mapping) else None
        if not isinstance(size, str) or not re.fullmatch(_PAGE_SIZE, size):
            raise InvalidSpec(f"{where}.pageSize must be a size like 2MB, not {size!r}", hint=_HINT)
        limit = _int(entry, "limit", where, minimum=0)
        if limit is None:
            raise InvalidSpec(f"{where} needs a limit", hint=_HINT)
        limits.append((size, limit))
    return tuple(limits)


_UNIFIED_KEY = r"[a-z0-9_]+\.[a-z0-9_.]+"


def _unified(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"linux.resources.unified must be an object, not {value!r}", hint=_HINT)
    import re  # only with linux.resources.unified: off the common `run` path

    items = []
    for key, val in value.items():
        # Only plain "controller.file" names: no paths, and no cgroup.* core files (procs, kill, freeze, ...).
        if not isinstance(key, str) or not re.fullmatch(_UNIFIED_KEY, key) or key.startswith("cgroup."):
            raise InvalidSpec(f"linux.resources.unified has an invalid key {key!r}", hint=_HINT)
        if not isinstance(val, str) or "\n" in val.rstrip("\n") or "\0" in val:
            raise InvalidSpec(f"linux.resources.unified.{key} must be a one-line string, not {val!r}", hint=_HINT)
        items.append((key, val))
    return tuple(sorted(items))


def _devices(value: Any) -> tuple[tuple[bool, str], ...]:
    """OCI device cgroup rules -> (allow, "c 1:3 rwm"); a missing type, major or minor is the wildcard."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidSpec(f"linux.resources.devices must be a list, not {value!r}", hint=_HINT)
    rules = []
    for i, rule in enumerate(value):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(rule, Mapping) or not isinstance(rule.get("allow"), bool):
            raise InvalidSpec(f"{where} needs a boolean 'allow', not {rule!r}", hint=_HINT)
        kind = rule.get("type") or "a"
        access = rule.get("access") or "rwm"
        if kind not in ("a", "b", "c"):
            raise InvalidSpec(f"{where}.type must be a, b or c, not {kind!r}", hint=_HINT)
        if not isinstance(access, str) or not access or set(access) - set("rwm") or len(set(access)) != len(access):
            raise InvalidSpec(f"{where}.access must be letters of 'rwm', not {access!r}", hint=_HINT)
        numbers = []
        for key in ("major", "minor"):
            number = rule.get(key)
            if number is None or number == -1:
                numbers.append("*")
            elif isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 0xFFFFFFFF:
                raise InvalidSpec(f"{where}.{key} must be a device number, not {number!r}", hint=_HINT)
            else:
                numbers.append(str(number))
        if kind == "a" and numbers != ["*", "*"]:  # v1 would read it as every device, whatever the numbers
            raise InvalidSpec(f"{where}: type a (all devices) cannot name a major or minor", hint=_HINT)
        rules.append((rule["allow"], f"{kind} {numbers[0]}:{numbers[1]} {access}"))
    return tuple(rules)


def parse_cpu_list(text: str) -> list[tuple[int, int]]:
    """ "0-2,4" -> [(0, 2), (4, 4)] (the kernel's cpu and node list format)."""
    ranges = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return ranges


def cpu_set(text: str) -> set[int]:
    """The numbers a kernel list names: "0-2,4" -> {0, 1, 2, 4}."""
    return {n for lo, hi in parse_cpu_list(text) for n in range(lo, hi + 1)}


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000], the conversion runc and crun use."""
    shares = min(max(shares, MIN_CPU_SHARES), MAX_CPU_SHARES)
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """The smallest shares that `shares_to_weight` maps to `weight`, for showing v2 weights as Docker shares."""
    return 2 + -((-(weight - 1) * 262142) // 9999)


def blkio_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10, 1000] -> v2 io.weight [1, 10000], the conversion runc uses."""
    return 1 + (weight - MIN_BLKIO_WEIGHT) * 9999 // 990


def swap_v2(memory_swap: int | None, memory: int | None) -> int | None:
    """OCI memory+swap -> v2 memory.swap.max (swap alone); -1 unlimited, None not set."""
    if memory_swap is None:
        return None
    if memory_swap == UNLIMITED:
        return UNLIMITED
    assert memory is not None and memory >= 0  # parse_resources guarantees it
    return memory_swap - memory


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """v2 cpu.max: "QUOTA PERIOD" or "max PERIOD"; None when neither is set."""
    if quota is None and period is None:
        return None
    period = period or DEFAULT_CFS_PERIOD
    return f"max {period}" if quota is None or quota == UNLIMITED else f"{quota} {period}"

"""Docker's resource flags for `minirun run` (and later `update`), turned into OCI `linux.resources`.

    FLAGS, DEVICE_FLAGS                # --memory, --cpus, --pids-limit, ...: declared here, made options
                                       # of `run`'s table by the command line (minirun.cli.commands.run)
    resources = resources_from_args(args)
    spec["linux"]["resources"] = resources

Values are checked here with Docker's rules and units, so a bad one fails before anything is made. The
command line imports this module, never the other way round.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minirun.cgroups.base import warn
from minirun.cgroups.limits import (
    CPU_LIST,
    DEFAULT_CFS_PERIOD,
    MAX_CFS_PERIOD,
    MAX_CPU_SHARES,
    MIN_CFS_PERIOD,
    MIN_CFS_QUOTA,
    MIN_CPU_SHARES,
    cpu_set,
    parse_cpu_list,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum for --memory and --memory-reservation (6MB)
# patterns compiled (and cached by `re`) on first use: most runs give none of these flags
_SIZE = r"(?i)([0-9]{1,20}(?:\.[0-9]{1,20})?) ?([kmgtp])?(i?b)?"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_INT64_MAX = 2**63 - 1
_SIZE_HINT = "use a number with an optional unit b, k, m or g, e.g. 512m or 1.5g"

# dest -> (flags, metavar, help)
FLAGS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "memory": (("-m", "--memory"), "BYTES", "memory limit (units b, k, m, g; at least 6m)"),
    "memory_reservation": (
        ("--memory-reservation",),
        "BYTES",
        "memory soft limit, reclaimed towards under pressure (v1 soft_limit_in_bytes, v2 memory.high)",
    ),
    "memory_swap": (
        ("--memory-swap",),
        "BYTES",
        "memory plus swap limit; -1 for unlimited swap (default: twice --memory)",
    ),
    "cpus": (("--cpus",), "NUMBER", "number of CPUs (CFS quota per 100ms period), e.g. 0.5"),
    "cpu_shares": (("-c", "--cpu-shares"), "SHARES", "relative CPU weight (default 1024; v2 cpu.weight converted)"),
    "cpu_period": (("--cpu-period",), "MICROSECONDS", "CFS period (1000 to 1000000)"),
    "cpu_quota": (("--cpu-quota",), "MICROSECONDS", "CFS quota per period (at least 1000, -1 for unlimited)"),
    "cpuset_cpus": (("--cpuset-cpus",), "LIST", "CPUs the container may use, e.g. 0-2,4"),
    "cpuset_mems": (("--cpuset-mems",), "LIST", "memory nodes the container may use, e.g. 0"),
    "pids_limit": (("--pids-limit",), "NUMBER", "maximum number of processes (-1 for unlimited)"),
    "blkio_weight": (("--blkio-weight",), "WEIGHT", "relative block I/O weight, 10 to 1000 (v2 io.weight converted)"),
    "device_read_bps": (("--device-read-bps",), "DEVICE:RATE", "read rate limit of a block device, e.g. /dev/sda:1mb"),
    "device_write_bps": (("--device-write-bps",), "DEVICE:RATE", "write rate limit of a block device (bytes/s)"),
    "device_read_iops": (("--device-read-iops",), "DEVICE:RATE", "read limit of a block device (I/O per second)"),
    "device_write_iops": (("--device-write-iops",), "DEVICE:RATE", "write limit of a block device (I/O per second)"),
}
# The repeatable ones (one per device), and the OCI blockIO list each fills.
DEVICE_FLAGS = {
    "device_read_bps": "throttleReadBpsDevice",
    "device_write_bps": "throttleWriteBpsDevice",
    "device_read_iops": "throttleReadIOPSDevice",
    "device_write_iops": "throttleWriteIOPSDevice",
}


def parse_bytes(flag: str, value: str) -> int:
    """Docker's RAMInBytes: "512m" -> 536870912; units are powers of 1024."""
    import re  # imported here, as Fraction: only a resource flag needs them
    from fractions import Fraction

    m = re.fullmatch(_SIZE, value.strip())
    if not m:
        raise InvalidSpec(f"invalid value {value!r} for {flag}", hint=_SIZE_HINT)
    number, unit = Fraction(m.group(1)), (m.group(2) or "").lower()
    size = int(number * _UNITS[unit])
    if size > _INT64_MAX:
        raise InvalidSpec(f"{flag} {value} is too large", hint=_SIZE_HINT)
    return size


def _ascii_digits(text: str, most: int) -> bool:
    """Whether `text` is 1 to `most` ASCII digits."""
    return re.fullmatch(f"[0-9]{{1,{most}}}", text) is not None


def _is_decimal(text: str) -> bool:
    """Docker's --cpus syntax, [0-9]{0,20}\\.?[0-9]{1,20}: digits, or digits, a dot and digits (0.5, .5)."""
    whole, dot, fraction = text.partition(".")
    if dot:
        return (not whole or _ascii_digits(whole, 20)) and _ascii_digits(fraction, 20)
    return _ascii_digits(text, 40)


def _int(flag: str, value: str, hint: str) -> int:
    text = value.strip()
    if not _ascii_digits(text.removeprefix("-"), 19) or abs(int(text)) > _INT64_MAX:
        raise InvalidSpec(f"invalid value {value!r} for {flag}: not an integer", hint=hint)
    return int(text)


def online(kind: str) -> set[int]:
    """Online CPUs ("cpu") or memory nodes ("node") of this host, from /sys/devices/system."""
    try:
        with open(f"/sys/devices/system/{kind}/online") as f:
            return cpu_set(f.read())
    except OSError:
        return {0} if kind == "node" else set(range(os.cpu_count() or 1))


def resources_from_args(
    args: argparse.Namespace,
    *,
    cpu_count: int | None = None,
    online_cpus: set[int] | None = None,
    online_mems: set[int] | None = None,
) -> dict[str, Any]:
    """The OCI `linux.resources` dict the flags ask for ({} for none); InvalidSpec for a bad value.

    `cpu_count`, `online_cpus` and `online_mems` default to this host's (they bound --cpus and --cpuset-*).
    """
    get = lambda name: getattr(args, name, None)  # noqa: E731
    memory = _memory(get)
    cpu = _cpu(get, cpu_count)
    for dest, flag, key, kind, available in (
        ("cpuset_cpus", "--cpuset-cpus", "cpus", "cpu", online_cpus),
        ("cpuset_mems", "--cpuset-mems", "mems", "node", online_mems),
    ):
        if (value := get(dest)) is not None and value.strip():
            cpu[key] = _cpu_list(flag, value.strip(), available if available is not None else online(kind))
    pids = _pids(get)
    block_io = _block_io(get)
    sections = (("memory", memory), ("cpu", cpu), ("pids", pids), ("blockIO", block_io))
    return {k: v for k, v in sections if v}


def _memory(get: Callable[[str], Any]) -> dict[str, int]:
    """--memory, --memory-reservation and --memory-swap as OCI `memory` (swap defaults to twice the limit)."""
    memory: dict[str, int] = {}
    if (value := get("memory")) is not None and (limit := parse_bytes("--memory", value)):
        if limit < MIN_MEMORY:
            raise InvalidSpec(f"--memory {value} is below the minimum of 6m", hint="give the container at least 6m")
        memory["limit"] = limit
    if (value := get("memory_reservation")) is not None and (reservation := parse_bytes("--memory-reservation", value)):
        if reservation < MIN_MEMORY:
            raise InvalidSpec(f"--memory-reservation {value} is below the minimum of 6m", hint="use at least 6m")
        if "limit" in memory and reservation > memory["limit"]:
            raise InvalidSpec(
                f"--memory-reservation {value} is above --memory {get('memory')}",
                hint="the reservation is a soft limit below the hard one",
            )
        memory["reservation"] = reservation
    if (value := get("memory_swap")) is not None:
        swap = -1 if value.strip() == "-1" else parse_bytes("--memory-swap", value)
        if swap:
            if "limit" not in memory:
                raise InvalidSpec("--memory-swap needs --memory", hint="--memory-swap is memory plus swap; set both")
            if swap != -1 and swap < memory["limit"]:
                raise InvalidSpec(
                    f"--memory-swap {value} is below --memory {get('memory')}",
                    hint="--memory-swap counts memory plus swap, so it must be at least --memory (or -1)",
                )
            memory["swap"] = swap
    if "limit" in memory and "swap" not in memory:
        memory["swap"] = 2 * memory["limit"]  # Docker's default: as much swap as memory
    return memory


def _cpu(get: Callable[[str], Any], cpu_count: int | None) -> dict[str, Any]:
    """--cpus, --cpu-period, --cpu-quota and --cpu-shares as OCI `cpu` (the cpusets are added by the caller)."""
    cpu: dict[str, Any] = {}
    cpus = get("cpus")
    if cpus is not None and (get("cpu_period") is not None or get("cpu_quota") is not None):
        raise InvalidSpec("--cpus and --cpu-period/--cpu-quota cannot both be set", hint="use one or the other")
    if cpus is not None:
        cpu.update(_cpus(cpus, cpu_count if cpu_count is not None else len(os.sched_getaffinity(0))))
    if (value := get("cpu_period")) is not None and (period := _int("--cpu-period", value, "e.g. 100000")):
        if not MIN_CFS_PERIOD <= period <= MAX_CFS_PERIOD:
            raise InvalidSpec(
                f"--cpu-period {value} is out of range", hint="use 1000 (1ms) to 1000000 (1s) microseconds"
            )
        cpu["period"] = period
    if (value := get("cpu_quota")) is not None and (quota := _int("--cpu-quota", value, "e.g. 50000")):
        if quota != -1 and quota < MIN_CFS_QUOTA:
            raise InvalidSpec(f"--cpu-quota {value} is out of range", hint="use at least 1000 microseconds, or -1")
        cpu["quota"] = quota
    if (value := get("cpu_shares")) is not None and (shares := _int("--cpu-shares", value, "e.g. 512")):
        if shares < 0:
            raise InvalidSpec(f"--cpu-shares {value} is negative", hint="use 2 to 262144 (the default is 1024)")
        clamped = min(max(shares, MIN_CPU_SHARES), MAX_CPU_SHARES)
        if clamped != shares:
            warn(f"--cpu-shares {shares} changed to {clamped}, the nearest value the kernel allows")
        cpu["shares"] = clamped
    return cpu


def _cpus(cpus: str, count: int) -> dict[str, int]:
    """--cpus as a CFS quota per default period ({} for 0), bounded by the `count` CPUs this process may use."""
    if not _is_decimal(cpus.strip()):
        raise InvalidSpec(f"invalid value {cpus!r} for --cpus", hint="give a positive number of CPUs, e.g. 1.5")
    from fractions import Fraction

    amount = Fraction(cpus.strip())
    if not amount:
        return {}
    if not Fraction(1, 100) <= amount <= count:
        raise InvalidSpec(
            f"--cpus {cpus} is out of range",
            hint=f"use 0.01 to {count}.00: this host has {count} CPU{'s' if count != 1 else ''}",
        )
    return {"quota": round(amount * DEFAULT_CFS_PERIOD), "period": DEFAULT_CFS_PERIOD}


def _pids(get: Callable[[str], Any]) -> dict[str, int]:
    """--pids-limit as OCI `pids` (0 or a negative limit means unlimited, as in Docker)."""
    if (value := get("pids_limit")) is None:
        return {}
    hint = "use a positive number, or -1 for unlimited"
    limit = _int("--pids-limit", value, hint)
    if limit < -1:
        raise InvalidSpec(f"--pids-limit {value} is out of range", hint=hint)
    return {"limit": -1 if limit <= 0 else limit}


def _block_io(get: Callable[[str], Any]) -> dict[str, Any]:
    """--blkio-weight and the --device-{read,write}-{bps,iops} flags as OCI `blockIO`."""
    block_io: dict[str, Any] = {}
    if (value := get("blkio_weight")) is not None and (weight := _int("--blkio-weight", value, "use 10 to 1000")):
        if not 10 <= weight <= 1000:
            raise InvalidSpec(f"--blkio-weight {value} is out of range", hint="use 10 to 1000 (or 0 for the default)")
        block_io["weight"] = weight
    for dest, field in DEVICE_FLAGS.items():
        for value in get(dest) or ():
            block_io.setdefault(field, []).append(_device_rate(f"--{dest.replace('_', '-')}", value))
    return block_io


def _device_rate(flag: str, value: str) -> dict[str, int]:
    """ "/dev/sda:1mb" -> {"major": 8, "minor": 0, "rate": 1048576} (iops flags take a plain number)."""
    import stat

    path, sep, rate_text = value.rpartition(":")
    if not sep or not path or not rate_text:
        raise InvalidSpec(f"invalid value {value!r} for {flag}", hint="use DEVICE:RATE, e.g. /dev/sda:10mb")
    if flag.endswith("bps"):
        rate = parse_bytes(flag, rate_text)
    else:
        rate = _int(flag, rate_text, "give the rate as a number of I/O operations per second, e.g. /dev/sda:1000")
        if rate < 0:
            raise InvalidSpec(f"invalid value {value!r} for {flag}: a negative rate", hint="use a positive number")
    try:
        st = os.stat(path)
    except OSError as err:
        raise InvalidSpec(f"{flag} {value}: cannot use {path}: {err.strerror}", hint="name a block device") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidSpec(f"{flag} {value}: {path} is not a block device", hint="name a block device, e.g. /dev/sda")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "rate": rate}


def _cpu_list(flag: str, value: str, available: set[int]) -> str:
    import re

    if not re.fullmatch(CPU_LIST, value):
        raise InvalidSpec(f"invalid value {value!r} for {flag}", hint="use a list like 0-2,4")
    ranges = parse_cpu_list(value)
    if any(hi < lo for lo, hi in ranges):
        raise InvalidSpec(f"invalid value {value!r} for {flag}: a range runs backwards", hint="write ranges low-high")
    top = max(available, default=-1)
    # Bound the ranges before expanding them: "0-999999" must not build a million-entry set.
    if any(hi > top for _, hi in ranges) or not cpu_set(value) <= available:
        have = ",".join(str(n) for n in sorted(available))
        raise InvalidSpec(f"{flag} {value}: not available on this host", hint=f"available: {have}")
    return value

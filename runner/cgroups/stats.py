"""Resource accounting read from a cgroup, and its rendering as a `docker stats` row or JSON line.

Numbers are what the kernel counts for the container's own cgroup (children included). None means the
host cannot tell (controller missing, or unlimited for a limit).
"""

from __future__ import annotations

import time

from minicache.record import Record
from minishow import bytes_size, human_size, table

NO_VALUE = "--"  # what docker stats shows for a figure it does not have
_ROW_KEYS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
_HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


class CgroupStats(Record, frozen=True):
    """One reading of a cgroup's counters; `read_at` is time.monotonic() when it was taken (default: now)."""

    cpu_ns: int | None = None  # CPU time used, user + system
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    cpu_throttled_ns: int | None = None  # time held back by the CPU quota
    memory_bytes: int | None = None  # usage including page cache
    memory_cache_bytes: int | None = None  # inactive file cache (reclaimable first; docker subtracts it)
    memory_limit: int | None = None  # None: unlimited
    memory_swap_limit: int | None = None  # memory + swap; None: unlimited or not accounted
    oom_kills: int = 0
    memory_limit_hits: int = 0  # v1 memory.failcnt / v2 memory.events max
    pids: int | None = None
    pids_limit: int | None = None  # None: unlimited
    block_read_bytes: int | None = None
    block_write_bytes: int | None = None
    read_at: float = 0.0

    def __init__(self, **fields: object) -> None:
        fields.setdefault("read_at", time.monotonic())
        super().__init__(**fields)

    @property
    def memory_used(self) -> int | None:
        """Usage without inactive file cache, the figure docker stats shows."""
        if self.memory_bytes is None:
            return None
        cache = self.memory_cache_bytes or 0
        return self.memory_bytes - cache if cache < self.memory_bytes else self.memory_bytes


def cpu_percent(before: CgroupStats | None, after: CgroupStats) -> float | None:
    """CPU use between two readings, in percent of one CPU (200% is two CPUs busy, as docker stats)."""
    if before is None or before.cpu_ns is None or after.cpu_ns is None:
        return None
    wall_ns = (after.read_at - before.read_at) * 1e9
    if wall_ns <= 0:
        return None
    return max(0.0, (after.cpu_ns - before.cpu_ns) / wall_ns * 100.0)


def host_memory() -> int | None:
    """MemTotal of the host in bytes (docker stats shows it as the limit of an unlimited container)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _io_size(n: int) -> str:
    """An I/O counter as docker stats shows it: go-units HumanSizeWithPrecision(n, 3), powers of 1000 (`1.5kB`).
    Memory, by contrast, is shown in powers of 1024 (BytesSize, `1.5MiB`)."""
    return human_size(n, 3)


def stats_row(
    container_id: str,
    name: str,
    now: CgroupStats,
    before: CgroupStats | None = None,
    *,
    net_io: tuple[int, int] | None = None,
    total_memory: int | None = None,
) -> dict[str, str]:
    """One `docker stats` row as strings, keyed like `docker stats --format json`.

    `before` is an earlier reading for the CPU %; `net_io` (received, sent) comes from the network side;
    `total_memory` stands in for an unlimited memory limit (default: the host's MemTotal).
    """
    cpu = cpu_percent(before, now)
    used = now.memory_used
    limit = now.memory_limit if now.memory_limit is not None else (total_memory or host_memory())
    mem_usage = NO_VALUE
    mem_perc = NO_VALUE
    if used is not None:
        mem_usage = f"{bytes_size(used)} / {bytes_size(limit) if limit else NO_VALUE}"
        if limit:
            mem_perc = f"{used / limit * 100:.2f}%"
    block = NO_VALUE
    if now.block_read_bytes is not None or now.block_write_bytes is not None:
        block = f"{_io_size(now.block_read_bytes or 0)} / {_io_size(now.block_write_bytes or 0)}"
    return {
        "ID": container_id[:12],
        "Name": name,
        "CPUPerc": NO_VALUE if cpu is None else f"{cpu:.2f}%",
        "MemUsage": mem_usage,
        "MemPerc": mem_perc,
        "NetIO": NO_VALUE if net_io is None else f"{_io_size(net_io[0])} / {_io_size(net_io[1])}",
        "BlockIO": block,
        "PIDs": NO_VALUE if now.pids is None else str(now.pids),
    }


def format_json(row: dict[str, str]) -> str:
    """A row as one JSON line (`docker stats --format json`)."""
    import json

    return json.dumps({k: row[k] for k in _ROW_KEYS}, separators=(",", ":"))


def format_table(rows: list[dict[str, str]]) -> str:
    """Rows as docker stats' aligned table, header first."""
    return table(_HEADERS, [[row[k] for k in _ROW_KEYS] for row in rows])

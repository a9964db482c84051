"""Accounting helpers for `minirun stats`: CPU %, sizes, the docker-stats row, table and JSON line."""

from __future__ import annotations

import json

from minirun.cgroups.stats import CgroupStats, cpu_percent, format_json, format_table, host_memory, stats_row
from minishow import bytes_size, human_size

MiB, GiB = 1 << 20, 1 << 30


def test_cpu_percent_is_of_one_cpu() -> None:
    before = CgroupStats(cpu_ns=1_000_000_000, read_at=100.0)
    assert cpu_percent(before, CgroupStats(cpu_ns=1_500_000_000, read_at=102.0)) == 25.0
    assert cpu_percent(before, CgroupStats(cpu_ns=5_000_000_000, read_at=102.0)) == 200.0  # two CPUs busy
    assert cpu_percent(None, before) is None
    assert cpu_percent(before, CgroupStats(cpu_ns=None, read_at=102.0)) is None
    assert cpu_percent(before, CgroupStats(cpu_ns=2, read_at=100.0)) is None  # no time passed


def test_sizes_like_docker() -> None:
    """docker stats: memory in powers of 1024 (go-units BytesSize), I/O in powers of 1000 with 3 digits."""
    assert [bytes_size(n) for n in (0, 512, 1536, 64 * MiB, int(7.7 * GiB))] == [
        "0B",
        "512B",
        "1.5KiB",
        "64MiB",
        "7.7GiB",
    ]
    assert bytes_size(1.234567 * MiB) == "1.235MiB"
    assert [human_size(n, 3) for n in (0, 999, 1500, 2_000_000, 3_450_000_000)] == [
        "0B",
        "999B",
        "1.5kB",
        "2MB",
        "3.45GB",
    ]


def test_memory_used_subtracts_inactive_file_cache() -> None:
    assert CgroupStats(memory_bytes=10 * MiB, memory_cache_bytes=MiB).memory_used == 9 * MiB
    assert CgroupStats(memory_bytes=MiB, memory_cache_bytes=2 * MiB).memory_used == MiB  # never negative
    assert CgroupStats(memory_bytes=MiB).memory_used == MiB
    assert CgroupStats().memory_used is None


def test_row_with_limits() -> None:
    before = CgroupStats(cpu_ns=0, read_at=10.0)
    now = CgroupStats(
        cpu_ns=500_000_000,
        memory_bytes=17 * MiB,
        memory_cache_bytes=MiB,
        memory_limit=64 * MiB,
        pids=3,
        pids_limit=20,
        block_read_bytes=1500,
        block_write_bytes=0,
        read_at=12.0,
    )
    row = stats_row("0123456789abcdef" * 4, "web", now, before, net_io=(1000, 2_500_000))
    assert row == {
        "ID": "0123456789ab",
        "Name": "web",
        "CPUPerc": "25.00%",
        "MemUsage": "16MiB / 64MiB",
        "MemPerc": "25.00%",
        "NetIO": "1kB / 2.5MB",
        "BlockIO": "1.5kB / 0B",
        "PIDs": "3",
    }


def test_row_of_an_unlimited_container_shows_host_memory() -> None:
    row = stats_row("abc", "x", CgroupStats(memory_bytes=GiB), total_memory=4 * GiB)
    assert row["MemUsage"] == "1GiB / 4GiB" and row["MemPerc"] == "25.00%"
    assert row["CPUPerc"] == "--" and row["NetIO"] == "--" and row["BlockIO"] == "--" and row["PIDs"] == "--"
    assert host_memory() and host_memory() > 0
    default = stats_row("abc", "x", CgroupStats(memory_bytes=GiB))
    assert default["MemUsage"].endswith(bytes_size(host_memory()))


def test_row_without_any_figures() -> None:
    row = stats_row("abc", "x", CgroupStats())
    assert {k: v for k, v in row.items() if k not in ("ID", "Name")} == dict.fromkeys(
        ("CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"), "--"
    )


def test_json_line_has_dockers_keys() -> None:
    row = stats_row("abc", "x", CgroupStats(pids=1, memory_bytes=MiB, memory_limit=2 * MiB))
    line = format_json(row)
    assert "\n" not in line
    assert list(json.loads(line)) == ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"]
    assert json.loads(line)["MemPerc"] == "50.00%"


def test_table_is_aligned_under_dockers_headers() -> None:
    rows = [
        stats_row("a" * 64, "short", CgroupStats(pids=1, memory_bytes=MiB, memory_limit=GiB)),
        stats_row("b" * 64, "a-much-longer-name", CgroupStats(pids=12)),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].startswith("CONTAINER ID   NAME                 CPU %   MEM USAGE / LIMIT")
    assert lines[1].startswith("aaaaaaaaaaaa   short                --      1MiB / 1GiB")
    assert lines[2].startswith("bbbbbbbbbbbb   a-much-longer-name   --      --")
    pids_column = lines[0].index("PIDS")
    assert (lines[1][pids_column:], lines[2][pids_column:]) == ("1", "12")
    assert format_table([]) == "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %   NET I/O   BLOCK I/O   PIDS"


def test_as_dict_for_state_files() -> None:
    assert CgroupStats(pids=2, read_at=1.0).as_dict()["pids"] == 2

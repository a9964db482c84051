"""A detached container decides how big its log grows (the store's disk is the only bound), and `minirun
logs` read the whole file into memory at once, then decoded every entry, on the host and outside the
container's memory limit: a container could make the command of whoever reads its logs exhaust the
host's memory. The log is read a bounded piece at a time, for `--tail N` too.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest
from kits.runkit import (
    MINIRUN,
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers)")]

ENTRIES = 400_000
LIMIT = 400 << 20  # address space for `minirun logs`: an interpreter fits, the log (~140 MiB, decoded ~10x) not


def _fill_log(path: Path) -> None:
    line = json.dumps({"log": "x" * 300 + "\n", "stream": "stdout", "time": "2026-01-01T00:00:00Z"}) + "\n"
    last = json.dumps({"log": "the end\n", "stream": "stdout", "time": "2026-01-01T00:00:01Z"}) + "\n"
    with open(path, "w") as f:
        for _ in range(ENTRIES // 1000):
            f.write(line * 1000)
        f.write(last)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.mark.parametrize("flags", [("--tail", "1"), ()])
def test_logs_of_a_huge_log_stay_in_bounded_memory(store_root: Path, busybox_image: str, flags: tuple) -> None:
    made = minirun(store_root, "create", "--name", "loud", busybox_image, "true")
    assert made.returncode == 0, made.stderr
    try:
        _fill_log(store_root / "containers" / container_ids(store_root)[0] / "log")
        result = subprocess.run(
            [MINIRUN, "--root", str(store_root), "logs", *flags, "loud"],
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            preexec_fn=_limited,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.endswith(b"the end\n")
        assert result.stdout.count(b"\n") == (1 if flags else ENTRIES + 1)
    finally:
        minirun(store_root, "rm", "-f", "loud")

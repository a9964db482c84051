"""Helpers for the lifecycle tests: detached containers through the real CLI, their state, their monitors.

The test process makes itself a child subreaper (`reaper` fixture): monitors outlive the `minirun` that
forked them and would otherwise end as zombies of this machine's PID 1, which never reaps. They are
reaped after each test; a live one fails the test (runkit's no_leaks).
"""

from __future__ import annotations

import ctypes
import json
import time
from pathlib import Path

import pytest

from kits.runkit import container_ids, minirun, reap_exited, wait_until  # noqa: F401 - the lifecycle tests take it from here

PR_SET_CHILD_SUBREAPER = 36


def run_d(store_root: Path, *args: str) -> str:
    """`minirun run -d ARGS...`; the container's full ID."""
    result = minirun(store_root, "run", "-d", *args)
    assert result.returncode == 0, result.stderr
    cid = result.stdout.strip()
    assert len(cid) == 64 and not cid.strip("0123456789abcdef"), result.stdout
    return cid


def inspect(store_root: Path, ref: str) -> dict:
    result = minirun(store_root, "inspect", ref)
    assert result.returncode == 0, result.stderr
    (doc,) = json.loads(result.stdout)
    return doc


def state_file(store_root: Path, cid: str) -> dict:
    return json.loads((store_root / "containers" / cid / "state.json").read_text())


def status(store_root: Path, ref: str) -> str:
    return inspect(store_root, ref)["State"]["Status"]


def log_text(store_root: Path, ref: str, *args: str) -> str:
    result = minirun(store_root, "logs", *args, ref)
    assert result.returncode == 0, result.stderr
    return result.stdout


def alive(pid: int) -> bool:
    """True for a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError):  # ESRCH from read(): it ended after open()
        return False


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def ps_json(store_root: Path, *args: str) -> list[dict]:
    result = minirun(store_root, "ps", "-a", "--no-trunc", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_ps_truthful(store_root: Path) -> list[dict]:
    """Every container `ps -a` lists is running iff its recorded process really runs; returns the rows."""
    rows = ps_json(store_root)
    for row in rows:
        recorded = state_file(store_root, row["ID"])
        running = bool(recorded.get("Pid")) and alive(recorded["Pid"]) and recorded["Status"] in ("running", "paused")
        if running:
            assert row["State"] in ("running", "paused"), (row, recorded)
        else:
            assert row["State"] in ("exited", "created"), (row, recorded)
            if row["State"] == "exited":
                assert row["Status"].startswith("Exited ("), row
    return rows


@pytest.fixture(scope="session")
def _subreaper() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture(autouse=True)
def reaper(_subreaper: None):
    """Reap the monitors (and orphaned containers) adopted by the test process, after each test."""
    yield
    deadline = time.monotonic() + 5
    while reap_exited() and time.monotonic() < deadline:  # live children past the deadline: the leak check reports them
        time.sleep(0.02)


@pytest.fixture
def remove_leftovers(no_leaks, reaper, store_root: Path):  # torn down before no_leaks checks
    """A test that failed half-way leaves containers: force-remove them so the leak check sees the test's own."""
    yield
    if (store_root / "containers").is_dir():
        for cid in container_ids(store_root):
            minirun(store_root, "rm", "-f", cid, timeout=30)

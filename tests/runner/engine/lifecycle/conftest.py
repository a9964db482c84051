"""Lifecycle tests: real detached containers through the `minirun` CLI.

Every test gets the subreaper (`reaper`: the test process adopts and reaps the monitors) and runkit's
leak check (`no_leaks`: no container process, monitor, mount or cgroup of the test outlives it). A test
that fails half-way has its store's containers force-removed first, so one failure does not cascade.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, reaper  # noqa: F401  (fixtures)
from kits.runkit import container_ids, minirun, no_leaks  # noqa: F401  (no_leaks: a fixture)


@pytest.fixture(autouse=True)
def _remove_leftovers(request: pytest.FixtureRequest, no_leaks, reaper, tmp_path: Path):  # noqa: F811
    """After a *failed* test, `rm -f` what its store still holds (a passing test must clean up itself)."""
    yield
    root = tmp_path / "minicontainer-store"
    failed = getattr(request.node, "_lc_failed", False)
    if failed and (root / "containers").is_dir():
        for cid in container_ids(root):
            with contextlib.suppress(Exception):
                minirun(root, "rm", "-f", cid, timeout=30)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item._lc_failed = True
    return report

"""`minirun serve` tests: a real server process per test, real containers, real clients.

Teardown order: the containers are removed and the server is stopped (by PID) before the leak check
(runkit's no_leaks) and the reaper (lifecyclekit) run, which both look for anything of the test left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kits.lifecyclekit import _subreaper, reaper  # noqa: F401  (fixtures)
from kits.runkit import no_leaks  # noqa: F401  (a fixture)
from kits.servekit import Server, remove_all


@pytest.fixture
def server(store_root: Path, busybox_image: str, tmp_path: Path, no_leaks, reaper):  # noqa: F811
    srv = Server(store_root, tmp_path / "api.sock")
    try:
        yield srv
    finally:
        remove_all(store_root)
        srv.stop()

"""What one pytest session shares with every process it starts: its own cgroup parent.

Imported (first) by the root conftest, so the environment variable is set before any test runs: every
container cgroup the tests make, through `minirun`, its runtime or the library, in this process and its
children, goes under `mc-test-<random>` and never under the shared default. Removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

CGROUP_PARENT = os.environ.setdefault("MINICONTAINER_CGROUP_PARENT", f"mc-test-{secrets.token_hex(4)}")


def _tops() -> list[Path]:
    from minirun.cgroups import detect

    host = detect()
    return [Path(p) for p in (*dict.fromkeys(host.v1.values()), *([host.unified] if host.unified else []))]


def session_cgroups() -> list[Path]:
    """Every cgroup directory under the session's parent, in every hierarchy (leak checks read it)."""
    parents = [top / CGROUP_PARENT for top in _tops()]
    return [d for parent in parents if parent.is_dir() for d in parent.iterdir() if d.is_dir()]


def remove_parent() -> None:
    """Remove the (empty) parent directories; a leftover child keeps its parent: that leak was reported."""
    for top in _tops():
        with contextlib.suppress(OSError):
            (top / CGROUP_PARENT).rmdir()

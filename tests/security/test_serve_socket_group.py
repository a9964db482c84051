"""`minirun serve`'s default socket: members of the `minicontainer` group reach it through the run-time root,
which lets them pass (0710) but not list, and nobody else does; everything else below it stays closed."""

from __future__ import annotations

import grp
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits.runkit import MINIRUN

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not (shutil.which("setpriv") and shutil.which("curl")), reason="needs setpriv and curl"),
]
GROUP = "minicontainer"


@pytest.fixture
def group_id() -> Iterator[int]:
    """The `minicontainer` group; made for the test (and removed after) where the host has none."""
    try:
        yield grp.getgrnam(GROUP).gr_gid
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", GROUP], check=True)
    try:
        yield grp.getgrnam(GROUP).gr_gid
    finally:
        subprocess.run(["groupdel", GROUP], check=False)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder other users may enter (pytest's own tmp folders are closed to them)."""
    path = Path(tempfile.mkdtemp(prefix="minicontainer-sock-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ping(sock: Path, *groups: str) -> subprocess.CompletedProcess[str]:
    who = ["--groups", ",".join(groups)] if groups else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", *who, "--",
         "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", str(sock), "http://d/_ping"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_the_group_reaches_the_default_socket_and_nobody_else(group_id: int, open_parent: Path) -> None:
    store, run = open_parent / "store", open_parent / "run"
    base = [MINIRUN, "--root", str(store), "--runroot", str(run)]
    server = subprocess.Popen(
        [*base, "serve"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert "listening" in server.stderr.readline()
        sock = run / "api.sock"
        st = run.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o710, group_id)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660 and sock.stat().st_gid == group_id

        assert _ping(sock, str(group_id)).stdout == "200"
        assert _ping(sock).stdout != "200"  # not in the group: cannot pass through the run-time root
        listing = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--groups", str(group_id), "ls", str(run)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert listing.returncode != 0  # search, not read

        # Any later command opens the store without taking the group's way back, or calling the store loose.
        subprocess.run([*base, "ps"], check=True, capture_output=True)
        assert stat.S_IMODE(run.stat().st_mode) == 0o710
        assert _ping(sock, str(group_id)).stdout == "200"
        for entry in run.iterdir():
            if entry.name != "api.sock":
                assert not stat.S_IMODE(entry.stat().st_mode) & 0o077, entry
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()
    assert os.path.isdir(store)

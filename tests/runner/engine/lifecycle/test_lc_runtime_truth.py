"""The engine drives its containers through the runtime's operations, and the runtime's state is the truth:
`minirun-runtime --root <store>/run/runtime` sees every container `minirun` runs, with the same init, and
nothing of a container is left in the runtime's folder after `rm` (also after a crash)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import alive, inspect, ps_json, run_d, status, wait_until
from kits.runkit import assert_nothing_left, minirun, spawn, wait_for_running

pytestmark = pytest.mark.root

IMAGE = "busybox-test"
RUNTIME = str(Path(sys.executable).with_name("minirun-runtime"))
ENGINE = Path(__file__).resolve().parents[4] / "runner" / "engine"


def runtime_state(store_root: Path, cid: str) -> dict | None:
    """`minirun-runtime state` of the container in the store's runtime root; None if the runtime has none."""
    result = subprocess.run(
        [RUNTIME, "--root", str(store_root / "run" / "runtime"), "state", cid],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        assert "does not exist" in result.stderr, result.stderr
        return None
    return json.loads(result.stdout)


def runtime_folders(store_root: Path) -> list[str]:
    root = store_root / "run" / "runtime"
    return sorted(os.listdir(root)) if root.is_dir() else []


def test_run_d_pause_rm_are_the_runtimes(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--name", "truth", IMAGE, "sleep", "60")
    doc = inspect(store_root, "truth")
    state = runtime_state(store_root, cid)
    assert state is not None and state["status"] == "running"
    assert state["pid"] == doc["State"]["Pid"] > 0
    assert state["bundle"] == str(store_root / "containers" / cid)

    assert minirun(store_root, "pause", "truth").returncode == 0
    assert runtime_state(store_root, cid)["status"] == "paused"
    assert status(store_root, "truth") == "paused"
    assert minirun(store_root, "unpause", "truth").returncode == 0
    assert runtime_state(store_root, cid)["status"] == "running"

    assert minirun(store_root, "rm", "-f", "truth").returncode == 0
    assert runtime_state(store_root, cid) is None
    assert runtime_folders(store_root) == []
    assert_nothing_left(store_root)


def test_a_process_the_runtime_calls_stopped_is_not_running(store_root: Path, busybox_image: str) -> None:
    """The engine's record is only a claim: killed behind its back (through the runtime), the container is
    shown exited, and the exit step deletes it in the runtime."""
    cid = run_d(store_root, "--name", "behind", IMAGE, "sleep", "60")
    pid = inspect(store_root, "behind")["State"]["Pid"]
    result = subprocess.run(
        [RUNTIME, "--root", str(store_root / "run" / "runtime"), "kill", cid, "KILL"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not alive(pid), what="the init's death")
    wait_until(lambda: status(store_root, "behind") == "exited", what="the exit")
    assert inspect(store_root, "behind")["State"]["ExitCode"] == 137
    wait_until(lambda: runtime_folders(store_root) == [], what="the runtime's delete")
    assert minirun(store_root, "rm", "behind").returncode == 0
    assert_nothing_left(store_root)


def test_stop_and_exit_leave_nothing_in_the_runtime(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "stopped", IMAGE, "sleep", "60")
    assert minirun(store_root, "stop", "-t", "0", "stopped").returncode == 0
    assert runtime_folders(store_root) == []
    assert minirun(store_root, "run", "--name", "fg", IMAGE, "true").returncode == 0
    assert runtime_folders(store_root) == []
    assert minirun(store_root, "run", "--rm", IMAGE, "true").returncode == 0
    assert runtime_folders(store_root) == []
    assert minirun(store_root, "rm", "stopped", "fg").returncode == 0
    assert_nothing_left(store_root)


@pytest.mark.parametrize("remove", [("rm", "crashed"), ("container", "prune", "-f")])
def test_cli_killed_mid_run_then_ps_and_rm_clean_the_runtime(
    store_root: Path, busybox_image: str, remove: tuple[str, ...]
) -> None:
    proc = spawn(store_root, "run", "--name", "crashed", IMAGE, "sleep", "60")
    state = wait_for_running(store_root)
    cid = next(n for n in os.listdir(store_root / "containers") if len(n) == 64)
    assert runtime_state(store_root, cid)["pid"] == state["Pid"]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_until(lambda: not alive(state["Pid"]), what="the container to follow its CLI")
    time.sleep(0.05)
    left = runtime_state(store_root, cid)
    assert left is None or left["status"] == "stopped"  # the runtime's truth: nothing runs
    assert [r["State"] for r in ps_json(store_root)] == ["exited"]
    assert minirun(store_root, *remove).returncode == 0  # settles first: the runtime's folder goes too
    assert runtime_folders(store_root) == []
    assert_nothing_left(store_root)


def test_the_engine_has_no_second_path_into_the_kernel() -> None:
    """Only the runtime's operations start and join containers: no engine module imports runtime.launch."""
    for path in sorted(ENGINE.glob("*.py")):
        text = path.read_text()
        for needle in ("runtime.launch", "runtime import start", "exec_in(", "runtime_start"):
            assert needle not in text, f"{path.name} uses {needle}"

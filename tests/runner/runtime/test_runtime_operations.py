"""The runtime's verbs as a library (minirun.runtime.operations), the way the engine calls them in-process.

Each case runs in a fresh interpreter: the runtime forks the container's init and refuses to from a process
that runs threads (pytest's may)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse fixture: nothing may outlive a test
from minirun.engine import spec

pytestmark = pytest.mark.root


def make_bundle(tmp_path: Path, rootfs: Path, command: list[str]) -> Path:
    import shutil

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs").chmod(0o755)
    oci = spec.build({"Env": ["PATH=/bin"]}, spec.RunOptions(command=command), spec.SpecContext(container_id="o" * 64))
    oci["linux"].pop("cgroupsPath", None)
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def in_process(code: str) -> dict:
    """Run `code` (it has `Runtime` and must set `out`) in a fresh interpreter; `out` as JSON."""
    script = "import json, os, signal\nfrom minirun.runtime.operations import Runtime\n"
    script += textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_run_of_an_init_killed_before_start_gives_its_status(tmp_path: Path, busybox_rootfs: Path) -> None:
    """`run` is create + start: an init killed before `start` released it is a process that ended (128+9),
    not a failed start (125) — `minirun run` then says 137 as Docker does for a SIGKILLed PID 1."""
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sleep", "60"])
    root = tmp_path / "state"
    out = in_process(f"""
        runtime = Runtime({str(root)!r})
        proc = runtime.run("killed", {str(bundle)!r}, meanwhile=lambda pid: os.kill(pid, signal.SIGKILL))
        code = proc.wait()
        status = runtime.state("killed")["status"]
        runtime.delete("killed")
        left = sorted(n for n in os.listdir({str(root)!r}) if not n.startswith("."))  # .seccomp: the cache
        out = {{"code": code, "status": status, "left": left}}
    """)
    assert out == {"code": 137, "status": "stopped", "left": []}


def test_run_state_kill_delete_in_process(tmp_path: Path, busybox_rootfs: Path) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sleep", "60"])
    root = tmp_path / "state"
    out = in_process(f"""
        runtime = Runtime({str(root)!r})
        proc = runtime.run("plain", {str(bundle)!r})
        before = runtime.state("plain")
        runtime.kill("plain", "KILL", all=True)
        code = proc.wait()
        after = runtime.status("plain")
        runtime.delete("plain")
        out = {{"pid": proc.pid, "before": before, "code": code, "after": after, "gone": runtime.status("plain"),
               "left": sorted(n for n in os.listdir({str(root)!r}) if not n.startswith("."))}}
    """)
    assert out["before"]["status"] == "running" and out["before"]["pid"] == out["pid"]
    assert (out["code"], out["after"], out["gone"], out["left"]) == (137, "stopped", "stopped", [])
    assert not os.path.exists(f"/proc/{out['pid']}")

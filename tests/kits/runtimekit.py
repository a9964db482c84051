"""`minirun-runtime` driven as engines drive it: a subprocess per verb, busybox bundles of minirun's spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from minirun.engine import spec

RUNTIME = str(Path(sys.executable).with_name("minirun-runtime"))


def runtime(root: Path, *args: str, check: bool = False, **kw) -> subprocess.CompletedProcess[str]:
    """Run a verb; its output goes through files, since a created container keeps the runtime's stdio."""
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        kw.setdefault("stdout", out)
        code = subprocess.run([RUNTIME, "--root", str(root), *args], stderr=err, text=True, timeout=60, **kw).returncode
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, code, out.read(), err.read())
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(name="root")
def state_root(tmp_path: Path) -> Iterator[Path]:
    """`root`: the test's state root; whatever the test left in it (it failed halfway) is deleted by ID."""
    folder = tmp_path / "state"
    yield folder
    if folder.is_dir():
        for entry in folder.iterdir():
            runtime(folder, "delete", "--force", entry.name)


def run_bundle(
    bundle: Path, cid: str, *, root: Path | None = None, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`minirun-runtime run --bundle BUNDLE CID` in the foreground, its state root beside the bundle (or `root`),
    with captured output."""
    state_root = root or bundle.parent / "runtime-state"
    argv = [RUNTIME, "--root", str(state_root), "run", "--bundle", str(bundle), cid]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def make_bundle(tmp_path: Path, rootfs: Path, command: list[str], **options) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs").chmod(0o755)  # a pytest temp dir is 0700; an image's root is not
    oci = spec.build(
        {"Env": ["PATH=/bin"]}, spec.RunOptions(command=command, **options), spec.SpecContext(container_id="c" * 64)
    )
    oci["linux"].pop("cgroupsPath", None)  # the session's cgroup parent, named by the container ID
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def edit(bundle: Path, change) -> None:
    oci = json.loads((bundle / "config.json").read_text())
    change(oci)
    (bundle / "config.json").write_text(json.dumps(oci))


def state(root: Path, cid: str) -> dict:
    return json.loads(runtime(root, "state", cid, check=True).stdout)


def wait_status(root: Path, cid: str, wanted: str) -> dict:
    deadline = time.monotonic() + 10
    while (current := state(root, cid))["status"] != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return current

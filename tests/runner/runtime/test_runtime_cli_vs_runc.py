"""The same bundle driven verb by verb through Debian's runc and through `minirun-runtime`: same answers."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse fixture: nothing may outlive a test
from kits.sessionkit import CGROUP_PARENT
from minirun.engine import spec

pytestmark = [pytest.mark.root, pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")]

RUNTIMES = {"runc": "runc", "minirun": str(Path(sys.executable).with_name("minirun-runtime"))}


class Driver:
    """One runtime with its own state root; every verb's (exit code, stdout)."""

    def __init__(self, name: str, root: Path) -> None:
        self.binary, self.root = RUNTIMES[name], root

    def __call__(self, *args: str) -> tuple[int, str]:
        with tempfile.TemporaryFile("w+") as out:
            code = subprocess.run(
                [self.binary, "--root", str(self.root), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                timeout=60,
            ).returncode
            out.seek(0)
            return code, out.read()

    def state(self, cid: str) -> dict:
        code, out = self("state", cid)
        return json.loads(out) if code == 0 else {}

    def status(self, cid: str, wanted: str) -> str:
        deadline = time.monotonic() + 10
        while (now := self.state(cid).get("status")) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        return str(now)


def bundle_for(tmp_path: Path, rootfs: Path, name: str, cid: str, command: list[str]) -> Path:
    bundle = tmp_path / f"bundle-{name}"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    (bundle / "rootfs").chmod(0o755)
    ctx = spec.SpecContext(container_id=cid, cgroups_path=f"/{CGROUP_PARENT}/{cid}")
    oci = spec.build({"Env": ["PATH=/bin"]}, spec.RunOptions(command=command), ctx)
    (bundle / "config.json").write_text(json.dumps(oci))
    return bundle


def lifecycle(driver: Driver, bundle: Path, cid: str) -> list[object]:
    """Every step's observable result, with what differs by nature (PIDs, times, paths) left out."""
    seen: list[object] = []
    seen.append(driver("create", "--bundle", str(bundle), cid)[0])
    state = driver.state(cid)
    seen += [sorted(state), state["status"], state["pid"] > 0, state["id"] == cid, state["bundle"] == str(bundle)]
    seen.append(driver("start", cid)[0])
    seen.append(driver.status(cid, "running"))
    seen.append(driver("start", cid)[0] != 0)  # a running container does not start again
    seen.append(driver("delete", cid)[0] != 0)  # nor is it deleted without --force
    seen.append(driver("kill", cid, "KILL")[0])
    seen.append(driver.status(cid, "stopped"))
    seen.append(driver.state(cid)["pid"])
    seen.append(driver("kill", cid, "TERM")[0] != 0)  # nothing to signal
    seen.append(driver("delete", cid)[0])
    seen.append(driver("state", cid)[0] != 0)
    seen.append(json.loads(driver("list", "--format", "json")[1] or "null") in (None, []))
    return seen


def test_lifecycle_matches_runc(tmp_path: Path, busybox_rootfs: Path) -> None:
    results = {}
    for name in RUNTIMES:
        cid = f"vs-{name}-{secrets.token_hex(4)}"
        bundle = bundle_for(tmp_path, busybox_rootfs, name, cid, ["sleep", "60"])
        driver = Driver(name, tmp_path / f"root-{name}")
        try:
            results[name] = lifecycle(driver, bundle, cid)
        finally:
            driver("delete", "--force", cid)
    assert results["minirun"] == results["runc"]


@pytest.mark.parametrize("script", ["exit 0", "exit 7", "kill -TERM $$", "exec nosuch"])
def test_run_exit_codes_match_runc(tmp_path: Path, busybox_rootfs: Path, script: str) -> None:
    codes = {}
    for name in RUNTIMES:
        cid = f"vs-{name}-{secrets.token_hex(4)}"
        bundle = bundle_for(tmp_path, busybox_rootfs, name, cid, ["sh", "-c", script])
        driver = Driver(name, tmp_path / f"root-{name}")
        try:
            codes[name] = driver("run", "--bundle", str(bundle), cid)[0]
        finally:
            driver("delete", "--force", cid)
        shutil.rmtree(bundle)
    assert codes["minirun"] == codes["runc"]

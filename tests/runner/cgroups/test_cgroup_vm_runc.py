"""The same bundle's cgroup under our runtime and under Debian's runc, on pure cgroup v2 (the VM lane).

As the differential tests on the host (tests/runner/runtime/test_runc_differential.py) compare what a container
sees, this compares what its limits became: each runtime runs the bundle, whose process prints its own cgroup
files, and the two outputs must be the same. Outside a pure-v2 kernel it skips.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
from kits import cgroupkit
from kits.runkit import (
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
    run_in_runc_and_ours,
    runc_bundle,
)
from minirun import cgroups
from minirun.engine import spec
from minirun.engine.users import User

HOST = cgroups.detect()
ROOT = Path("/sys/fs/cgroup")
MiB = 1 << 20


def _pure_v2() -> bool:
    try:
        return HOST.mode == "v2" and "hugetlb" in (ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False


pytestmark = [
    pytest.mark.root,
    pytest.mark.vm,
    pytest.mark.skipif(
        not _pure_v2(), reason=f"needs pure cgroup v2 (this host: {HOST.mode}); `make test-vm` boots one"
    ),
    pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed"),
]

FILES = [
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "memory.high",
    "cpu.max",
    "cpu.weight",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
]
PRINT = 'for f in "$@"; do printf "%s=" "$f"; tr "\\n" ";" < /sys/fs/cgroup/$f; echo; done'
RESOURCES = {
    "memory": {"limit": 96 * MiB, "swap": 128 * MiB, "reservation": 32 * MiB},
    "cpu": {"shares": 512, "quota": 30000, "period": 100000, "cpus": "1", "mems": "0"},
    "pids": {"limit": 42},
    "blockIO": {
        "weight": 300,
        "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 50}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 8 * MiB}],
}


@pytest.fixture
def parent():
    name = f"mc-vm-runc-{secrets.token_hex(4)}"
    yield name
    cgroupkit.remove_parent(name)


def test_runc_and_we_write_the_same_cgroup_files(tmp_path: Path, busybox_rootfs: Path, parent: str) -> None:
    cid = "vm" + secrets.token_hex(31)
    ctx = spec.SpecContext(
        container_id=cid, user=User(0, 0, (), "/root", "root"), files={}, cgroups_path=f"/{parent}/{cid[:12]}"
    )
    opts = spec.RunOptions(command=["sh", "-c", PRINT, "sh", *FILES], resources=RESOURCES)
    bundle = runc_bundle(tmp_path, busybox_rootfs, spec.build({"Env": ["PATH=/bin"]}, opts, ctx))
    theirs, ours = run_in_runc_and_ours(bundle, cid[:12], timeout=120)
    assert theirs.returncode == ours.returncode == 0, (theirs.stderr, ours.stderr)
    a = dict(line.rstrip(";").split("=", 1) for line in theirs.stdout.splitlines())
    b = dict(line.rstrip(";").split("=", 1) for line in ours.stdout.splitlines())
    print(json.dumps({"runc": a, "minirun": b}, indent=1))
    assert a == b
    assert b["memory.low"] == str(32 * MiB) and b["hugetlb.2MB.max"] == str(8 * MiB)
    assert not (ROOT / parent / cid[:12]).exists()

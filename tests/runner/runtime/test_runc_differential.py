"""The same generated bundle under our runtime and under Debian's runc must look the same from inside."""

from __future__ import annotations

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
from minirun.engine import spec
from minirun.engine.users import User

pytestmark = [pytest.mark.root, pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")]

PROBE = r"""
echo "== hostname"; hostname
echo "== mounts"; while read -r id parent dev root point opts rest; do
  fstype=${rest#*- }; echo "$point ${fstype%% *} ${opts%%,*}"; done < /proc/self/mountinfo | sort
echo "== status"; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo "== user"; id
echo "== dev"; ls /dev | sort | tr '\n' ' '
exit 3
"""


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:]
            out[current] = []
        elif current:
            out[current].append(line)
    return out


@pytest.fixture
def cgroup_parent():
    """A unique cgroup parent for runc (it creates one cgroup per container); removed afterwards."""
    name = f"minitest-{secrets.token_hex(4)}"
    yield name
    cgroupkit.remove_parent(name)


@pytest.mark.parametrize("options", [{}, {"user": "1000", "cap_add": ["NET_ADMIN"]}, {"read_only": True}])
def test_same_bundle_same_view(tmp_path: Path, busybox_rootfs: Path, cgroup_parent: str, options: dict) -> None:
    files = {}
    for name, content in (("hostname", "diffbox\n"), ("hosts", "127.0.0.1 localhost\n"), ("resolv.conf", "")):
        (tmp_path / name).write_text(content)
        files[f"/etc/{name}"] = str(tmp_path / name)
    cid = "d1ff" + secrets.token_hex(30)
    user = User(1000, 1000, (), "/home/user", "user") if options.get("user") else User(0, 0, (), "/root", "root")
    ctx = spec.SpecContext(container_id=cid, user=user, files=files, cgroups_path=f"/{cgroup_parent}/{cid[:12]}")
    opts = spec.RunOptions(command=["sh", "-c", PROBE], **{k: v for k, v in options.items() if k != "user"})
    bundle = runc_bundle(tmp_path, busybox_rootfs, spec.build({"Env": ["PATH=/bin"]}, opts, ctx))
    theirs, ours = run_in_runc_and_ours(bundle, cid[:12])

    assert theirs.returncode == ours.returncode == 3, (theirs.stderr, ours.stderr)
    a, b = sections(theirs.stdout), sections(ours.stdout)
    assert a["hostname"] == b["hostname"] == [cid[:12]]
    assert a["status"] == b["status"]
    assert a["user"] == b["user"]
    assert a["dev"] == b["dev"]

    # Mount points, types and read-only flags agree, except one place where we are stricter than runc 1.1:
    # the tmpfs under the v1 cgroup hierarchies is read-only with us (the hierarchies are read-only in both).
    def normal(lines: list[str]) -> list[str]:
        return [ln.replace("/sys/fs/cgroup tmpfs ro", "/sys/fs/cgroup tmpfs rw") for ln in lines]

    assert normal(a["mounts"]) == normal(b["mounts"])
    assert len(a["mounts"]) > 15

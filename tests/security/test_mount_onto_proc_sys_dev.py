"""A host directory mounted over the container's /proc, /sys or /dev (or inside /proc) would stand in for
the kernel's views: masked paths, the read-only /proc/sys and /proc/self/attr would no longer be the real
ones (the shape of runc's CVE-2019-16884 and CVE-2019-19921). Refused however the destination gets there:
named directly, through `..`, or through a symlink in the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kits.runkit import (
    assert_nothing_left,
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from kits.runtimekit import run_bundle
from kits.storekit import add_rootfs_image
from minicache.store import Store
from minirun.engine import spec

pytestmark = pytest.mark.root


def _run_bundle(tmp_path: Path, oci: dict) -> subprocess.CompletedProcess[str]:
    bundle = tmp_path / "bundle"
    (bundle / "config.json").write_text(json.dumps(oci))
    return run_bundle(bundle, "refusal-test")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "volume"
    src.mkdir()
    (src / "marker").write_text("host\n")
    return src


def _untouched(source: Path) -> None:
    assert os.listdir(source) == ["marker"]


@pytest.mark.parametrize(
    "dest",
    ["/proc", "/sys", "/dev", "/proc/sys", "/proc/self/attr", "/tmp/../proc", "/x/../../dev", "//sys/.", "/proc/"],
)
def test_volume_on_a_kernel_path_is_refused(store_root: Path, busybox_image: str, source: Path, dest: str) -> None:
    result = minirun(store_root, "run", "--rm", "-v", f"{source}:{dest}", busybox_image, "true")
    assert result.returncode == 125, result.stderr
    assert result.stderr.count("\n") == 1 and "invalid volume" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert container_ids(store_root) == []  # refused before anything was created
    _untouched(source)
    assert_nothing_left(store_root)


@pytest.mark.parametrize("dest", ["/proc", "/proc/sys", "/sys"])
def test_tmpfs_over_proc_or_sys_is_refused(store_root: Path, busybox_image: str, dest: str) -> None:
    result = minirun(store_root, "run", "--rm", "--tmpfs", dest, busybox_image, "true")
    assert result.returncode == 125 and result.stderr.count("\n") == 1 and "invalid tmpfs" in result.stderr
    assert container_ids(store_root) == []


def test_allowed_neighbours_still_mount(store_root: Path, busybox_image: str, source: Path) -> None:
    """Binds below /dev and /sys, and onto the files lxcfs emulates in /proc, stay possible (as with runc)."""
    marker = source / "marker"
    result = minirun(
        store_root,
        *("run", "--rm", "-v", f"{source}:/dev/host", "-v", f"{marker}:/proc/uptime:ro"),
        *(busybox_image, "sh", "-c", "cat /dev/host/marker /proc/uptime"),
    )
    assert result.returncode == 0 and result.stdout == "host\nhost\n", result.stderr


@pytest.fixture
def linked_image(store: Store, busybox_rootfs: Path, tmp_path: Path) -> str:
    """An image whose directories are symlinks to /proc, /sys and /dev, absolute and relative."""
    rootfs = tmp_path / "linked-rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "usr/lib").mkdir(parents=True, exist_ok=True)
    (rootfs / "lproc").symlink_to("/proc")
    (rootfs / "lsys").symlink_to("../../../sys")
    (rootfs / "ldev").symlink_to("/usr/lib/../../dev")
    (rootfs / "psys").symlink_to("/proc/sys")
    (rootfs / "chain").symlink_to("lproc")
    add_rootfs_image(store, rootfs, "linked:latest")
    return "linked:latest"


@pytest.mark.parametrize(
    ("dest", "resolved"),
    [
        ("/lproc", "/proc"),
        ("/lsys", "/sys"),
        ("/ldev", "/dev"),
        ("/psys", "/proc/sys"),
        ("/chain/sys/kernel", "/proc/sys/kernel"),
        ("/lproc/made-up", "/proc/made-up"),
    ],
)
@pytest.mark.parametrize("resolver", ["openat2", "safetree"])
def test_volume_through_a_symlink_in_the_image_is_refused(
    store_root: Path, linked_image: str, source: Path, dest: str, resolved: str, resolver: str
) -> None:
    env = {"MINICONTAINER_RESOLVER": resolver}
    result = minirun(store_root, "run", "--rm", "-v", f"{source}:{dest}", linked_image, "true", env=env)
    assert result.returncode == 125, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"refusing to mount on {dest} (it resolves to {resolved} in the image)" in result.stderr
    _untouched(source)
    assert_nothing_left(store_root)


@pytest.mark.parametrize(
    ("dest", "links"),
    [
        ("/lproc", {"lproc": "/proc"}),
        ("/psys/..", {"psys": "/proc/sys"}),  # `..` after the link: the kernel's answer is /proc
        ("/lsys", {"lsys": "/sys"}),
        ("/ldev", {"ldev": "../dev"}),
    ],
)
def test_runtime_refuses_a_bundle_bind_that_resolves_there(
    tmp_path: Path, busybox_rootfs: Path, source: Path, dest: str, links: dict[str, str]
) -> None:
    """The runtime does not trust its caller: a bundle's bind is checked where it resolves."""
    rootfs = tmp_path / "bundle" / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    for name, target in links.items():
        (rootfs / name).symlink_to(target)
    oci = spec.build({"Env": ["PATH=/bin"]}, spec.RunOptions(command=["true"]), spec.SpecContext(container_id="f" * 64))
    oci["mounts"].append({"destination": dest, "type": "bind", "source": str(source), "options": ["rbind"]})
    result = _run_bundle(tmp_path, oci)
    assert result.returncode == 125, result.stdout + result.stderr
    assert "refusing to mount on" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    _untouched(source)

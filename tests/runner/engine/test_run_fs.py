"""The container's filesystem: overlay root, binds, tmpfs, read-only root, users, working directories,
hostile symlinks in the image, the copy fallback, and --rm leaving nothing behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from kits.runkit import (
    assert_nothing_left,
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from kits.storekit import add_rootfs_image
from minicache.store import Store

pytestmark = pytest.mark.root


def test_rm_leaves_no_directory_mount_or_process(store_root: Path, busybox_image: str) -> None:
    result = minirun(
        store_root, "run", "--rm", "--name", "gone", busybox_image, "sh", "-c", "echo x > /file; sleep 0.1"
    )
    assert result.returncode == 0, result.stderr
    assert_nothing_left(store_root)


def test_without_rm_the_record_stays_and_the_rootfs_is_unmounted(store_root: Path, busybox_image: str) -> None:
    result = minirun(store_root, "run", "--name", "kept", busybox_image, "sh", "-c", "echo data > /file; exit 3")
    assert result.returncode == 3
    (cid,) = container_ids(store_root)
    cdir = store_root / "containers" / cid
    record = json.loads((cdir / "container.json").read_text())
    state = json.loads((cdir / "state.json").read_text())
    assert record["Name"] == "kept" and record["Id"] == cid and record["ImageName"] == busybox_image
    assert record["Image"].startswith("sha256:") and record["Config"]["Cmd"][0] == "sh"
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and state["FinishedAt"] and state["StartedAt"]
    assert state["PidStartTime"] is not None
    assert (cdir / "upper/file").read_text() == "data\n"  # the change went to the container's own layer
    spec = json.loads((cdir / "config.json").read_text())
    assert spec["root"]["path"] == "rootfs" and spec["hostname"] == cid[:12]
    assert os.readlink(store_root / "containers/names/kept") == cid
    again = minirun(store_root, "run", "--name", "kept", busybox_image, "true")
    assert again.returncode == 125 and 'the container name "/kept" is already in use' in again.stderr
    assert_nothing_left(store_root, containers=False)


def test_image_layers_are_not_modified(store: Store, store_root: Path, busybox_image: str) -> None:
    record = store.images.resolve(busybox_image)
    layer = Path(store.layers.fs(record.chain_ids[0]))
    before = sorted(os.listdir(layer / "bin"))
    minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", "rm /bin/ls; touch /bin/new")
    assert sorted(os.listdir(layer / "bin")) == before


def test_bind_mounts_and_read_only_binds(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "f").write_text("host data\n")
    script = "cat /ro/f; echo written > /rw/out; touch /ro/g 2>/dev/null && echo ro-writable; echo ok"
    result = minirun(
        store_root, "run", "--rm", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro", busybox_image, "sh", "-c", script
    )
    assert result.stdout == "host data\nok\n", result.stderr
    assert (rw / "out").read_text() == "written\n"
    assert not (ro / "g").exists()
    assert_nothing_left(store_root)


def test_missing_bind_source_is_created_like_docker(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    source = tmp_path / "new/dir"
    assert minirun(store_root, "run", "--rm", "-v", f"{source}:/x", busybox_image, "touch", "/x/y").returncode == 0
    assert (source / "y").exists()


def test_tmpfs_and_read_only_root(store_root: Path, busybox_image: str) -> None:
    script = """
    touch /rootfile 2>/dev/null && echo root-writable
    touch /run/x && echo run-ok
    grep ' /run ' /proc/mounts
    touch /dev/shm/x && echo shm-ok
    """
    result = minirun(
        store_root, "run", "--rm", "--read-only", "--tmpfs", "/run:size=1m,mode=1777", busybox_image, "sh", "-c", script
    )
    assert "root-writable" not in result.stdout
    assert "run-ok" in result.stdout and "shm-ok" in result.stdout
    assert "tmpfs /run tmpfs rw,nosuid,nodev,noexec" in result.stdout and "size=1024k" in result.stdout
    assert_nothing_left(store_root)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("1000", "uid=1000(user) gid=1000(user)"),
        ("user", "uid=1000(user) gid=1000(user)"),
        ("1234:4321", "uid=1234 gid=4321"),
        ("nobody", "uid=65534(nobody) gid=65534(nogroup)"),
    ],
)
def test_user_by_number_and_name(store_root: Path, busybox_image: str, user: str, expected: str) -> None:
    result = minirun(store_root, "run", "--rm", "-u", user, busybox_image, "id")
    assert result.stdout.strip() == expected, result.stderr


def test_user_cannot_write_roots_files(store_root: Path, busybox_image: str) -> None:
    result = minirun(store_root, "run", "--rm", "-u", "1000", busybox_image, "sh", "-c", "touch /etc/x; echo $?")
    assert result.stdout.strip() == "1"


@pytest.fixture
def hostile_image(store: Store, busybox_rootfs: Path, tmp_path: Path) -> tuple[str, Path]:
    """An image whose symlinks point at a host directory (absolute and relative), to lure the runtime out."""
    target = tmp_path / "host-target"
    target.mkdir()
    (target / "secret").write_text("host secret\n")
    rootfs = tmp_path / "hostile-rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "abs").symlink_to(target)  # absolute: resolves to the host only if followed outside
    (rootfs / "rel").symlink_to("../../../../../../../../" + str(target).lstrip("/"))
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    add_rootfs_image(store, rootfs, "hostile:latest")
    return "hostile:latest", target


def test_workdir_cannot_leave_the_root(store_root: Path, hostile_image: tuple[str, Path]) -> None:
    image, target = hostile_image
    for workdir in ("/abs", "/rel", "/../../..", "/rel/../../.."):
        result = minirun(store_root, "run", "--rm", "-w", workdir, image, "sh", "-c", "pwd; ls")
        assert result.returncode == 0, (workdir, result.stderr)
        assert "secret" not in result.stdout, workdir
    assert os.listdir(target) == ["secret"]  # the host directory was not touched (nothing created in it)
    assert_nothing_left(store_root)


def test_bind_destination_symlink_stays_inside(
    store_root: Path, hostile_image: tuple[str, Path], tmp_path: Path
) -> None:
    image, target = hostile_image
    source = tmp_path / "src"
    source.mkdir()
    (source / "marker").write_text("m\n")
    for dest in ("/abs/mnt", "/rel/mnt"):
        result = minirun(store_root, "run", "--rm", "-v", f"{source}:{dest}", image, "cat", f"{dest}/marker")
        assert result.stdout == "m\n", result.stderr
    assert sorted(os.listdir(target)) == ["secret"]  # no mount point was created on the host
    assert_nothing_left(store_root)


def test_copy_fallback_when_overlay_is_unavailable(store_root: Path, busybox_image: str) -> None:
    env = {"MINICONTAINER_STORAGE_DRIVER": "copy"}
    result = minirun(store_root, "run", "--name", "copied", busybox_image, "sh", "-c", "echo hi > /f; cat /f", env=env)
    assert result.stdout == "hi\n", result.stderr
    (cid,) = container_ids(store_root)
    cdir = store_root / "containers" / cid
    assert json.loads((cdir / "container.json").read_text())["Driver"] == "copy"
    assert (cdir / "rootfs/f").read_text() == "hi\n" and (cdir / "rootfs/bin/busybox").is_file()
    assert_nothing_left(store_root, containers=False)
    rm = minirun(store_root, "run", "--rm", busybox_image, "true", env=env)
    assert rm.returncode == 0
    assert container_ids(store_root) == [cid]


def test_parallel_runs_share_the_image(store_root: Path, busybox_image: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[int, str]:
        result = minirun(
            store_root,
            "run",
            "--rm",
            "--name",
            f"par{i}",
            busybox_image,
            "sh",
            "-c",
            f"echo {i} > /mine; sleep 0.2; cat /mine",
        )
        return result.returncode, result.stdout.strip()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert results == [(0, str(i)) for i in range(6)]  # each saw only its own writes
    assert_nothing_left(store_root)


def test_image_config_is_honoured(store: Store, store_root: Path, busybox_rootfs: Path) -> None:
    config = {
        "User": "user",
        "WorkingDir": "/home/user/work",
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo default"],
        "Env": ["PATH=/bin", "GREETING=from-image"],
    }
    add_rootfs_image(store, busybox_rootfs, "configured:1", config)
    result = minirun(store_root, "run", "--rm", "configured:1", 'id -u; pwd; stat -c %u .; echo "$GREETING $HOME"')
    assert result.stdout.split() == ["1000", "/home/user/work", "1000", "from-image", "/home/user"], result.stderr
    assert minirun(store_root, "run", "--rm", "configured:1").stdout == "default\n"
    override = minirun(store_root, "run", "--rm", "-u", "0", "-w", "/", "--entrypoint", "id", "configured:1", "-u")
    assert override.stdout == "0\n"

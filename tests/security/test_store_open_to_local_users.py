"""The store is closed to other local users (the shape of CVE-2021-41091).

Another user (uid 65534, through setpriv) must not read a container's environment from its records, run a
setuid-root binary from a layer or from a container's upper directory or mounted root, or open a device
node an image carried. A store made with the old, open modes is closed the first time it is used, and
`minibuild mount` is read-only, nosuid and nodev. The store lies in a folder every user can traverse, so
that only the store's own modes stand between the user and its contents.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from kits.runkit import (
    MINIBUILD,
    MINIRUN,
    NOBODY,
    mounts_under,
    needs_setpriv,
    processes_mentioning,
    processes_rooted_under,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setpriv, mounts, containers)"),
    needs_setpriv,
]

SECRET = "DB_PASSWORD=hunter2-secret"
HOST_ID = shutil.which("id") or "/usr/bin/id"


def as_nobody(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """`argv` run by uid 65534. Through a shell: setpriv itself still holds root's capabilities when it
    execs, so a path given to it directly is resolved with them (it reaches into 0700 folders)."""
    return subprocess.run(
        [*NOBODY, "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def open_dir():
    """A folder every user may traverse (tmp_path is root's own), removed with what is in it."""
    path = Path(tempfile.mkdtemp(prefix="mc-users-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    deadline = time.monotonic() + 5
    while (processes_rooted_under(path) or processes_mentioning(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    leaks = processes_rooted_under(path), processes_mentioning(path), mounts_under(path)
    for point in reversed(mounts_under(path)):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path, ignore_errors=True)
    assert leaks == ([], [], []), f"left behind: {leaks}"


@pytest.fixture
def store_root(open_dir: Path, busybox_rootfs: Path) -> Path:
    """A store made by the code under test (it makes the root), holding an image with a setuid-root copy of
    the host's `id` (and one at /hostid, plain, for containers to copy) and a character device (1, 3)."""
    from kits.storekit import add_rootfs_image
    from minicache.store import Store

    root = open_dir / "store"
    store = Store(root)
    add_rootfs_image(store, busybox_rootfs, "bb:latest")
    fs = Path(store.layers.fs(store.images.resolve("bb:latest").chain_ids[-1]))
    shutil.copy(HOST_ID, fs / "suid-id")
    os.chown(fs / "suid-id", 0, 0)
    os.chmod(fs / "suid-id", 0o4755)
    shutil.copy(HOST_ID, fs / "hostid")
    os.mknod(fs / "null-dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


def minirun(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(MINIRUN, "--root", str(root), *args)


def store_paths(root: Path) -> list[Path]:
    """Every path minicontainer made in the store, not walking into layer snapshots' or containers' trees."""
    out = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        if (len(rel) == 2 and rel[0] == "layers") or (len(rel) == 2 and rel[0] == "containers" and len(rel[1]) == 64):
            dirnames[:] = [d for d in dirnames if d not in ("fs", "upper", "work", "rootfs")]
        out += [Path(dirpath, n) for n in dirnames + filenames]
    return out


def assert_closed(root: Path) -> None:
    """Root and every folder of the store 0700; container records, state and locks 0600."""
    shared = {"hosts", "hostname", "resolv.conf"}  # bind-mounted into the container, read by its users
    for path in store_paths(root):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or path.parent.name in ("rootfs",):
            continue
        mode = stat.S_IMODE(st.st_mode)
        folder = stat.S_ISDIR(st.st_mode) and path.name not in ("fs", "upper", "rootfs")
        record = path.parent.parent.name == "containers" and path.name not in shared
        if folder or record or path.parent.name == "locks":
            assert mode & 0o077 == 0, f"{path} is {mode:o}"


def test_nobody_reads_no_secret_and_runs_no_setuid_binary(store_root: Path) -> None:
    started = minirun(store_root, "run", "-d", "-e", SECRET, "--name", "db", "bb:latest", "sleep", "60")
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    cdir = store_root / "containers" / cid
    try:
        for name in ("config.json", "container.json"):
            assert SECRET in (cdir / name).read_text()  # the secret is there, for root
            read = as_nobody("cat", str(cdir / name))
            assert read.returncode != 0 and SECRET not in read.stdout, name
        assert "hunter2" not in as_nobody("grep", "-rs", "hunter2", str(store_root)).stdout
        # a setuid-root binary straight out of a layer
        suid = next(store_root.glob("layers/*/fs/suid-id"))
        assert os.stat(suid).st_mode & stat.S_ISUID
        ran = as_nobody(str(suid), "-u")
        assert ran.returncode != 0 and ran.stdout.strip() != "0", ran
        # a device node the image carried
        opened = as_nobody("sh", "-c", f"echo x > {suid.with_name('null-dev')}")
        assert opened.returncode != 0
        assert stat.S_IMODE(os.stat(store_root).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(cdir).st_mode) == 0o700
        for name in ("config.json", "container.json", "state.json"):
            assert stat.S_IMODE(os.stat(cdir / name).st_mode) == 0o600, name
        assert_closed(store_root)
    finally:
        removed = minirun(store_root, "rm", "-f", cid)
        assert removed.returncode == 0, removed.stderr


def test_nobody_runs_no_setuid_binary_root_made_in_a_container(store_root: Path) -> None:
    started = minirun(
        store_root, "run", "-d", "--name", "maker", "bb:latest",
        "sh", "-c", "cp /hostid /made-suid && chmod 4755 /made-suid && touch /ready && exec sleep 60",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    cdir = store_root / "containers" / cid
    try:
        deadline = time.monotonic() + 10
        while not (cdir / "upper" / "ready").exists():
            assert time.monotonic() < deadline, "the container did not make its setuid binary"
            time.sleep(0.05)
        assert os.stat(cdir / "upper" / "made-suid").st_mode & stat.S_ISUID
        for path in (cdir / "upper" / "made-suid", cdir / "rootfs" / "made-suid"):
            ran = as_nobody(str(path), "-u")
            assert ran.returncode != 0 and ran.stdout.strip() != "0", (path, ran)
        listed = as_nobody("ls", str(cdir / "rootfs"))
        assert listed.returncode != 0
    finally:
        removed = minirun(store_root, "rm", "-f", cid)
        assert removed.returncode == 0, removed.stderr


def test_an_open_store_is_closed_when_first_used(store_root: Path) -> None:
    """A store with the modes the old code gave it (0755 folders, 0644 records) is closed by any command."""
    created = minirun(store_root, "run", "-e", SECRET, "bb:latest", "true")
    assert created.returncode == 0, created.stderr
    cid = next(p.name for p in (store_root / "containers").iterdir() if len(p.name) == 64)
    for path in store_paths(store_root):
        if path.is_symlink():
            continue
        if path.is_dir():
            os.chmod(path, 0o755)
        elif path.is_file():
            os.chmod(path, 0o644)
    assert SECRET in as_nobody("cat", str(store_root / "containers" / cid / "config.json")).stdout
    listed = minirun(store_root, "ps", "-a")
    assert listed.returncode == 0, listed.stderr
    assert_closed(store_root)
    assert as_nobody("grep", "-rs", "hunter2", str(store_root)).stdout == ""
    removed = minirun(store_root, "rm", cid)
    assert removed.returncode == 0, removed.stderr


def test_minibuild_mount_is_read_only_nosuid_nodev(store_root: Path) -> None:
    mounted = run(MINIBUILD, "--root", str(store_root), "mount", "bb:latest")
    assert mounted.returncode == 0, mounted.stderr
    point = Path(mounted.stdout.strip())
    try:
        with open("/proc/self/mountinfo") as f:
            options = next(line.split()[5] for line in f if line.split()[4] == str(point)).split(",")
        assert {"ro", "nosuid", "nodev"} <= set(options), options
        with pytest.raises(PermissionError):  # nodev: refused even to root
            open(point / "null-dev", "wb").close()
        ran = as_nobody(str(point / "suid-id"), "-u")
        assert ran.returncode != 0 and ran.stdout.strip() != "0", ran
        assert stat.S_IMODE(os.stat(point.parent).st_mode) == 0o700
    finally:
        unmounted = run(MINIBUILD, "--root", str(store_root), "umount", "bb:latest")
        assert unmounted.returncode == 0, unmounted.stderr

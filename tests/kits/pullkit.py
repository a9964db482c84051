"""Helpers of the registry tests: quick settings, pulls, the CLI, and the test image with whiteouts, an
opaque directory, hardlinks and symlinks (and the checks of its root filesystem, file by file)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from minibuild.progress import Progress
from minibuild.pull import PullResult, pull
from minibuild.registry.settings import RetryPolicy, Settings
from minicache.store import Store

from kits import imagekit, registrykit
from kits.imagekit import Entry

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]
# Quick retries: the tests count attempts, they do not need to wait like a real client would.
FAST = Settings(retry=RetryPolicy(attempts=4, backoff=0.02, max_backoff=0.1), connect_timeout=5, read_timeout=10)


def do_pull(store: Store, name: str, settings: Settings = FAST, **kw) -> PullResult:
    return pull(store, name, settings=settings, progress=Progress(), **kw)


def run_cli(store: Store, *args: str, stdin: bytes | None = None, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        [*MINIBUILD, "--root", store.root, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


# -- the test image: several layers with whiteouts, an opaque directory, hardlinks and symlinks ---------------------
D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def rich_layers() -> list[bytes]:
    busybox = imagekit.BUSYBOX.read_bytes()
    base = imagekit.layer(
        [
            Entry("bin/", D, mode=0o755),
            Entry("bin/busybox", F, busybox, mode=0o755),
            Entry("bin/sh", L, linkname="busybox", mode=0o777),
            Entry("bin/ls", H, linkname="bin/busybox", mode=0o755),
            Entry("etc/", D, mode=0o755),
            Entry("etc/passwd", F, b"root:x:0:0:root:/root:/bin/sh\n"),
            Entry("etc/gone", F, b"deleted above\n"),
            Entry("opt/", D, mode=0o755),
            Entry("opt/old-a", F, b"old a\n"),
            Entry("opt/old-b", F, b"old b\n"),
            Entry("srv/", D, mode=0o750, uid=1000, gid=1000),
            Entry("srv/data", F, b"owned\n", mode=0o600, uid=1000, gid=1000),
        ]
    )
    middle = imagekit.layer(
        [
            Entry("etc/", D, mode=0o755),
            Entry("etc/.wh.gone"),
            Entry("etc/hostname", F, b"registry-test\n", mode=0o640),
            Entry("opt/", D, mode=0o711),
            Entry("opt/.wh..wh..opq"),
            Entry("opt/new", F, b"new\n"),
        ]
    )
    top = imagekit.layer(
        [
            Entry("usr/", D, mode=0o755),
            Entry("usr/bin/", D, mode=0o755),
            Entry("usr/bin/env", L, linkname="/bin/busybox", mode=0o777),
            Entry("etc/", D, mode=0o755),
            Entry("etc/motd", F, b"welcome\n", mode=0o640),
            Entry("etc/motd.link", H, linkname="etc/motd", mode=0o640),
        ]
    )
    return [base, middle, top]


def check_rich_rootfs(root: Path) -> None:
    """The merged view of rich_layers(), file by file."""
    busybox = imagekit.BUSYBOX.read_bytes()
    st = (root / "bin/busybox").lstat()
    assert (
        stat.S_ISREG(st.st_mode)
        and stat.S_IMODE(st.st_mode) == 0o755
        and (root / "bin/busybox").read_bytes() == busybox
    )
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "bin/ls").stat().st_ino == st.st_ino  # a hardlink
    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0:root:/root:/bin/sh\n"
    assert not (root / "etc/gone").exists() and not (root / "etc/.wh.gone").exists()
    assert sorted(os.listdir(root / "opt")) == ["new"]  # opaque: the lower layer's files are hidden
    assert stat.S_IMODE((root / "opt").stat().st_mode) == 0o711
    srv = (root / "srv").lstat()
    assert (srv.st_uid, srv.st_gid, stat.S_IMODE(srv.st_mode)) == (1000, 1000, 0o750)
    data = (root / "srv/data").lstat()
    assert (data.st_uid, data.st_gid, stat.S_IMODE(data.st_mode)) == (1000, 1000, 0o600)
    assert (root / "etc/hostname").read_bytes() == b"registry-test\n"
    assert stat.S_IMODE((root / "etc/hostname").stat().st_mode) == 0o640
    assert (root / "etc/motd.link").stat().st_ino == (root / "etc/motd").stat().st_ino
    assert (root / "etc/motd").read_bytes() == b"welcome\n" and (root / "etc/motd").stat().st_nlink == 2
    assert os.readlink(root / "usr/bin/env") == "/bin/busybox"


def mounted_rootfs(store: Store, image_id: str, where: Path):
    """A context manager: the image's layers through a read-only overlay mount at `where`."""
    import contextlib

    from minicache import overlay

    @contextlib.contextmanager
    def cm():
        record = store.images.get(image_id)
        lowers = [Path(store.layers.fs(c)) for c in reversed(record.chain_ids)]
        where.mkdir(parents=True, exist_ok=True)
        if len(lowers) == 1:
            yield lowers[0]
            return
        overlay.mount(where, lowers)
        try:
            yield where
        finally:
            overlay.unmount(where)

    return cm()


def blob_gets(proxy: registrykit.FaultProxy) -> list[str]:
    """The blob digests the proxy was asked for with GET, in order."""
    return [
        r["path"].split("/blobs/")[1].split("?")[0]
        for r in proxy.log
        if r["method"] == "GET" and "/blobs/" in r["path"]
    ]

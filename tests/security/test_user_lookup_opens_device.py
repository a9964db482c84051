"""The engine looks `--user` up in the container's /etc/passwd and /etc/group on the host, as root, outside
the container's device cgroup. An image (or root in a running container, which has CAP_MKNOD) can make
those files device nodes: opening one runs the driver's open on the host (a watchdog is armed, a tape
rewound, a pty made) with no cgroup in the way. Only a regular file may ever be opened there; the probe
is an inotify IN_OPEN watch, which an O_PATH lookup does not trigger.
"""

from __future__ import annotations

import ctypes
import os
import select
import stat
import struct
import time
from pathlib import Path

import pytest
from kits.runkit import (
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
    wait_for_running,
)
from minicache.errors import InvalidSpec

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, containers)")]

_IN_OPEN = 0x20
_EVENT = struct.Struct("iIII")


class OpenWatch:
    """inotify IN_OPEN on one directory: the names opened in it since the watch began."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert libc.inotify_add_watch(self.fd, os.fsencode(directory), _IN_OPEN) >= 0, os.strerror(ctypes.get_errno())

    def opened(self) -> set[str]:
        names: set[str] = set()
        while select.select([self.fd], [], [], 0.2)[0]:
            data = os.read(self.fd, 65536)
            while data:
                _wd, _mask, _cookie, size = _EVENT.unpack_from(data)
                names.add(data[_EVENT.size : _EVENT.size + size].rstrip(b"\0").decode())
                data = data[_EVENT.size + size :]
        return names

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK])
def test_lookup_in_an_image_never_opens_a_device(tmp_path: Path, kind: int) -> None:
    from minirun.engine import users

    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    for name in ("passwd", "group"):
        os.mknod(etc / name, 0o644 | kind, os.makedev(1, 3) if kind == stat.S_IFCHR else os.makedev(7, 255))
    watch = OpenWatch(etc)
    try:
        assert users.resolve(tmp_path / "rootfs", "0").uid == 0
        with pytest.raises(InvalidSpec, match="no matching entries"):
            users.resolve(tmp_path / "rootfs", "someone")
        assert watch.opened() & {"passwd", "group"} == set()  # the folder itself may be opened to walk it
    finally:
        watch.close()


def test_lookup_still_reads_a_regular_file(tmp_path: Path) -> None:
    from minirun.engine import users

    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nextra:x:77:app\n")
    who = users.resolve(tmp_path / "rootfs", "app")
    assert (who.uid, who.gid, who.additional_gids, who.home) == (1234, 4321, (77,), "/home/app")


def test_exec_user_never_opens_a_device_the_container_made(store_root: Path, busybox_image: str) -> None:
    """Root in the container replaces its /etc/passwd with a device node, then `exec -u` looks a user up."""
    made = minirun(
        store_root,
        "run",
        "-d",
        "--name",
        "devpw",
        busybox_image,
        "sh",
        "-c",
        "rm -f /etc/passwd /etc/group && mknod /etc/passwd c 1 3 && mknod /etc/group c 1 3 && sleep 300",
    )
    assert made.returncode == 0, made.stderr
    try:
        wait_for_running(store_root)
        etc = store_root / "containers" / container_ids(store_root)[0] / "rootfs" / "etc"
        for _ in range(200):
            if os.path.lexists(etc / "group") and stat.S_ISCHR(os.lstat(etc / "group").st_mode):
                break
            time.sleep(0.05)
        watch = OpenWatch(etc)
        try:
            result = minirun(store_root, "exec", "-u", "0", "devpw", "true")
            assert result.returncode == 0, result.stderr
            assert watch.opened() & {"passwd", "group"} == set()
        finally:
            watch.close()
    finally:
        minirun(store_root, "rm", "-f", "devpw")

"""Paths inside a hostile rootfs resolve, and are created, inside it: absolute symlinks, `..` chains, loops,
dangling links, magic links. Both resolvers (openat2 RESOLVE_IN_ROOT and the safetree walk) are held to
the same answers."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from minicache import syscalls as sc
from minicache.inroot import OPENAT2, SAFETREE, Root
from minirun.engine import users

RESOLVERS = [OPENAT2, SAFETREE]


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory outside the root that the image's links aim at."""
    target = tmp_path / "host-target"
    (target / "etc").mkdir(parents=True)
    (target / "etc/passwd").write_text("intruder:x:4242:4242::/:/bin/sh\n")
    (target / "secret").write_text("host secret\n")
    return target


@pytest.fixture
def root(tmp_path: Path, host: Path) -> Path:
    r = tmp_path / "root"
    for d in ("etc", "a/b", "proc", "usr/bin"):
        (r / d).mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "file").write_text("f\n")
    (r / "abs").symlink_to(host)  # absolute, naming the host directory
    (r / "rel").symlink_to("../../../../../../../.." + str(host))  # climbs above the root first
    (r / "etc_link").symlink_to("/etc")
    (r / "a/up").symlink_to("../../../../..")
    (r / "a/rel").symlink_to("b")
    (r / "loop").symlink_to("loop")
    (r / "ping").symlink_to("pong")
    (r / "pong").symlink_to("/ping")
    (r / "dangling").symlink_to(str(host / "made"))  # to a missing path: created inside the root
    (r / "lproc").symlink_to("/usr/../proc")
    return r


def _same(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc_link/passwd", "/etc/passwd"),
        ("/a/up/etc", "/etc"),
        ("../../..", "/"),
        ("/a/rel/../b", "/a/b"),
        ("/a/up/a/up/a", "/a"),
        ("/abs", None),  # the host path taken inside the root: does not exist there
        ("/rel/secret", None),
        ("/lproc", "/proc"),
    ],
)
def test_open_stays_in_the_root(root: Path, host: Path, resolver: str, path: str, expected: str | None) -> None:
    with Root(root, resolver=resolver) as r:
        assert r.resolver == resolver
        if expected is None:
            with pytest.raises(FileNotFoundError):
                r.open(path)
            return
        fd = r.open(path)
        try:
            assert _same(fd, root / expected.lstrip("/")) if expected != "/" else _same(fd, root)
            assert r.where(fd) == expected
        finally:
            os.close(fd)


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("path", ["/loop", "/loop/x", "/ping", "/ping/x"])
def test_symlink_loops_end(root: Path, resolver: str, path: str) -> None:
    with Root(root, resolver=resolver) as r, pytest.raises(OSError) as info:
        r.open(path)
    assert info.value.errno == errno.ELOOP


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_file_in_the_middle(root: Path, resolver: str) -> None:
    with Root(root, resolver=resolver) as r, pytest.raises(NotADirectoryError):
        r.make("/file/x")


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize(
    ("path", "directory", "created"),
    [
        ("/abs/new", True, "host-path/new"),  # through an absolute link: made under the root's copy of its target
        ("/rel/new", False, "host-path/new"),
        ("/a/up/new/deeper", True, "new/deeper"),
        ("/dangling/x", True, "host-path/made/x"),
        ("/missing/../also-missing/x", False, "also-missing/x"),
        ("/etc_link/file", False, "etc/file"),
    ],
)
def test_make_creates_inside_the_root(
    root: Path, host: Path, resolver: str, path: str, directory: bool, created: str
) -> None:
    before = _tree(host)
    created = created.replace("host-path", str(host).lstrip("/"))
    with Root(root, resolver=resolver) as r:
        fd, where = r.make(path, directory=directory)
        try:
            assert where == "/" + created
            assert _same(fd, root / created)
            mode = os.fstat(fd).st_mode
            assert stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
        finally:
            os.close(fd)
        again, _ = r.make(path, directory=directory)  # existing now: found, not made twice
        os.close(again)
    assert _tree(host) == before


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_refused_destination_creates_nothing(root: Path, resolver: str) -> None:
    """`allow` sees the path inside the root before anything is made there."""
    seen: list[str] = []

    def allow(where: str) -> None:
        seen.append(where)
        if where == "/proc" or where.startswith("/proc/"):
            raise PermissionError(where)

    before = _tree(root)
    with Root(root, resolver=resolver) as r:
        with pytest.raises(PermissionError):
            r.make("/lproc/sub/dir", allow=allow)
        with pytest.raises(PermissionError):
            r.make("/a/up/lproc", allow=allow)
    assert _tree(root) == before
    assert seen == ["/proc/sub", "/proc"]


@pytest.mark.root
@pytest.mark.parametrize("resolver", RESOLVERS)
def test_magic_links_are_not_followed(root: Path, host: Path, resolver: str) -> None:
    """With a real procfs inside the root, /proc/self/root and /proc/self/fd/N would jump to the host's
    root or to any descriptor: the kernel refuses them (openat2), or the walk reads them as plain text."""
    fd_out = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    (root / "via_root").symlink_to("/proc/self/root" + str(host))
    (root / "via_fd").symlink_to(f"/proc/self/fd/{fd_out}")
    sc.mount("proc", str(root / "proc"), "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    try:
        with Root(root, resolver=resolver) as r:
            for path in ("/via_root/secret", f"/proc/self/fd/{fd_out}/secret", "/via_fd/secret"):
                with pytest.raises(OSError) as info:
                    os.close(r.open(path))
                assert info.value.errno in (errno.ELOOP, errno.ENOENT, errno.EXDEV), path
    finally:
        sc.umount(str(root / "proc"), sc.MNT_DETACH)
        os.close(fd_out)


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_passwd_is_read_from_the_image_only(
    root: Path, host: Path, resolver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINICONTAINER_RESOLVER", resolver)
    (root / "etc/passwd").unlink()
    (root / "etc/passwd").symlink_to(host / "etc/passwd")  # absolute: the host's file if followed outside
    with pytest.raises(Exception, match="unable to find user intruder"):
        users.resolve(root, "intruder")
    (root / "etc/passwd").unlink()
    os.mkfifo(root / "etc/passwd")  # no writer: a blocking open would hang `run` forever
    assert users.resolve(root, "1000") == users.User(1000, 0, (), "/", None)

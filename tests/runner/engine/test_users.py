"""--user resolution against the image's /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

import pytest
from minicache.errors import InvalidSpec
from minirun.engine.users import User, resolve


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n# comment\n"
        "user:x:1000:1000:User:/home/user:/bin/sh\nsvc:x:999:998::/:/bin/false\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\nuser:x:1000:\nwheel:x:10:user,svc\naudio:x:29:user\nsvcg:x:998:\n")
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, User(0, 0, (), "/root", "root")),
        ("", User(0, 0, (), "/root", "root")),
        ("user", User(1000, 1000, (10, 29), "/home/user", "user")),
        ("1000", User(1000, 1000, (10, 29), "/home/user", "user")),
        ("user:wheel", User(1000, 10, (), "/home/user", "user")),
        ("svc:5", User(999, 5, (), "/", "svc")),
        ("4242", User(4242, 0, (), "/", None)),
        ("4242:4343", User(4242, 4343, (), "/", None)),
    ],
)
def test_resolve(rootfs: Path, spec: str | None, expected: User) -> None:
    assert resolve(rootfs, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nobody", "unable to find user"), ("user:nogroup", "unable to find group"), ("99999999999", "out of range")],
)
def test_resolve_errors(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        resolve(rootfs, spec)


def test_passwd_symlink_cannot_point_at_the_host(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/etc/passwd")  # would be the host's file if followed naively
    (tmp_path / "etc/group").symlink_to("../../../../../etc/group")
    assert resolve(tmp_path, "0") == User(0, 0, (), "/", None)
    with pytest.raises(InvalidSpec):
        resolve(tmp_path, "root")


def test_no_passwd_file(tmp_path: Path) -> None:
    assert resolve(tmp_path, "123:456") == User(123, 456)

"""A compiled seccomp program is only reused from a cache entry this user wrote and no one else could.

`minirun-runtime create` keeps compiled filters under its state root (ROOT/.seccomp), as `minirun` does in
its store. An entry is the section it was compiled from followed by the BPF, so an entry whose prefix
matches would be loaded into the container as its filter: one that another user owns, that others may
write, or that is a symlink (to a file someone else controls) must be compiled over, never used, and a
cache folder that is not private to this user is not used at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from minirun.engine import seccomp_profile
from minirun.runtime import caps, seccomp
from minirun.runtime import state as st

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")]

NOBODY = 65534
ALLOW_ALL = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # `ret SECCOMP_RET_ALLOW`: a filter that filters nothing


def _section() -> dict:
    return seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, list(caps.DOCKER_DEFAULT))


def _planted(cache: Path, section: dict) -> Path:
    """An entry for `section` whose program is ALLOW_ALL: right identity, hostile content."""
    wanted = seccomp.program(section, str(cache))
    entry = cache / f"{seccomp.cache_key(section)}.bpf"
    identity = entry.read_bytes()[: -len(wanted)]
    entry.unlink()
    entry.write_bytes(identity + ALLOW_ALL)
    entry.chmod(0o600)
    return entry


@pytest.mark.parametrize("shape", ["foreign owner", "group writable", "world writable", "symlink"])
def test_an_entry_someone_else_could_write_is_compiled_over(tmp_path: Path, shape: str) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    section = _section()
    wanted = seccomp.program(section)
    entry = _planted(cache, section)
    assert seccomp.program(section, str(cache)) == ALLOW_ALL  # an entry of ours is what is used
    if shape == "foreign owner":
        os.chown(entry, NOBODY, NOBODY)
    elif shape == "group writable":
        entry.chmod(0o620)
    elif shape == "world writable":
        entry.chmod(0o602)
    else:
        elsewhere = tmp_path / "elsewhere.bpf"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
    assert seccomp.program(section, str(cache)) == wanted
    assert not entry.is_symlink() and entry.stat().st_uid == os.geteuid()  # replaced by a compiled entry
    assert seccomp.program(section, str(cache)) == wanted


@pytest.mark.parametrize("shape", ["foreign owner", "open mode", "symlink"])
def test_the_runtime_uses_no_cache_folder_it_does_not_own(tmp_path: Path, shape: str) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    folder = root / st.SECCOMP_CACHE
    if shape == "symlink":
        (tmp_path / "other").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "other")
    else:
        folder.mkdir(mode=0o700)
        if shape == "foreign owner":
            os.chown(folder, NOBODY, NOBODY)
        else:
            folder.chmod(0o777)
    assert st.Store(str(root)).seccomp_cache() is None


def test_the_runtime_cache_folder_is_private(tmp_path: Path) -> None:
    root = tmp_path / "state"
    path = st.Store(str(root)).seccomp_cache()
    assert path == str(root / st.SECCOMP_CACHE)
    assert (os.stat(path).st_mode & 0o777, os.stat(root).st_mode & 0o777) == (0o700, 0o700)
    assert st.Store(str(root)).ids() == []  # not a container

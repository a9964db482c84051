"""`minibuild build` as users call it: the console script, stdin contexts, one-line errors and exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse: nothing may outlive a test
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay")]
MINIBUILD = str(Path(sys.executable).with_name("minibuild"))


def cli(store: Store, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [MINIBUILD, "--root", str(store.root), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )


def test_build_from_stdin_tar_quiet(store: Store, busybox_image: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        recipe = f"FROM {busybox_image}\nCOPY f /f\nRUN echo noisy step output\n".encode()
        for name, data in (("Containerfile", recipe), ("f", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = cli(store, "build", "-q", "-t", "fromstdin:1", "-", stdin=buf.getvalue())
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == store.images.resolve("fromstdin:1").id + "\n"  # -q: the ID and nothing else
    (tmp_path / "Containerfile").write_text(f"FROM {busybox_image}\nRUN echo the reason; exit 3\n")
    failed = cli(store, "build", "-q", str(tmp_path))
    assert failed.returncode == 1 and failed.stdout == b"" and b"the reason" in failed.stderr


def test_errors_are_one_line(store: Store, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text(f"FROM {busybox_image}\nRUN exit 7\n")
    failed = cli(store, "build", str(tmp_path))
    err = failed.stderr.decode()
    assert failed.returncode == 1 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"minibuild: error: {tmp_path}/Containerfile:2: RUN: `/bin/sh -c exit 7`")
    )
    (tmp_path / "Containerfile").write_text("FROM scratch\nBOGUS x\n")
    bad = cli(store, "build", str(tmp_path))
    assert bad.returncode == 1 and b"Containerfile:2: unknown instruction: BOGUS" in bad.stderr
    for args, message in (
        (["--compression", "lz4"], b"unknown compression"),
        (["--network", "bridge"], b"unknown network"),
        (["-t", "Bad Name"], b"error"),
        (["--build-arg", "=x"], b"has no name"),
    ):
        result = cli(store, "build", *args, str(tmp_path))
        assert result.returncode == 1 and message in result.stderr and b"Traceback" not in result.stderr, result.stderr
    missing = cli(store, "build", str(tmp_path / "nope"))
    assert missing.returncode == 1 and b"does not exist" in missing.stderr
    assert store.images.ids() == [store.images.resolve(busybox_image).id]

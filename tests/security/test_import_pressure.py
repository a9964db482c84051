"""`minibuild from-tar` and `pull` under pressure: an archive of many large members (memory stays bounded), a
gzip bomb into a small store (refused before the disk fills; nothing left outside tmp/), Ctrl-C in the middle
of a transfer (exit 130, "interrupted", nothing half-stored), and a user who is not root (one line saying what
is needed, no debris)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import archivekit, imagekit, registrykit
from kits.imagekit import Entry
from minicache import gc
from minicache.store import Store

MINIBUILD = [sys.executable, "-m", "minibuild.cli"]
MB = 1 << 20
# Runs a command and prints its peak resident set size (KiB, from the kernel's accounting of waited-for
# children) on the last line of stderr.
PEAK_RSS = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
)

pytestmark = pytest.mark.root


class _Zeros:
    """A file-like source of `n` zero bytes, so that large members never sit in the test's memory."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def gzip_archive(path: Path, members: list[tuple[str, int]]) -> None:
    """A gzip tar of members made of zeros, compressed as it is written (isal: fast, like a real bomb)."""
    from isal import isal_zlib

    class _Gzip:
        def __init__(self, out) -> None:
            self.out = out
            self.c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)

        def write(self, data: bytes) -> int:
            self.out.write(self.c.compress(data))
            return len(data)

        def close(self) -> None:
            self.out.write(self.c.flush())

    with open(path, "wb") as out:
        gz = _Gzip(out)
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, size in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
                tar.addfile(info, _Zeros(size))
        gz.close()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def outside_tmp(root: Path) -> dict[str, list[str]]:
    """What the store holds outside tmp/ (blobs, layers, image records and references)."""
    store = Store(root)
    return {
        "blobs": sorted(os.listdir(store.blobs_dir)),
        "layers": sorted(os.listdir(store.layers_dir)),
        "images": sorted(n for n in os.listdir(store.images_dir) if n != "refs.json"),
        "refs": sorted(store.images.refs()),
    }


EMPTY = {"blobs": [], "layers": [], "images": [], "refs": []}


# -- memory --------------------------------------------------------------------------------------------------------
def test_an_archive_of_many_large_members_keeps_memory_bounded(store_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    gzip_archive(archive, [(f"blobs/junk/{i:02d}", 16 * MB) for i in range(40)])
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *MINIBUILD, "--root", str(store_root), "from-tar", str(archive)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    *messages, peak_kib = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(messages) == 1 and messages[0].startswith("minibuild: error: "), messages
    assert int(peak_kib) < 200 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB"
    assert outside_tmp(store_root) == EMPTY
    assert os.listdir(store_root / "tmp") == []


# -- a gzip bomb into a small store ---------------------------------------------------------------------------------
@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[Path]:
    """A store on a 64 MiB tmpfs that this test mounts (and unmounts)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint / "store"
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.mark.parametrize("shape", ["docker-save", "oci-blob"])
def test_a_gzip_bomb_into_a_small_store_is_refused(small_store: Path, tmp_path: Path, shape: str) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    name = ("e" * 64 + "/layer.tar") if shape == "docker-save" else "blobs/sha256/" + "e" * 64
    gzip_archive(bomb, [(name, 1 << 30)])
    assert bomb.stat().st_size < 8 * MB  # over a hundred times smaller than what it holds
    result = subprocess.run(
        [*MINIBUILD, "--root", str(small_store), "from-tar", str(bomb)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("minibuild: error: ") and "free" in line
    assert outside_tmp(small_store) == EMPTY
    assert os.listdir(small_store / "tmp") == []


# -- Ctrl-C ----------------------------------------------------------------------------------------------------------
def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
    return info.tobuf(tarfile.USTAR_FORMAT)


def _wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def _ended(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Kills the command if the block leaves it running (a failed test leaves no process behind)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _assert_interrupted(proc: subprocess.Popen, err: bytes) -> None:
    """The Ctrl-C answer: exit status 130 and one line."""
    assert proc.returncode == 130, err
    assert one_line(err.decode()) == "minibuild: interrupted"


@pytest.mark.parametrize(("first", "staging"), [("f" * 64 + "/layer.tar", "blob-"), ("etc/big-file", "layer-")])
def test_ctrl_c_of_from_tar_mid_transfer(store_root: Path, first: str, staging: str) -> None:
    """An archive member (a blob staged in tmp/) or a flat export (a layer unpacked in tmp/), half sent."""
    Store(store_root)
    proc = subprocess.Popen(
        [*MINIBUILD, "--root", str(store_root), "from-tar", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with _ended(proc):
        assert proc.stdin is not None
        proc.stdin.write(_tar_header(first, 256 * MB))
        for _ in range(24):
            proc.stdin.write(os.urandom(MB))
        proc.stdin.flush()
        _wait_for(lambda: any(n.startswith(staging) for n in os.listdir(store_root / "tmp")), "staging", proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # as a Ctrl-C also ends the writer of the pipe, a moment later
        proc.stdin.close()
        assert proc.stderr is not None
        proc.wait(timeout=60)
        err = proc.stderr.read()
    _assert_interrupted(proc, err)
    assert outside_tmp(store_root) == EMPTY
    assert os.listdir(store_root / "tmp") == []  # cleared by the next opening of the store, at the latest


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registrykit.RegistryServer]:
    yield from registrykit.serving_or_skip(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    return registrykit.client_env(tmp_path)


@pytest.mark.registry
def test_ctrl_c_of_pull_mid_transfer(store_root: Path, registry, client_env: dict[str, str]) -> None:
    layers = [imagekit.layer([Entry(f"file{i}", data=os.urandom(400_000))]) for i in range(3)]
    img = imagekit.image(layers)
    registrykit.push_image(registry.url, "test/interrupted", "v1", img)
    slow = [d for d in img.blobs if d != img.config_digest][2]
    store = Store(store_root)
    with registrykit.FaultProxy(registry.endpoint) as proxy:
        proxy.add(registrykit.Rule(registrykit.blob_get(slow), "throttle", times=None, after=20_000))
        proc = subprocess.Popen(
            [*MINIBUILD, "--root", str(store_root), "pull", "-q", f"{proxy.endpoint}/test/interrupted:v1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=client_env,
        )
        with _ended(proc):
            _wait_for(lambda: bool(proxy.requests_for(slow)), "the slow blob's download", proc)
            time.sleep(1)  # some of it has arrived
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    _assert_interrupted(proc, err)
    assert not store.blobs.has(slow)
    assert store.images.ids() == [] and store.images.refs() == {}
    assert gc.check(store) == []
    assert os.listdir(Store(store_root).tmp_dir) == []


# -- not root --------------------------------------------------------------------------------------------------------
NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory uid 65534 can reach (pytest's own are closed to other users); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="minibuild-notroot-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_nobody(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *MINIBUILD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": "/nonexistent", **(env or {})},
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _docker_save(layer: bytes) -> bytes:
    img = imagekit.image([layer], compression="none")

    def build(tar: tarfile.TarFile) -> None:
        archivekit._add(tar, img.config_digest[7:] + ".json", img.config)
        archivekit._add(tar, "a" * 64 + "/layer.tar", layer)
        entry = {"Config": img.config_digest[7:] + ".json", "Layers": ["a" * 64 + "/layer.tar"], "RepoTags": ["x:1"]}
        archivekit._add(tar, "manifest.json", json.dumps([entry]).encode())

    return archivekit._tar(build)


def test_from_tar_and_pull_into_roots_store_as_another_user(shared_dir: Path) -> None:
    root_store = shared_dir / "store"
    root_store.mkdir(mode=0o700)
    Store(root_store)
    archive = shared_dir / "image.tar"
    archive.write_bytes(_docker_save(imagekit.layer([Entry("file", data=b"x")])))
    archive.chmod(0o644)
    before = tree(root_store)
    for args in (["from-tar", str(archive)], ["pull", "127.0.0.1:1/nothing:1"]):
        result = as_nobody("--root", str(root_store), *args, env={"DOCKER_CONFIG": str(shared_dir)})
        assert result.returncode in (1, 125), result.stderr  # a failed image command, or no store to work on
        line = one_line(result.stderr)
        assert line.startswith("minibuild: error: ") and "root" in line, line
    assert tree(root_store) == before


def test_an_archive_needing_root_as_another_user(shared_dir: Path) -> None:
    """In a store of their own, a user who is not root cannot make device nodes: one line, no debris."""
    own = shared_dir / "own"
    own.mkdir()
    os.chown(own, NOBODY, NOBODY)
    device = imagekit.layer(
        [Entry("dev/", tarfile.DIRTYPE, mode=0o755), Entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)]
    )
    archive = shared_dir / "device.tar"
    archive.write_bytes(_docker_save(device))
    archive.chmod(0o644)
    result = as_nobody("--root", str(own / "store"), "from-tar", str(archive))
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert "only root" in line, line
    assert outside_tmp(own / "store") == EMPTY
    assert os.listdir(own / "store" / "tmp") == []


def test_an_unreadable_tarball_as_another_user(shared_dir: Path) -> None:
    own = shared_dir / "own"
    own.mkdir()
    os.chown(own, NOBODY, NOBODY)
    secret = shared_dir / "secret.tar"
    secret.write_bytes(imagekit.layer([Entry("file", data=b"x")]))
    secret.chmod(0o600)
    result = as_nobody("--root", str(own / "store"), "from-tar", str(secret))
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert "Permission denied" in line and str(secret) in line, line

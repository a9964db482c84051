"""Built images checked against the real tools: `podman build` (differential), `podman pull/run/load`, `skopeo`.

Podman gets a throwaway --root and a short --runroot (vfs storage: nothing stays mounted) and the base
image through `minibuild save` + `podman load`, so both builders start from the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import imagekit, registrykit
from kits.buildkit import run_build, write_context
from kits.runkit import no_leaks  # noqa: F401 - autouse: nothing may outlive a test
from minibuild.importer import import_tarball
from minibuild.progress import Progress
from minibuild.pull import pull
from minibuild.push import push
from minibuild.registry.settings import RetryPolicy, Settings
from minibuild.save import save_to_path
from minicache import gc
from minicache.overlay import supported
from minicache.store import Store

pytestmark = [
    pytest.mark.root,
    pytest.mark.registry,
    pytest.mark.skipif(not supported() or os.geteuid() != 0, reason="needs root + overlay"),
    pytest.mark.skipif(not shutil.which("podman") or not shutil.which("skopeo"), reason="needs podman and skopeo"),
]
BASE = "docker.io/library/busybox-test:latest"
FAST = Settings(retry=RetryPolicy(attempts=3, backoff=0.02, max_backoff=0.1), connect_timeout=5, read_timeout=30)
# This machine's hard limits are below podman's default rlimits for containers.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
# What buildah adds to every image it builds and Docker's BuildKit does not: not compared.
BUILDAH_ARTIFACTS = {"etc/hostname", "run"}


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    runroot = tempfile.mkdtemp(prefix="mcb-", dir="/run")  # podman wants a short runroot path
    cmd = [
        "podman", "--root", str(tmp_path / "podman-root"), "--runroot", runroot, "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip
    try:
        yield cmd
    finally:
        subprocess.run([*cmd, "rmi", "-a", "-f"], capture_output=True, check=False)
        shutil.rmtree(tmp_path / "podman-root", ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.fixture
def base(store: Store, busybox_rootfs: Path) -> str:
    """The busybox test image as `docker save`-able bytes: imported from a rootfs tarball (tar-split kept)."""
    import io

    tar = imagekit.tar_of_dir(busybox_rootfs)
    import_tarball(store, io.BytesIO(tar), tag=BASE, changes=['CMD ["/bin/sh"]'])
    return BASE


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[registrykit.RegistryServer]:
    for key in list(os.environ):
        if "proxy" in key.lower():
            monkeypatch.delenv(key)
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config" / "config.json").write_text("{}")  # podman reads it when DOCKER_CONFIG is set
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    (tmp_path / "no-registries.json").write_text("{}")
    monkeypatch.setenv("MINICONTAINER_REGISTRIES_CONF", str(tmp_path / "no-registries.json"))
    with registrykit.RegistryServer(tmp_path / "registry") as server:
        yield server


def sh(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(cmd)}: {result.stderr[-3000:]}"
    return result


def flatten(archive: Path) -> tuple[dict[str, tuple], dict]:
    """The root filesystem (path -> type, mode, owner, content or link target) and config of a docker-archive."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(outer.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        tree: dict[str, tuple] = {}
        for name in manifest["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(name)) as tar:
                for m in tar:
                    path = m.name.rstrip("/").removeprefix("./")
                    base, parent = os.path.basename(path), os.path.dirname(path)
                    if base == ".wh..wh..opq":
                        for k in [k for k in tree if k.startswith(parent + "/")]:
                            del tree[k]
                    elif base.startswith(".wh."):
                        gone = os.path.join(parent, base[4:])
                        for k in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                            del tree[k]
                    elif path:
                        kind = "dir" if m.isdir() else "sym" if m.issym() else "hard" if m.islnk() else m.type
                        data = m.linkname if m.issym() or m.islnk() else None
                        if m.isfile():
                            data = tar.extractfile(m).read()  # type: ignore[union-attr]
                        tree[path] = (kind, m.mode & 0o7777, m.uid, m.gid, data)
    return tree, config


RECIPE = f"""\
FROM {BASE}
ARG VERSION=1.0
ENV APP=/srv/app VERSION=$VERSION
WORKDIR $APP
COPY site/ ./www/
COPY --chmod=0755 --chown=1000:1000 site/index.html /usr/local/bin/tool
RUN mkdir -p /var/data && echo data > /var/data/f && chown 1000:1000 /var/data/f && rm -rf /home/user \\
 && ln -s /srv/app /app && rm /bin/yes && echo "x:x:5:5::/:/bin/sh" >> /etc/passwd
RUN rm -rf /var/log && mkdir -p /var/log && echo fresh > /var/log/new
USER 1000
EXPOSE 8080/tcp 53/udp
LABEL org.example.a=b version=$VERSION
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD ["true"]
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
"""
CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "StopSignal",
    "Healthcheck",
)


def differential(store: Store, podman: list[str], ctx: Path, tmp_path: Path, build_args: dict[str, str]) -> dict:
    """Build `ctx` with podman and with minibuild; assert the same root filesystem and config; return ours."""
    save_to_path(store, [BASE], str(tmp_path / "base.tar"), "docker-archive")
    sh([*podman, "load", "-i", str(tmp_path / "base.tar")])
    arg_flags = [f for k, v in build_args.items() for f in ("--build-arg", f"{k}={v}")]
    sh(
        [
            *podman,
            "build",
            *ULIMITS,
            *arg_flags,
            "--format",
            "docker",
            "--network",
            "none",
            "--pull=never",
            "-t",
            "diff:p",
            str(ctx),
        ]
    )
    sh([*podman, "save", "--format", "docker-archive", "-o", str(tmp_path / "podman.tar"), "diff:p"])
    run_build(store, ctx, tags=["diff:ours"], build_args=build_args)
    save_to_path(store, ["diff:ours"], str(tmp_path / "ours.tar"), "docker-archive")
    theirs, their_config = flatten(tmp_path / "podman.tar")
    ours, our_config = flatten(tmp_path / "ours.tar")
    for path in BUILDAH_ARTIFACTS:
        if path not in ours:
            theirs.pop(path, None)
    assert sorted(set(ours) ^ set(theirs)) == []
    assert {p: (v, theirs[p]) for p, v in ours.items() if theirs[p] != v} == {}
    (their_config["config"].get("Labels") or {}).pop("io.buildah.version", None)
    for field in CONFIG_FIELDS:
        assert our_config["config"].get(field) == (their_config["config"].get(field) or None), field
    return ours


def test_same_rootfs_and_config_as_podman_build(store: Store, base: str, podman: list[str], tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"Containerfile": RECIPE, "site/index.html": "hi\n", "site/sub/deep.txt": "deep\n", "site/skip.log": "x"},
    )
    os.symlink("index.html", ctx / "site/link.html")
    (ctx / ".dockerignore").write_text("site/*.log\n")
    ours = differential(store, podman, ctx, tmp_path, {})
    assert "var/log/new" in ours and "home/user" not in ours and "bin/yes" not in ours


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", ["static-web", "multi-stage", "config-side"])
def test_recipes_same_as_podman_build(name: str, store: Store, base: str, podman: list[str], tmp_path: Path) -> None:
    differential(store, podman, RECIPES / name, tmp_path, {"BASE": base})


def test_pushed_image_runs_in_podman_with_compressed_layers(
    store: Store, base: str, podman: list[str], registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"Containerfile": f'FROM {base}\nCOPY msg /msg\nCMD ["cat", "/msg"]\n', "msg": "pushed\n"}
    )
    zstd_store = Store(tmp_path / "zstd-store")
    import_tarball(zstd_store, io.BytesIO(imagekit.tar_of_dir(busybox_rootfs)), tag=BASE, changes=['CMD ["/bin/sh"]'])
    for compression, where in (("gzip", store), ("zstd", zstd_store)):
        run_build(where, ctx, tags=["pushme:1"], compression=compression)
        dest = f"{registry.endpoint}/test/built-{compression}:1"
        result = push(where, "pushme:1", dest, settings=FAST, compression=compression)
        raw = json.loads(sh(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dest}"]).stdout)
        assert raw["config"]["digest"] == where.images.resolve("pushme:1").id
        assert [layer["mediaType"] for layer in raw["layers"]] == [
            f"application/vnd.oci.image.layer.v1.tar+{compression}"
        ] * 2
        assert (
            json.loads(sh(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"]).stdout)["Digest"]
            == result.digest
        )
        sh([*podman, "pull", "--tls-verify=false", dest])
        run = sh([*podman, "run", "--rm", *ULIMITS, "--network", "none", dest])
        assert run.stdout == "pushed\n"


def test_saved_archives_load_in_podman(store: Store, base: str, podman: list[str], tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"Containerfile": f'FROM {base}\nRUN echo saved > /msg\nCMD ["cat", "/msg"]\n'}
    )
    run_build(store, ctx, tags=["saveme:1"])
    for fmt in ("docker-archive", "oci-archive"):
        path = tmp_path / f"{fmt}.tar"
        save_to_path(store, ["saveme:1"], str(path), fmt)
        loaded = sh([*podman, "load", "-i", str(path)]).stdout
        assert "docker.io/library/saveme:1" in loaded
        run = sh([*podman, "run", "--rm", *ULIMITS, "--network", "none", "docker.io/library/saveme:1"])
        assert run.stdout == "saved\n"
        sh([*podman, "rmi", "-f", "docker.io/library/saveme:1"])


def test_pulled_image_keeps_blobs_and_digest_through_save_and_from_tar(
    store: Store, base: str, registry, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"Containerfile": f"FROM {base}\nRUN echo x > /x\n"})
    run_build(store, ctx, tags=["src:1"])
    first = push(store, "src:1", f"{registry.endpoint}/test/src:1", settings=FAST)
    mine = Store(tmp_path / "mine")
    pulled = pull(mine, f"{registry.endpoint}/test/src:1", settings=FAST, progress=Progress())
    blobs = [layer.digest for layer in mine.images.get(pulled.image_id).layers]
    save_to_path(mine, [f"{registry.endpoint}/test/src:1"], str(tmp_path / "saved.tar"), "docker-archive")
    with open(tmp_path / "saved.tar", "rb") as f:
        import_tarball(mine, f)  # `docker save` of the pulled image, loaded back: uncompressed layers inside
    gc.collect(mine)
    assert all(mine.blobs.has(d) for d in blobs)  # prune kept the pulled, compressed blobs
    again = push(mine, f"{registry.endpoint}/test/src:1", f"{registry.endpoint}/test/copy:1", settings=FAST)
    assert again.digest == pulled.digest == first.digest
    assert again.pushed == [] and len(again.mounted) == 3  # cross-repository mounts, nothing re-uploaded


def test_large_blobs_go_in_chunks_by_default(
    store: Store, base: str, registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minibuild.registry import client

    monkeypatch.setattr(client, "AUTO_CHUNK_ABOVE", 64 << 10)
    monkeypatch.setattr(client, "AUTO_CHUNK_SIZE", 256 << 10)
    ctx = write_context(
        tmp_path / "ctx", {"Containerfile": f"FROM {base}\nCOPY big /big\n", "big": os.urandom(600 << 10)}
    )
    run_build(store, ctx, tags=["big:1"])
    with registrykit.FaultProxy(registry.endpoint) as proxy:
        dest = f"{proxy.endpoint}/test/big:1"
        result = push(store, "big:1", dest, settings=FAST)
        patches = proxy.requests_for("/blobs/uploads/", "PATCH")
    assert len(patches) >= 3 + 4  # the 600 KiB layer in 3 chunks, the ~1 MiB busybox layer in 4 or more
    raw = json.loads(
        sh(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.endpoint}/test/big:1"]).stdout
    )
    assert result.digest and len(raw["layers"]) == 2

"""Test images built by the tests themselves: layer tarballs, configs and manifests from busybox-static."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

from minicache.record import Record

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "ls",
    "cat",
    "echo",
    "true",
    "false",
    "sleep",
    "id",
    "hostname",
    "mount",
    "ps",
    "env",
    "grep",
    "wc",
    "touch",
    "mkdir",
    "rm",
    "stat",
    "readlink",
    "head",
    "nc",
    "wget",
    "ip",
    "ping",
    "kill",
    "test",
    "printf",
    "pwd",
    "uname",
    "chmod",
    "dd",
    "yes",
    "seq",
    "tty",
    "stty",
    "find",
)

MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: static busybox, applet links, /etc/passwd and group, empty /tmp."""
    if not BUSYBOX.exists():
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    for d in ("bin", "etc", "tmp", "root", "home/user", "proc", "sys", "dev", "var/log"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    for applet in APPLETS:
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (dest / "etc/group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    os.chown(dest / "home/user", 1000, 1000) if os.geteuid() == 0 else None
    return dest


def tar_of_dir(root: Path) -> bytes:
    """An uncompressed tar of a directory's contents (names relative, like `docker export`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return buf.getvalue()


class Entry(Record):
    """One tar entry for hand-made (also hostile) layers."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = {}  # copied per Entry
    size: int | None = None  # override the header's size (hostile tests)


def layer(entries: list[Entry]) -> bytes:
    """An uncompressed layer tar made of `entries`, in order, as given (no sanitising)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode = e.mode
            info.linkname = e.linkname
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = dict(e.pax)
            info.size = len(e.data) if e.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            if e.size is not None:  # a header that lies about its size: written by hand, data as given
                info.size = e.size
                tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors) + e.data)
                tar.offset = tar.fileobj.tell()
                continue
            tar.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


class Image(Record):
    """An image as a registry or an archive holds it: blobs by digest plus the manifest bytes."""

    manifest: bytes
    manifest_media_type: str
    config: bytes
    blobs: dict[str, bytes]  # digest -> bytes (config and layers)
    diff_ids: list[str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)


def image(
    layers: list[bytes],
    *,
    compression: str = "gzip",
    oci: bool = False,
    config: dict | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
) -> Image:
    """Build an image from uncompressed layer tars; compression is 'gzip', 'zstd' or 'none'."""
    if compression == "zstd" and not oci:
        raise ValueError("zstd layers exist only in OCI manifests")
    diff_ids = [sha256(tar) for tar in layers]
    cfg = {
        "architecture": architecture,
        "os": os_name,
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "imagekit"} for _ in layers],
    }
    if config:
        cfg["config"].update(config)
    config_bytes = json.dumps(cfg, sort_keys=True).encode()
    blobs = {sha256(config_bytes): config_bytes}
    descriptors = []
    for tar in layers:
        if compression == "gzip":
            blob, media = gz(tar), (MEDIA_OCI_LAYER_GZIP if oci else MEDIA_DOCKER_LAYER_GZIP)
        elif compression == "zstd":
            blob, media = zst(tar), MEDIA_OCI_LAYER_ZSTD
        else:
            blob, media = tar, (MEDIA_OCI_LAYER if oci else "application/vnd.docker.image.rootfs.diff.tar")
        blobs[sha256(blob)] = blob
        descriptors.append({"mediaType": media, "digest": sha256(blob), "size": len(blob)})
    manifest_type = MEDIA_OCI_MANIFEST if oci else MEDIA_DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": MEDIA_OCI_CONFIG if oci else MEDIA_DOCKER_CONFIG,
            "digest": sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": descriptors,
    }
    return Image(json.dumps(manifest, indent=3).encode(), manifest_type, config_bytes, blobs, diff_ids)


def index(images: list[tuple[Image, dict]], *, oci: bool = True) -> tuple[bytes, str]:
    """A manifest list / OCI index over `images`, each with its platform dict; returns (bytes, media type)."""
    media = MEDIA_OCI_INDEX if oci else MEDIA_DOCKER_LIST
    doc = {
        "schemaVersion": 2,
        "mediaType": media,
        "manifests": [
            {
                "mediaType": img.manifest_media_type,
                "digest": img.digest,
                "size": len(img.manifest),
                "platform": platform,
            }
            for img, platform in images
        ],
    }
    return json.dumps(doc).encode(), media


def describe_tree(root: Path, *, exact: bool = False) -> dict[str, tuple]:
    """Everything a root filesystem is made of, by relative path, for comparing two of them.

    Type, mode, owner, mtime (whole seconds; nanoseconds and link counts too with `exact`), file contents,
    symlink targets and device numbers.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            what: object = None
            if stat.S_ISREG(st.st_mode):
                what = (path.read_bytes(), st.st_nlink) if exact else path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            mtime = None if stat.S_ISLNK(st.st_mode) else (st.st_mtime_ns if exact else int(st.st_mtime))
            out[str(path.relative_to(root))] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, what,
            )  # fmt: skip
    return out


# Debian's own binaries, as this (Debian) host has them installed: a shell, coreutils and the libraries they need.
DEBIAN_PACKAGES = (
    "base-files", "libc6", "bash", "coreutils", "libtinfo6", "libacl1", "libattr1", "libselinux1", "libpcre2-8-0",
    "libgmp10", "grep", "sed", "dash",
)  # fmt: skip
_DEBIAN_SKIP = (
    "/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/lintian/",
    "/usr/lib/x86_64-linux-gnu/gconv/",
)  # fmt: skip


def debian_rootfs_tar(packages: tuple[str, ...] = DEBIAN_PACKAGES) -> bytes:
    """A Debian root filesystem as an uncompressed tar, from the files `dpkg -L` lists for `packages` here.

    No Debian image can be downloaded on a machine that reaches only package registries, and debootstrap needs
    a mirror; the host's installed packages are the same Debian binaries (dynamically linked, glibc), which is
    what a Debian image adds to the static busybox one. The merged-/usr links are kept as links.
    """
    import subprocess

    listed = subprocess.run(["dpkg", "-L", *packages], capture_output=True, text=True, check=True).stdout.split()
    names: dict[str, str] = {}  # name in the image -> host path
    for path in listed:
        if not path.startswith("/") or path.startswith(_DEBIAN_SKIP) or path == "/.":
            continue
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if os.path.lexists(real):
            names[real.lstrip("/")] = real
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("bin", "sbin", "lib", "lib64"):
            info = tarfile.TarInfo(top)
            info.type, info.linkname = tarfile.SYMTYPE, f"usr/{top}"
            tar.addfile(info)
        made = {"bin", "sbin", "lib", "lib64", "etc/passwd", "etc/group"}
        for d in ("etc", "tmp", "root", "proc", "sys", "dev", "run", "var", "var/tmp"):
            made.add(d)
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d.endswith("tmp") else 0o755
            tar.addfile(info)
        for name, data in (
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"),
            ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name in sorted(names.keys() - made):
            tar.add(names[name], arcname=name, recursive=False)
    return buf.getvalue()

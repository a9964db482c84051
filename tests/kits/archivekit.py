"""Image archives as `docker save` (legacy and OCI-style) and `skopeo copy oci-archive:` write them."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from kits import imagekit


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    if data is None and link is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def _tar(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def docker_save_legacy(images: list[tuple[imagekit.Image, list[str]]], *, layer_tars: list[list[bytes]]) -> bytes:
    """Docker < 25: `<id>/layer.tar` (uncompressed), `<config-hex>.json`, manifest.json written last.

    A layer shared by two images is stored once; the second image's folder has a symlink to it.
    """

    def build(tar: tarfile.TarFile) -> None:
        entries = []
        seen: dict[str, str] = {}
        for (img, tags), tars in zip(images, layer_tars, strict=True):
            layer_paths = []
            for i, layer in enumerate(tars):
                diff = hashlib.sha256(layer).hexdigest()
                layer_id = hashlib.sha256(f"{img.config_digest}{i}".encode()).hexdigest()
                _add(tar, f"{layer_id}/")
                _add(tar, f"{layer_id}/VERSION", b"1.0")
                _add(tar, f"{layer_id}/json", json.dumps({"id": layer_id}).encode())
                if diff in seen:
                    _add(tar, f"{layer_id}/layer.tar", link=f"../{seen[diff]}/layer.tar")
                else:
                    _add(tar, f"{layer_id}/layer.tar", layer)
                    seen[diff] = layer_id
                layer_paths.append(f"{layer_id}/layer.tar")
            config_name = img.config_digest.split(":")[1] + ".json"
            _add(tar, config_name, img.config)
            entries.append({"Config": config_name, "RepoTags": tags, "Layers": layer_paths})
        _add(tar, "manifest.json", json.dumps(entries).encode())
        repos: dict[str, dict[str, str]] = {}
        for (_img, tags), entry in zip(images, entries, strict=True):
            for t in tags:
                name, _, tag = t.rpartition(":")
                repos.setdefault(name, {})[tag] = entry["Layers"][-1].split("/")[0]
        _add(tar, "repositories", json.dumps(repos).encode())

    return _tar(build)


def _blobs(tar: tarfile.TarFile, blobs: dict[str, bytes], prefix: str = "") -> None:
    _add(tar, f"{prefix}blobs/")
    _add(tar, f"{prefix}blobs/sha256/")
    for digest, data in sorted(blobs.items()):
        _add(tar, f"{prefix}blobs/sha256/{digest.split(':')[1]}", data)


def docker_save_oci(img: imagekit.Image, tags: list[str]) -> bytes:
    """Docker >= 25: an OCI layout plus manifest.json whose paths point into blobs/."""
    manifest = json.loads(img.manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": imagekit.MEDIA_OCI_INDEX,
        "manifests": [
            {
                "mediaType": img.manifest_media_type,
                "digest": img.digest,
                "size": len(img.manifest),
                "annotations": {"io.containerd.image.name": f"docker.io/library/{tags[0]}"} if tags else {},
            }
        ],
    }
    entries = [
        {
            "Config": f"blobs/sha256/{img.config_digest.split(':')[1]}",
            "RepoTags": tags,
            "Layers": [f"blobs/sha256/{d['digest'].split(':')[1]}" for d in manifest["layers"]],
        }
    ]

    def build(tar: tarfile.TarFile) -> None:
        _blobs(tar, {**img.blobs, img.digest: img.manifest})
        _add(tar, "index.json", json.dumps(index).encode())
        _add(tar, "manifest.json", json.dumps(entries).encode())
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "repositories", b"{}")

    return _tar(build)


def oci_layout(
    images: list[tuple[imagekit.Image, dict]], *, ref_name: str | None = None, as_index: bool = False, dot: bool = False
) -> bytes:
    """An OCI image layout archive; `as_index` puts the images behind one nested index (multi-platform);
    `dot` names entries `./...` as `tar -C dir .` does."""
    blobs: dict[str, bytes] = {}
    for img, _ in images:
        blobs.update(img.blobs)
        blobs[img.digest] = img.manifest
    annotations = {"org.opencontainers.image.ref.name": ref_name} if ref_name else {}
    if as_index:
        inner, media = imagekit.index(images)
        blobs[imagekit.sha256(inner)] = inner
        descs = [{"mediaType": media, "digest": imagekit.sha256(inner), "size": len(inner), "annotations": annotations}]
    else:
        descs = [
            {
                "mediaType": img.manifest_media_type,
                "digest": img.digest,
                "size": len(img.manifest),
                "annotations": annotations,
            }
            for img, _ in images
        ]
    index = {"schemaVersion": 2, "mediaType": imagekit.MEDIA_OCI_INDEX, "manifests": descs}
    prefix = "./" if dot else ""

    def build(tar: tarfile.TarFile) -> None:
        if dot:
            _add(tar, "./")
        _add(tar, f"{prefix}oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, f"{prefix}index.json", json.dumps(index).encode())
        _blobs(tar, blobs, prefix)

    return _tar(build)

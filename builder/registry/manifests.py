"""Manifests and indexes: parsed from the bytes a registry sent, checked before anything is fetched.

Docker schema 2 manifests and manifest lists and OCI manifests and indexes are understood; schema 1 and
anything else is refused with a clear error. The bytes are kept: digests are always of those bytes.
"""

from __future__ import annotations

import json

from minibuild import platforms
from minibuild.errors import RegistryError
from minibuild.platforms import Platform
from minibuild.registry import mediatypes as mt
from minicache import digest as digests
from minicache.errors import InvalidDigest, NotFound
from minicache.record import Record

SCHEMA1_HINT = "schema 1 images are deprecated: push the image again with a current docker, podman or minibuild"
MAX_MANIFEST_BYTES = 4 << 20  # what distribution itself accepts
MAX_LAYERS = 125  # Docker's limit: more lower directories than an overlay mount of a container can stack


class Descriptor(Record, frozen=True):
    """A pointer to a blob or manifest: media type, digest, size (and, in an index, a platform)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = {}

    def _key(self) -> tuple[object, ...]:  # annotations do not make two descriptors of one blob differ
        return (self.media_type, self.digest, self.size, self.platform, self.urls)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if type(other) is type(self) else NotImplemented  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def short(self) -> str:
        """The 12 hex digits Docker prints for a layer."""
        return digests.hex_of(self.digest)[:12]

    @classmethod
    def from_json(cls, obj: object, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise RegistryError(f"{where}: a descriptor is not a JSON object")
        media, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
        if not isinstance(media, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"{where}: a descriptor lacks a mediaType or a valid size")
        try:
            digests.validate(digest)  # type: ignore[arg-type]
        except InvalidDigest as e:
            raise RegistryError(f"{where}: {e}") from None
        urls = obj.get("urls") or ()
        annotations = obj.get("annotations") or {}
        return cls(
            media,
            digest,  # type: ignore[arg-type]
            size,
            Platform.from_json(obj.get("platform")),
            tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else (),
            annotations if isinstance(annotations, dict) else {},
        )

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        return out


class Manifest(Record, frozen=True):
    """One image: its config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes
    digest: str


class Index(Record, frozen=True):
    """A manifest list or OCI index: one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes
    digest: str

    def images(self) -> list[Descriptor]:
        """The entries that are runnable images (not attestations or unknown/unknown placeholders)."""
        return [
            d
            for d in self.manifests
            if d.media_type in mt.MANIFESTS
            and d.platform is not None
            and d.platform.os != "unknown"
            and d.annotations.get("vnd.docker.reference.type") != "attestation-manifest"
        ]

    def choose(self, want: Platform, name: str) -> Descriptor:
        """The entry for `want` (best variant first); an error listing what exists when none fits."""
        candidates = [d for d in self.images() if platforms.matches(want, d.platform)]  # type: ignore[arg-type]
        if not candidates:
            available = ", ".join(sorted({str(d.platform) for d in self.images()})) or "none"
            raise NotFound(
                f"{name} has no image for platform {want}; available: {available}",
                hint="choose one with --platform OS/ARCH[/VARIANT]",
            )
        return min(candidates, key=lambda d: platforms.rank(want, d.platform))  # type: ignore[arg-type]


def json_object(raw: bytes, where: str, what: str) -> dict:
    """`raw` as a JSON object; RegistryError naming `what` (e.g. "the image config") otherwise."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
        raise RegistryError(f"{where}: {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: {what} is not a JSON object")
    return doc


def parse(raw: bytes, content_type: str | None, where: str) -> Manifest | Index:
    """Parse a manifest or index; `content_type` is the HTTP header, used when the JSON names no mediaType."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise RegistryError(f"{where}: the manifest is {len(raw)} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
    doc = json_object(raw, where, "the manifest")
    media = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else None
    header = mt.base(content_type)
    if media is None:
        media = header if header in mt.MANIFESTS | mt.INDEXES | mt.SCHEMA1 else None
    schema = doc.get("schemaVersion")
    if media in mt.SCHEMA1 or schema == 1:
        raise RegistryError(f"{where} is a Docker schema 1 manifest, which minibuild does not pull", hint=SCHEMA1_HINT)
    if media is None:  # OCI allows leaving mediaType out: tell by shape
        media = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST if "config" in doc else None
    if schema != 2 or media not in mt.MANIFESTS | mt.INDEXES:
        raise RegistryError(
            f"{where} has an unsupported manifest type {media or header or 'unknown'!r} (schemaVersion {schema!r})",
            hint="minibuild pulls Docker schema 2 and OCI images and indexes",
        )
    digest = digests.of_bytes(raw)
    if media in mt.INDEXES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise RegistryError(f"{where}: the index has no list of manifests")
        return Index(media, tuple(Descriptor.from_json(e, where) for e in entries), raw, digest)
    config = Descriptor.from_json(doc.get("config"), f"{where} (config)")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise RegistryError(f"{where}: the manifest has no list of layers")
    manifest = Manifest(media, config, tuple(Descriptor.from_json(d, f"{where} (layer)") for d in layers), raw, digest)
    check_image(manifest, where)
    return manifest


def check_image(manifest: Manifest, where: str) -> None:
    """Refuse what is not a container image (an artifact, a helm chart) or has layers we cannot unpack."""
    if manifest.config.media_type not in mt.CONFIGS:
        raise RegistryError(
            f"{where} is not a container image: its config has media type {manifest.config.media_type!r}",
            hint="this is an OCI artifact; fetch it with an artifact tool such as oras",
        )
    for layer in manifest.layers:
        if layer.media_type not in mt.LAYERS:
            raise RegistryError(f"{where} has a layer of unsupported media type {layer.media_type!r}")
        if layer.digest == manifest.config.digest:
            raise RegistryError(f"{where} lists its config blob {layer.digest} as a layer")
    if len(manifest.layers) > MAX_LAYERS:
        raise RegistryError(
            f"{where} has {len(manifest.layers)} layers; at most {MAX_LAYERS} are supported, as in Docker",
            hint="squash the image into fewer layers",
        )


def check_config(config: object, manifest: Manifest, where: str) -> list[str]:
    """The config's diff_ids, checked against the manifest's layers (and its run settings, see check_run_config)."""
    diff_ids = config_diff_ids(config, where)
    if len(diff_ids) != len(manifest.layers):
        raise RegistryError(
            f"{where}: the image config lists {len(diff_ids)} layers but the manifest {len(manifest.layers)}"
        )
    return diff_ids


def config_diff_ids(config: object, where: str) -> list[str]:
    """The rootfs.diff_ids of an image config, whose run settings are checked too."""
    if not isinstance(config, dict):
        raise RegistryError(f"{where}: the image config is not a JSON object")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise RegistryError(f"{where}: the image config has no rootfs.diff_ids")
    if len(diff_ids) > MAX_LAYERS:
        raise RegistryError(
            f"{where}: the image has {len(diff_ids)} layers; at most {MAX_LAYERS} are supported, as in Docker",
            hint="squash the image into fewer layers",
        )
    check_run_config(config, where)
    try:
        return [digests.validate(d) for d in diff_ids]
    except InvalidDigest as e:
        raise RegistryError(f"{where}: the image config has a bad diff_id: {e}") from None


_STRING_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_STRINGS = ("User", "WorkingDir", "StopSignal")
_OBJECTS = ("ExposedPorts", "Volumes", "Labels")


def check_run_config(config: dict, where: str) -> None:
    """The settings a container runs with (`config.Env`, `Cmd`, ...) have the types the image spec gives them.

    Refused here, at pull or import, rather than when a container starts: `"Cmd": "sh"` is no list.
    """
    run = config.get("config")
    if run is None:
        return
    if not isinstance(run, dict):
        raise RegistryError(f'{where}: the image config\'s "config" is not a JSON object')
    for key in _STRING_LISTS:
        value = run.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise RegistryError(
                f"{where}: the image config's {key} is {_shape(value)}, not a list of strings",
                hint="rebuild the image with a valid config",
            )
    for key in _STRINGS:
        value = run.get(key)
        if value is not None and not isinstance(value, str):
            raise RegistryError(f"{where}: the image config's {key} is {_shape(value)}, not a string")
    for key in _OBJECTS:
        value = run.get(key)
        if value is not None and not isinstance(value, dict):
            raise RegistryError(f"{where}: the image config's {key} is {_shape(value)}, not a JSON object")


def _shape(value: object) -> str:
    """What a JSON value is, for a message: `a string`, `a number`, `a list holding a number`."""
    if isinstance(value, list):
        odd = next((v for v in value if not isinstance(v, str)), None)
        return "a list" if odd is None and value else f"a list holding {_shape(odd)}" if value else "an empty list"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        dict: "an object",
        type(None): "null",
    }.get(type(value), "something else")


def config_platform(config: object) -> Platform | None:
    return Platform.from_json(config) if isinstance(config, dict) else None

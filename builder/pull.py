"""`minibuild pull`: a reference → verified blobs → layer snapshots → an image record.

The manifest (through an index for the wanted platform), the config and every layer blob are checked
against their digests. Layer blobs download in parallel (bounded), each under a per-blob lock so that two
pulls never fetch the same blob twice; the main thread unpacks each layer as soon as it and the layers
below it are ready, so downloading and unpacking overlap. Blobs already stored are not fetched again, and
layers already unpacked are neither fetched nor unpacked.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

from minibuild import platforms
from minibuild.errors import RegistryError
from minibuild.progress import Progress
from minibuild.registry import manifests
from minibuild.registry.client import RegistryClient
from minibuild.registry.manifests import Descriptor, Index, Manifest
from minibuild.registry.settings import Settings, load
from minicache import digest as digests
from minicache import events, gc, reference
from minicache.errors import DigestMismatch, NotFound
from minicache.images import ImageRecord, LayerRef
from minicache.record import Record, replace
from minicache.store import Store
from minicache.unpack import unpack_layer


class PullResult(Record):
    reference: str  # the full, normalised name that now points at the image
    image_id: str
    digest: str  # what the registry calls the image: the index's digest when there is one
    size: int  # bytes of the image's config and layer blobs
    status: str  # "downloaded" or "up to date"
    platform: str
    fetched: list[str] = []  # blobs this pull downloaded


class _Layer(Record):
    desc: Descriptor
    diff_id: str
    chain_id: str
    parent: str | None


def clients_for(ref: reference.Reference, settings: Settings, *, push: bool = False) -> list[RegistryClient]:
    """Where to ask for `ref`: the docker.io mirrors first (pulls only), then the registry itself."""
    out = []
    if ref.registry == reference.DEFAULT_REGISTRY and not push:
        mirror_settings = replace(settings, retry=replace(settings.retry, attempts=min(2, settings.retry.attempts)))
        for url in settings.mirrors:
            netloc = urlsplit(url).netloc
            out.append(RegistryClient(ref.registry, ref.repository, mirror_settings, endpoint=netloc, base_url=url))
    out.append(RegistryClient(ref.registry, ref.repository, settings, endpoint=ref.endpoint, push=push))
    return out


def _top_manifest(ref: reference.Reference, settings: Settings, progress: Progress):
    """(client, bytes, content type, header digest) of the reference's manifest, trying mirrors first."""
    clients = clients_for(ref, settings)
    for i, client in enumerate(clients):
        try:
            client.ping()
            return (client, *client.get_manifest(ref.digest or ref.tag or reference.DEFAULT_TAG))
        except (RegistryError, NotFound) as e:
            client.close()
            if i == len(clients) - 1:
                raise
            progress.message(f"mirror {client.transport.endpoint} failed ({e}); trying the next source")
    raise AssertionError("unreachable")


def _verified(raw: bytes, expected: str, size: int | None, what: str) -> None:
    got = digests.of_bytes(raw)
    if got != expected:
        raise DigestMismatch(f"{what}: the registry sent content with digest {got}, expected {expected}")
    if size is not None and len(raw) != size:
        raise DigestMismatch(f"{what}: the registry sent {len(raw)} bytes, the index says {size}")


def pull(
    store: Store,
    name: str,
    *,
    platform: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Pull `name` (`busybox`, `host:5000/x:1`, `x@sha256:...`) into `store`."""
    ref = reference.parse(name)
    want = platforms.parse(platform) if platform else platforms.host()
    settings = settings or load()
    progress = progress or Progress()
    if ref.digest and (done := _already_complete(store, f"{ref.name}@{ref.digest}")):
        return PullResult(str(ref), done.id, ref.digest, _size(done), "up to date", str(want))
    with gc.hold(store):
        client, raw, content_type, said = _top_manifest(ref, settings, progress)
        try:
            return _pull(store, ref, want, platform is not None, client, raw, content_type, said, progress)
        finally:
            client.close()
            progress.close()


def _pull(
    store: Store,
    ref: reference.Reference,
    want: platforms.Platform,
    explicit: bool,
    client: RegistryClient,
    raw: bytes,
    content_type: str | None,
    said: str | None,
    progress: Progress,
) -> PullResult:
    top_digest = digests.of_bytes(raw)
    if ref.digest:
        _verified(raw, ref.digest, None, f"manifest {ref.digest} of {ref.familiar}")
    elif said and said.startswith("sha256:") and said != top_digest:
        raise DigestMismatch(f"{ref.familiar}: the registry says the manifest is {said}, its content is {top_digest}")
    parsed = manifests.parse(raw, content_type, ref.familiar)
    index: Index | None = None
    if isinstance(parsed, Index):
        index = parsed
        entry = index.choose(want, ref.familiar)
        child, child_type, _ = client.get_manifest(entry.digest)
        _verified(child, entry.digest, entry.size, f"manifest of {ref.familiar} for {entry.platform}")
        parsed = manifests.parse(child, child_type or entry.media_type, f"{ref.familiar} ({entry.platform})")
        if isinstance(parsed, Index):
            raise RegistryError(f"{ref.familiar}: the index for {entry.platform} points at another index")
    manifest: Manifest = parsed
    progress.message(f"{ref.tag or ref.digest}: Pulling from {ref.repository}")

    config_raw = _config(store, client, manifest, progress)
    config = manifests.json_object(config_raw, ref.familiar, "the image config")
    diff_ids = manifests.check_config(config, manifest, ref.familiar)
    image_platform = manifests.config_platform(config)
    if index is None and explicit and (image_platform is None or not platforms.matches(want, image_platform)):
        raise NotFound(
            f"{ref.familiar} is an image for {image_platform or 'an unknown platform'}, not for {want}",
            hint="pull it without --platform, or choose an image built for that platform",
        )
    chain_ids = digests.chain_ids(diff_ids)
    layers = [
        _Layer(desc, diff_id, chain, chain_ids[i - 1] if i else None)
        for i, (desc, diff_id, chain) in enumerate(zip(manifest.layers, diff_ids, chain_ids, strict=True))
    ]
    fetched = _fetch_and_unpack(store, client, layers, progress)

    store.blobs.put(manifest.raw, manifest.digest)
    if index is not None:
        store.blobs.put(index.raw, index.digest)
    image_id = digests.of_bytes(config_raw)
    extra: dict = {"source": f"pull {client.transport.base}", "platform": str(image_platform or want)}
    if index is not None:
        extra["index"] = index.digest
    record = ImageRecord(
        id=image_id,
        layers=tuple(
            LayerRef(
                diff_id=layer.diff_id,
                chain_id=layer.chain_id,
                digest=layer.desc.digest if store.blobs.has(layer.desc.digest) else None,
                media_type=layer.desc.media_type,
                size=layer.desc.size,
            )
            for layer in layers
        ),
        manifest=manifest.digest,
        manifest_media_type=manifest.media_type,
        created=config.get("created") if isinstance(config.get("created"), str) else None,
        extra=extra,
    )
    names = [f"{ref.name}@{top_digest}"]
    if ref.tag and not ref.digest:
        names.insert(0, str(ref))
    refs = store.images.refs()
    up_to_date = not fetched and all(refs.get(store.images.normalize(n)) == image_id for n in names)
    store.images.put(record, names)
    events.append(store, events.IMAGE, "pull", image_id, {"name": str(ref)})
    return PullResult(
        str(ref), image_id, top_digest, _size(record) + len(config_raw),
        "up to date" if up_to_date else "downloaded", str(image_platform or want), fetched,
    )  # fmt: skip


def _config(store: Store, client: RegistryClient, manifest: Manifest, progress: Progress) -> bytes:
    desc = manifest.config
    if desc.size > manifests.MAX_MANIFEST_BYTES * 2:
        raise RegistryError(
            f"the image config is {desc.size} bytes; refusing more than {manifests.MAX_MANIFEST_BYTES * 2}"
        )
    if not store.blobs.has(desc.digest):
        with store.blobs.writer(desc.digest, desc.size) as writer:
            client.fetch_blob(desc, writer)
    return store.blobs.read(desc.digest)


def _size(record: ImageRecord) -> int:
    return sum(layer.size or 0 for layer in record.layers)


def _already_complete(store: Store, name: str) -> ImageRecord | None:
    """The image `name` points at, if it and all its layers are in the store."""
    image_id = store.images.refs().get(store.images.normalize(name))
    if image_id is None:
        return None
    try:
        record = store.images.get(image_id)
    except NotFound:
        return None
    return record if all(store.layers.has(c) for c in record.chain_ids) else None


# -- downloads and unpacking ------------------------------------------------------------------------------------------
def _fetch_and_unpack(store: Store, client: RegistryClient, layers: list[_Layer], progress: Progress) -> list[str]:
    """Download what is missing (in parallel) and unpack each layer once it and its parents are ready."""
    todo = [layer for layer in layers if not store.layers.has(layer.chain_id)]
    to_fetch: dict[str, Descriptor] = {}
    for layer in layers:
        key = layer.desc.short
        if layer not in todo:
            progress.add(key, layer.desc.size, "Already exists")
            progress.status(key, "Already exists", final=True)
        elif store.blobs.has(layer.desc.digest):
            progress.add(key, layer.desc.size, "Download complete")
        elif layer.desc.digest not in to_fetch:
            to_fetch[layer.desc.digest] = layer.desc
            progress.add(key, layer.desc.size, "Waiting")
    progress.start_total(sum(d.size for d in to_fetch.values()))
    cancelled = threading.Event()
    fetched: list[str] = []

    def download(desc: Descriptor) -> None:
        key = desc.short
        with store.lock(f"blob-{digests.hex_of(desc.digest)}"):  # another pull may be fetching it
            if store.blobs.has(desc.digest):
                progress.status(key, "Download complete")
                return
            progress.status(key, "Downloading")
            with store.blobs.writer(desc.digest, desc.size) as writer:
                client.fetch_blob(desc, writer, lambda n: progress.advance(key, n), cancelled)
            fetched.append(desc.digest)
            progress.status(key, "Download complete")

    pool = ThreadPoolExecutor(max_workers=max(1, client.settings.max_concurrent_downloads), thread_name_prefix="pull")
    futures: dict[str, Future] = {digest: pool.submit(download, desc) for digest, desc in to_fetch.items()}
    try:
        for layer in todo:
            future = futures.get(layer.desc.digest)
            if future is not None:
                _wait_failing_fast(future, futures.values())
            _unpack(store, layer, progress)
        for future in futures.values():  # a blob listed twice, or nothing left to unpack
            future.result()
    except BaseException:
        cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return fetched


def _wait_failing_fast(future: Future, others) -> None:
    """Wait for `future`; raise at once if any other download fails first."""
    pending = {future, *(f for f in others if not f.done())}
    while not future.done():
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            if f.exception() is not None:
                f.result()
    future.result()


def _unpack(store: Store, layer: _Layer, progress: Progress) -> None:
    key = layer.desc.short
    # One process unpacks a layer at a time; the others wait and find it done. (unpack_layer takes
    # the layer's own lock only to commit, so a lock of our own is needed to avoid unpacking it twice.)
    with store.lock(f"unpack-{digests.hex_of(layer.chain_id)}"):
        if not store.layers.has(layer.chain_id):
            progress.status(key, "Extracting")
            with store.blobs.open(layer.desc.digest) as f:
                info = unpack_layer(store, f, parent=layer.parent, expected_diff_id=layer.diff_id)
            if info.chain_id != layer.chain_id:
                raise DigestMismatch(f"layer {key} unpacked as {info.chain_id}, expected {layer.chain_id}")
    progress.status(key, "Pull complete", final=True)

"""One repository on one registry: manifests, verified and resumable blob downloads, uploads.

Every request carries the auth header the registry asked for (see auth.py) and goes through the
transport's retries. Blob bytes stream into a BlobWriter, which hashes and counts them; a connection that
breaks mid-blob is resumed with `Range: bytes=<offset>-`, and a blob whose digest or size is wrong is
discarded with a DigestMismatch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, NoReturn

from minibuild.errors import AuthError, RegistryError
from minibuild.registry import credentials as credstore
from minibuild.registry import mediatypes as mt
from minibuild.registry.auth import Authenticator
from minibuild.registry.manifests import MAX_MANIFEST_BYTES, Descriptor
from minibuild.registry.settings import Settings
from minibuild.registry.transport import Transport
from minicache import digest as digests
from minicache.errors import DigestMismatch, MiniError, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests
    from minicache.blobs import BlobWriter

CHUNK = 1 << 20
LOGIN_HINT = "check the name; if the repository is private, log in with `minibuild login {registry}`"


class Cancelled(MiniError):
    """The operation was stopped because another part of it failed or the user interrupted it."""


class _Interrupted(Exception):
    """A blob's body ended early or the connection broke while reading it."""


AUTO = -1  # upload_blob(chunk_size=AUTO): chunked when the blob is large
AUTO_CHUNK_ABOVE = 64 << 20
AUTO_CHUNK_SIZE = 32 << 20


class RegistryClient:
    """Talks to `registry/repository` (`endpoint` is where HTTP goes: registry-1.docker.io for docker.io)."""

    def __init__(
        self,
        registry: str,
        repository: str,
        settings: Settings,
        *,
        endpoint: str | None = None,
        base_url: str | None = None,
        credentials: credstore.Credentials | None = None,
        push: bool = False,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.settings = settings
        self.transport = Transport(endpoint or registry, settings, base_url=base_url)
        creds_host = endpoint if base_url else registry  # a mirror's credentials are filed under the mirror
        self.auth = Authenticator(
            self.transport,
            creds_host or registry,
            (lambda: credentials) if credentials is not None else (lambda: credstore.lookup(creds_host or registry)),
        )
        self.scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def close(self) -> None:
        self.transport.close()

    # -- requests with auth --------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body=None,
        stream: bool = False,
        scopes: tuple[str, ...] = (),
    ) -> requests.Response:
        """A request with the auth the registry asked for; on a 401, learn and retry (at most twice)."""
        scopes = (self.scope, *scopes)
        for attempt in range(3):
            auth = self.auth.header(scopes)
            response = self.transport.send(method, path, headers={**(headers or {}), **auth}, body=body, stream=stream)
            if response.status_code != 401 or attempt == 2:
                return response
            if not self.auth.learn(response, scopes, auth.get("Authorization")):
                return response
            response.close()
        raise AssertionError("unreachable")

    def fail(self, response: requests.Response, what: str) -> NoReturn:
        """Raise the error that an unexpected answer means."""
        status = response.status_code
        code, message = _registry_error(response)
        response.close()
        detail = f"{code}: {message}" if code and message else (code or message or response.reason or "")
        detail = f" ({detail})" if detail else ""
        if status == 404:
            raise NotFound(f"{what} not found in {self.name}{detail}", hint=LOGIN_HINT.format(registry=self.registry))
        if status == 401:
            if self.auth.credentials:
                raise AuthError(
                    f"{self.registry} refused the stored credentials for {self.name}{detail}",
                    hint=f"log in again with `minibuild login {self.registry}`",
                )
            raise AuthError(
                f"access to {self.name} denied: the repository does not exist or needs credentials{detail}",
                hint=LOGIN_HINT.format(registry=self.registry),
            )
        if status == 403:
            raise AuthError(f"access to {self.name} is forbidden{detail}", hint="ask the registry's owner for access")
        if status == 429:
            raise RegistryError(f"{self.registry} keeps answering 'too many requests' for {what}", hint="try later")
        raise RegistryError(f"{self.registry} answered {status} for {what}{detail}")

    def ping(self) -> None:
        """GET /v2/: learn whether and how the registry wants us to authenticate."""
        response = self.transport.send("GET", "/v2/")
        with response:
            if response.status_code == 401:
                self.auth.learn(response, (self.scope,), None)
            elif response.status_code == 404:
                raise RegistryError(
                    f"{self.transport.endpoint} does not speak the registry API v2 (GET /v2/ answered 404)",
                    hint="check the registry's address",
                )
            elif response.status_code >= 400:
                self.fail(response, "the API version check (/v2/)")

    def login(self) -> None:
        """Check that the registry accepts our credentials (what `docker login` does)."""
        self.ping()
        if self.auth.challenge is None:
            return
        if self.auth.challenge.scheme == "bearer":
            self.auth.token(())
            return
        response = self.request("GET", "/v2/")
        with response:
            if response.status_code == 401:
                raise AuthError(f"{self.registry} refused the credentials", hint="check the user name and password")
            if response.status_code >= 400:
                self.fail(response, "login")

    # -- manifests -----------------------------------------------------------------------------------------------
    def get_manifest(self, reference: str, accept: str = mt.ACCEPT_MANIFESTS) -> tuple[bytes, str | None, str | None]:
        """(bytes, Content-Type, Docker-Content-Digest) of the manifest `reference` (a tag or digest).

        A connection that breaks while the body is read is retried like one that breaks before the answer.
        """
        what = f"manifest {reference}" if reference.startswith("sha256:") else f"manifest for tag {reference!r}"
        attempts = self.settings.retry.attempts
        for attempt in range(1, attempts + 1):
            response = self.request(
                "GET", f"/v2/{self.repository}/manifests/{reference}", headers={"Accept": accept}, stream=True
            )
            if response.status_code != 200:
                self.fail(response, what)
            with response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                    raise RegistryError(
                        f"{what} of {self.name} is {length} bytes; refusing more than {MAX_MANIFEST_BYTES}"
                    )
                try:
                    raw = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
                except _network_errors() as e:
                    if attempt == attempts:
                        raise RegistryError(
                            f"reading the {what} of {self.name} keeps breaking off: {e}",
                            hint="check the network and the registry, then pull again",
                        ) from None
                    self.transport.sleep(self.settings.retry.delay(attempt))
                    continue
                if len(raw) > MAX_MANIFEST_BYTES:
                    raise RegistryError(f"{what} of {self.name} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
                return raw, response.headers.get("Content-Type"), response.headers.get("Docker-Content-Digest")
        raise AssertionError("unreachable")

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest under a tag (or digest); returns its digest, checked against the registry's."""
        response = self.request(
            "PUT",
            f"/v2/{self.repository}/manifests/{reference}",
            headers={"Content-Type": media_type},
            body=raw,
        )
        if response.status_code not in (200, 201, 202):
            self.fail(response, f"upload of manifest {reference!r}")
        with response:
            digest = digests.of_bytes(raw)
            said = response.headers.get("Docker-Content-Digest")
            if said and said != digest:
                raise DigestMismatch(f"{self.registry} stored manifest {reference!r} as {said}, expected {digest}")
            return digest

    # -- blobs: download -----------------------------------------------------------------------------------------
    def fetch_blob(
        self,
        desc: Descriptor,
        writer: BlobWriter,
        on_bytes: Callable[[int], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> str:
        """Stream blob `desc` into `writer` and commit it; resumes with Range when the connection breaks."""
        network_errors = _network_errors()
        path = f"/v2/{self.repository}/blobs/{desc.digest}"
        failures = 0
        while True:
            offset = writer.offset
            before = offset
            if offset >= desc.size:  # everything arrived; only the end of the last answer was lost
                return writer.commit(f"blob {desc.digest}")
            try:
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled("download cancelled")
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                response = self.request("GET", path, headers=headers, stream=True)
                with response:
                    skip = self._check_blob_response(response, desc, offset)
                    stream = response.raw.stream(CHUNK, decode_content=False)
                    while True:
                        try:
                            chunk = next(stream)
                        except StopIteration:
                            break
                        except network_errors as e:
                            raise _Interrupted(str(e)) from e
                        if cancelled is not None and cancelled.is_set():
                            raise Cancelled("download cancelled")
                        if skip:
                            drop = min(skip, len(chunk))
                            chunk, skip = chunk[drop:], skip - drop
                            if not chunk:
                                continue
                        writer.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                if writer.offset < desc.size:
                    raise _Interrupted(f"the connection closed after {writer.offset} of {desc.size} bytes")
                return writer.commit(f"blob {desc.digest}")
            except _Interrupted as e:
                failures = 1 if writer.offset > before else failures + 1  # progress resets the count
                if failures >= self.settings.retry.attempts:
                    raise RegistryError(
                        f"download of blob {desc.digest} from {self.registry} keeps breaking off: {e}",
                        hint="check the network, then pull again: what was downloaded completely is kept",
                    ) from None
                self.transport.sleep(self.settings.retry.delay(failures))

    def _check_blob_response(self, response: requests.Response, desc: Descriptor, offset: int) -> int:
        """How many leading bytes of the body to skip (a server that ignored our Range sends them again)."""
        status = response.status_code
        if status == 206 and offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise RegistryError(f"{self.registry} answered Range bytes={offset}- with {content_range!r}")
            return 0
        if status == 200:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) != desc.size:
                raise DigestMismatch(
                    f"blob {desc.digest} is {length} bytes on the registry, the manifest says {desc.size}"
                )
            return offset
        self.fail(response, f"blob {desc.digest}")

    # -- blobs: upload -------------------------------------------------------------------------------------------
    def blob_exists(self, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        with response:
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            self.fail(response, f"blob {digest}")

    def mount_blob(self, digest: str, source_repository: str) -> str | None:
        """Ask the registry to link `digest` from another repository; None if done, else an upload URL."""
        response = self.request(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/?mount={digest}&from={source_repository}",
            scopes=(f"repository:{source_repository}:pull",),
        )
        with response:
            if response.status_code == 201:
                return None
            if response.status_code == 202:
                return self._location(response)
            self.fail(response, f"mount of blob {digest} from {source_repository}")

    def start_upload(self) -> str:
        response = self.request("POST", f"/v2/{self.repository}/blobs/uploads/")
        with response:
            if response.status_code != 202:
                self.fail(response, "start of a blob upload")
            advertised = response.headers.get("OCI-Chunk-Min-Length", "")
            if advertised.isdigit():
                self.chunk_min_length = int(advertised)
            return self._location(response)

    chunk_min_length: int | None = None  # what the registry said its PATCH chunks must at least hold

    def _location(self, response: requests.Response) -> str:
        from urllib.parse import urljoin

        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.registry} started an upload without a Location")
        return urljoin(self.transport.base + "/", location)

    def upload_blob(
        self,
        digest: str,
        size: int,
        opener: Callable[[], IO[bytes]],
        *,
        location: str | None = None,
        chunk_size: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob: monolithic (one PUT) or, with `chunk_size`, in PATCHes followed by a PUT.

        `chunk_size=AUTO` chunks blobs above AUTO_CHUNK_ABOVE bytes, in chunks of AUTO_CHUNK_SIZE or the
        minimum the registry advertises (`OCI-Chunk-Min-Length`), whichever is larger; smaller ones go whole.
        """
        location = location or self.start_upload()
        if chunk_size == AUTO:
            chunk_size = None
            if size > AUTO_CHUNK_ABOVE:
                chunk_size = max(AUTO_CHUNK_SIZE, self.chunk_min_length or 0)
        headers = {"Content-Type": "application/octet-stream"}
        if chunk_size:
            sent = 0
            with opener() as f:
                while sent < size:
                    data = f.read(min(chunk_size, size - sent))
                    if not data:
                        raise RegistryError(f"blob {digest} in the store is shorter than {size} bytes")
                    end = sent + len(data) - 1
                    response = self.request(
                        "PATCH",
                        location,
                        headers={**headers, "Content-Range": f"{sent}-{end}", "Content-Length": str(len(data))},
                        body=data,
                    )
                    if response.status_code != 202:
                        self.fail(response, f"upload of blob {digest} (bytes {sent}-{end})")
                    with response:
                        location = self._location(response)
                    sent += len(data)
                    if on_bytes is not None:
                        on_bytes(len(data))
            body: object = b""
        else:

            def body() -> IO[bytes]:
                return _Counting(opener(), size, on_bytes)

            headers["Content-Length"] = str(size)
        sep = "&" if "?" in location else "?"
        response = self.request("PUT", f"{location}{sep}digest={digest}", headers=headers, body=body)
        if response.status_code not in (201, 204):
            self.fail(response, f"upload of blob {digest}")
        with response:
            said = response.headers.get("Docker-Content-Digest")
            if said and said != digest:
                raise DigestMismatch(f"{self.registry} stored blob {digest} as {said}")


def _network_errors() -> tuple[type[BaseException], ...]:
    """What reading a response body raises when the connection breaks or times out."""
    import requests
    import urllib3

    return (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError)


class _Counting:
    """A file whose reads report their sizes (upload progress)."""

    def __init__(self, f: IO[bytes], size: int, on_bytes: Callable[[int], None] | None) -> None:
        self.f = f
        self.size = size
        self.on_bytes = on_bytes

    def __len__(self) -> int:  # requests sets Content-Length from it
        return self.size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        return data

    def close(self) -> None:
        self.f.close()


def _registry_error(response: requests.Response) -> tuple[str | None, str | None]:
    """The first (code, message) of a registry's JSON error body, if it has one."""
    try:
        if len(response.content) > 64 << 10:
            return None, None
        doc = response.json()
        first = doc["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, None
    except Exception:  # a broken body of an error answer must not hide the status
        return None, None

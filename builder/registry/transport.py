"""HTTP to one registry endpoint, through requests (imported here only, when a pull or push starts).

- HTTPS by default. A loopback or insecure registry is tried over HTTPS (unverified if insecure) first and
  falls back to plain HTTP if it does not speak TLS, as Docker does.
- Proxies come from the environment (HTTPS_PROXY, NO_PROXY, ...), except for loopback registries, which are
  never proxied.
- Connection errors, timeouts, 5xx and 429 are retried with exponential backoff; a 429's or 503's
  Retry-After is honoured. A registry that never answers ends in a RegistryError naming the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from minibuild.errors import RegistryError
from minibuild.registry.settings import Settings, host_of, is_loopback

if TYPE_CHECKING:
    import requests

Body = bytes | Callable[[], IO[bytes]] | None
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TIMEOUT_HINT = "check the registry's address and the network, or allow more time with --timeout SECONDS"
_NO_PROXY = {"http": None, "https": None, "all": None}
_schemes: dict[str, str] = {}  # endpoint -> the base URL that worked, for the life of the process


class Transport:
    """Requests to one registry endpoint (`host[:port]`), or to a mirror given by its URL."""

    def __init__(self, endpoint: str, settings: Settings, *, base_url: str | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.insecure = settings.is_insecure(endpoint)
        self._base = base_url.rstrip("/") if base_url else _schemes.get(endpoint)
        if self._base is None and not self.insecure:
            self._base = f"https://{endpoint}"
        self._session: requests.Session | None = None
        self.sleep = time.sleep  # tests may replace it to observe waits

    # -- the session --------------------------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            size = max(self.settings.max_concurrent_downloads, self.settings.max_concurrent_uploads) + 2
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = "minibuild/0.1 (+minicontainer)"
            session.headers["Accept-Encoding"] = "identity"  # blobs are verified byte for byte: no transcoding
            if self.insecure:
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """The absolute URL of `path` (a registry path such as /v2/...); absolute URLs pass through."""
        if path.startswith(("http://", "https://")):
            return path
        if self._base is None:
            self._probe()
        return f"{self._base}{path}"

    @property
    def base(self) -> str:
        if self._base is None:
            self._probe()
        return self._base  # type: ignore[return-value]

    def _probe(self) -> None:
        """Choose HTTPS or HTTP for a loopback/insecure registry: HTTPS if it completes a TLS handshake."""
        if is_loopback(host_of(self.endpoint)):
            tls = _speaks_tls(self.endpoint, self.settings.connect_timeout)
        else:  # through the session, so that a proxy from the environment is used
            import requests

            try:
                self._raw("GET", f"https://{self.endpoint}/v2/", headers={}, body=None, stream=False).close()
                tls = True
            except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
                tls = False
        self._base = f"{'https' if tls else 'http'}://{self.endpoint}"
        _schemes[self.endpoint] = self._base

    # -- requests -------------------------------------------------------------------------------------------------
    def _raw(
        self, method: str, url: str, *, headers: dict[str, str], body: Body, stream: bool, redirects: bool = True
    ) -> requests.Response:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        data = body() if callable(body) else body
        try:
            return self.session.request(
                method,
                url,
                headers=headers,
                data=data,
                stream=stream,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                verify=not self.settings.is_insecure(parts.netloc),
                proxies=_NO_PROXY if is_loopback(parts.hostname or "") else None,
                allow_redirects=redirects,
            )
        finally:
            if data is not None and hasattr(data, "close"):
                data.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """One request with retries. 5xx/429 answers that outlast the retries are returned to the caller."""
        import requests

        attempts = self.settings.retry.attempts if retry else 1
        for attempt in range(1, attempts + 1):
            url = self.url(path)
            try:
                response = self._raw(method, url, headers=headers or {}, body=body, stream=stream)
            except requests.exceptions.Timeout as e:
                if attempt == attempts:
                    raise self.timeout_error(method, url) from e
                self.sleep(self.settings.retry.delay(attempt))
                continue
            except requests.exceptions.ConnectionError as e:
                if attempt == attempts:
                    raise RegistryError(
                        f"cannot reach registry {self.endpoint} ({method} {_path(url)}): {_reason(e)}",
                        hint="check that the registry runs and its address is right",
                    ) from None
                self.sleep(self.settings.retry.delay(attempt))
                continue
            except requests.exceptions.RequestException as e:
                raise RegistryError(f"request to registry {self.endpoint} failed: {_reason(e)}") from None
            if response.status_code not in RETRY_STATUSES or attempt == attempts:
                return response
            wait = self.retry_after(response) or self.settings.retry.delay(attempt)
            response.close()
            self.sleep(wait)
        raise AssertionError("unreachable")

    def retry_after(self, response: requests.Response) -> float | None:
        """Seconds a 429/503 asks us to wait (Retry-After as seconds or an HTTP date), capped by the policy."""
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return max(0.0, min(seconds, self.settings.retry.max_retry_after))

    def timeout_error(self, method: str, url: str) -> RegistryError:
        return RegistryError(
            f"registry {self.endpoint} did not answer within {self.settings.read_timeout:g}s "
            f"({method} {_path(url)}, {self.settings.retry.attempts} attempts)",
            hint=TIMEOUT_HINT,
        )


def _speaks_tls(endpoint: str, timeout: float) -> bool:
    """Does the server at `endpoint` complete a TLS handshake? (No certificates loaded: nothing is verified.)"""
    import socket
    import ssl

    host = host_of(endpoint)
    port = int(endpoint.rsplit(":", 1)[1]) if endpoint.rsplit(":", 1)[-1].isdigit() and ":" in endpoint else 443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, context.wrap_socket(sock):
            return True
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
        return False


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _reason(e: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception."""
    text = str(e)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()'\" ").split("'))")[0][:200]

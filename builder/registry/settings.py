"""How minibuild talks to registries: insecure registries, docker.io mirrors, timeouts, retries, parallelism.

Three sources, merged (flags add to the others):
- command-line flags (`--insecure-registry`, `--registry-mirror`, `--timeout`),
- the environment: MINICONTAINER_INSECURE_REGISTRIES and MINICONTAINER_REGISTRY_MIRRORS (comma-separated),
  MINICONTAINER_REGISTRY_TIMEOUT (seconds),
- a JSON file with Docker's daemon.json keys `insecure-registries` and `registry-mirrors`:
  $MINICONTAINER_REGISTRIES_CONF, else /etc/minicontainer/registries.json when it exists.
"""

from __future__ import annotations

import ipaddress
import json
import os

from minicache.errors import InvalidSpec
from minicache.record import Record, replace

CONF_ENV = "MINICONTAINER_REGISTRIES_CONF"
DEFAULT_CONF = "/etc/minicontainer/registries.json"
INSECURE_ENV = "MINICONTAINER_INSECURE_REGISTRIES"
MIRRORS_ENV = "MINICONTAINER_REGISTRY_MIRRORS"
TIMEOUT_ENV = "MINICONTAINER_REGISTRY_TIMEOUT"


class RetryPolicy(Record, frozen=True):
    """Retries of connection errors, 5xx and 429: exponential backoff with jitter, Retry-After honoured."""

    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 10.0
    max_retry_after: float = 60.0  # a longer Retry-After is cut to this

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based), with ±20% jitter."""
        import random

        return min(self.max_backoff, self.backoff * 2 ** (retry - 1)) * random.uniform(0.8, 1.2)


class Settings(Record, frozen=True):
    insecure: tuple[str, ...] = ()  # host[:port] or CIDR networks that may use plain HTTP / unverified TLS
    mirrors: tuple[str, ...] = ()  # URLs tried, in order, before registry-1.docker.io for docker.io images
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # between two reads of the socket, not for a whole blob
    retry: RetryPolicy = RetryPolicy()  # frozen: one shared default is safe
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 3

    def with_timeout(self, seconds: float) -> Settings:
        if not seconds > 0:
            raise InvalidSpec(f"invalid timeout {seconds!r}", hint="give the timeout in seconds, e.g. --timeout 30")
        return replace(self, connect_timeout=min(seconds, self.connect_timeout), read_timeout=seconds)

    def is_insecure(self, endpoint: str) -> bool:
        """True if `endpoint` (host[:port]) is loopback or listed as insecure."""
        host = host_of(endpoint)
        if is_loopback(host):
            return True
        for entry in self.insecure:
            if entry in (endpoint, host):
                return True
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


def host_of(endpoint: str) -> str:
    """`127.0.0.1:5000` → `127.0.0.1`, `[::1]:5000` → `::1`, `example.com` → `example.com`."""
    if endpoint.startswith("["):
        return endpoint[1:].split("]", 1)[0]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _mirror(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = f"https://{url}"
    return url


def load(
    *,
    insecure: list[str] | tuple[str, ...] = (),
    mirrors: list[str] | tuple[str, ...] = (),
    timeout: float | None = None,
) -> Settings:
    """Settings from the config file, the environment and the given flags."""
    conf_insecure: list[str] = []
    conf_mirrors: list[str] = []
    path = os.environ.get(CONF_ENV) or (DEFAULT_CONF if os.path.exists(DEFAULT_CONF) else None)
    if path:
        try:
            with open(path, "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise InvalidSpec(f"registries config {path} does not exist", hint=f"fix or unset {CONF_ENV}") from None
        except ValueError as e:
            raise InvalidSpec(f"registries config {path} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidSpec(f"registries config {path} is not a JSON object")
        conf_insecure = [str(v) for v in doc.get("insecure-registries") or []]
        conf_mirrors = [str(v) for v in doc.get("registry-mirrors") or []]
    settings = Settings(
        insecure=tuple(dict.fromkeys([*conf_insecure, *_split(os.environ.get(INSECURE_ENV)), *insecure])),
        mirrors=tuple(
            dict.fromkeys(_mirror(m) for m in [*mirrors, *_split(os.environ.get(MIRRORS_ENV)), *conf_mirrors])
        ),
    )
    env_timeout = os.environ.get(TIMEOUT_ENV)
    if timeout is None and env_timeout:
        try:
            timeout = float(env_timeout)
        except ValueError:
            raise InvalidSpec(f"{TIMEOUT_ENV}={env_timeout!r} is not a number of seconds") from None
    return settings.with_timeout(timeout) if timeout is not None else settings

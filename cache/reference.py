"""Image references, normalised as Docker does: `centos` is `docker.io/library/centos:latest`."""

from __future__ import annotations

import re

from minicache import digest as digests
from minicache.errors import InvalidDigest, InvalidReference
from minicache.record import Record

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# The registry endpoint behind the name docker.io.
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"

# Docker's grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_ID = re.compile(r"(?:sha256:)?[a-f0-9]{4,64}")
_MAX_NAME = 255


class Reference(Record, frozen=True):
    """A parsed, normalised reference: `registry/repository[:tag][@digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, the key every tag and digest of one image name hangs off."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        """The short form Docker shows: `centos:7`, `user/app:1`, `localhost:5000/x:latest`."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        if self.digest and not self.tag:
            return f"{name}@{self.digest}"
        return f"{name}:{self.tag}" if self.tag else name

    @property
    def endpoint(self) -> str:
        """Host[:port] to talk HTTP to."""
        return DOCKER_HUB_ENDPOINT if self.registry == DEFAULT_REGISTRY else self.registry

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry = first
    else:
        registry, rest = DEFAULT_REGISTRY, name
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in rest:
        rest = f"library/{rest}"
    return registry, rest


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference; `default_tag` adds `:latest` when neither tag nor digest is given."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference format: {text!r}")
    remainder, at, digest = text.partition("@")
    if at:
        try:
            digests.validate(digest)
        except InvalidDigest as e:
            raise InvalidReference(f"invalid reference {text!r}: {e}") from None
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
    registry, repository = _split_domain(remainder)
    if registry != DEFAULT_REGISTRY and not _DOMAIN.fullmatch(registry):
        raise InvalidReference(f"invalid reference {text!r}: invalid registry {registry!r}")
    if not _PATH.fullmatch(repository):
        if repository.lower() != repository and _PATH.fullmatch(repository.lower()):
            raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase")
        raise InvalidReference(f"invalid reference format: {text!r}")
    if len(f"{registry}/{repository}") > _MAX_NAME:
        raise InvalidReference(f"invalid reference {text!r}: repository name longer than {_MAX_NAME}")
    if tag is None and not at and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest or None)


def looks_like_id(text: str) -> bool:
    """True for a full or short (at least 4 hex digits) image or container ID, optionally `sha256:`."""
    return _ID.fullmatch(text) is not None

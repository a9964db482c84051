"""Digests (`sha256:hex`), streaming verification and chain IDs."""

from __future__ import annotations

import re

from minicache.errors import DigestMismatch, InvalidDigest

DIGEST_PATTERN = r"sha256:[a-f0-9]{64}"  # what validate() accepts
_DIGEST = re.compile(DIGEST_PATTERN)


def validate(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise InvalidDigest.

    Only sha256 is accepted: it is what every registry and image format uses, and the hex part
    becomes a file name, so nothing else may pass.
    """
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise InvalidDigest(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


def hex_of(digest: str) -> str:
    """The hex part of a validated digest."""
    return validate(digest).split(":", 1)[1]


def of_bytes(data: bytes) -> str:
    import hashlib  # imported on use: loading OpenSSL is start-up time that lookups do not need

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        validate(diff_id)
        out.append(diff_id if not out else of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


class Verifier:
    """Hashes bytes as they stream past and checks digest and size at the end."""

    def __init__(self, expected: str | None = None, size: int | None = None) -> None:
        self.expected = validate(expected) if expected is not None else None
        self.expected_size = size
        import hashlib

        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatch(f"content is larger than the {self.expected_size} bytes announced for {self.expected}")

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def check(self, what: str = "content") -> str:
        """Raise DigestMismatch unless the bytes seen match; return the digest."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(f"{what}: got {self.size} bytes, expected {self.expected_size}")
        got = self.digest
        if self.expected is not None and got != self.expected:
            raise DigestMismatch(f"{what}: digest {got} does not match the expected {self.expected}")
        return got

"""Platforms (`os/arch[/variant]`): the host's, `--platform` values, and choosing one image from an index.

Names are normalised as containerd does (x86_64 → amd64, aarch64 → arm64, arm64/v8 → arm64, armhf →
arm/v7), so `--platform linux/aarch64` finds the `linux/arm64` entry of an index.
"""

from __future__ import annotations

from minicache.errors import InvalidSpec
from minicache.record import Record

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64el": "ppc64le",
}
_ARM_DEFAULT_VARIANT = {"armhf": "v7", "armel": "v6", "armv7l": "v7", "armv6l": "v6"}
# A 32-bit arm CPU of variant vN also runs images built for the older variants.
_ARM_COMPAT = {"v8": ("v8", "v7", "v6", "v5"), "v7": ("v7", "v6", "v5"), "v6": ("v6", "v5"), "v5": ("v5",)}
PLATFORM_HINT = "give --platform as OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"


class Platform(Record, frozen=True):
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def normalized(self) -> Platform:
        arch = self.architecture.lower()
        variant = (self.variant or "").lower() or _ARM_DEFAULT_VARIANT.get(arch)
        arch = _ARCH_ALIASES.get(arch, arch)
        if variant and variant.isdigit():
            variant = f"v{variant}"
        if arch == "arm64" and variant in ("v8", "v8.0"):
            variant = None
        if arch == "arm" and not variant:
            variant = "v7"
        if arch == "amd64" and variant == "v1":
            variant = None
        return Platform(self.os.lower(), arch, variant or None)

    @classmethod
    def from_json(cls, obj: object) -> Platform | None:
        """The `platform` object of an index entry (None when absent or malformed)."""
        if not isinstance(obj, dict):
            return None
        os_name, arch, variant = obj.get("os"), obj.get("architecture"), obj.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            return None
        return cls(os_name, arch, variant if isinstance(variant, str) and variant else None)


def parse(text: str) -> Platform:
    """`linux/arm64/v8` → Platform; raise InvalidSpec for anything else."""
    parts = text.strip().split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise InvalidSpec(f"invalid platform {text!r}", hint=PLATFORM_HINT)
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()


def host() -> Platform:
    """The platform this machine runs natively."""
    import os

    machine = os.uname().machine
    return Platform("linux", machine).normalized()


def matches(want: Platform, have: Platform) -> bool:
    """True if an image for `have` runs where `want` is asked for (both normalised first)."""
    want, have = want.normalized(), have.normalized()
    if want.os != have.os or want.architecture != have.architecture:
        return False
    if want.architecture == "arm":
        return (have.variant or "v7") in _ARM_COMPAT.get(want.variant or "v7", (want.variant,))
    return want.variant is None or have.variant == want.variant


def rank(want: Platform, have: Platform) -> int:
    """Among matching platforms, lower is better: the exact variant first, then older compatible ones."""
    want, have = want.normalized(), have.normalized()
    if want.architecture == "arm":
        order = _ARM_COMPAT.get(want.variant or "v7", ())
        return order.index(have.variant) if have.variant in order else len(order)
    return 0 if have.variant == want.variant else 1

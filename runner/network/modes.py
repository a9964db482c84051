"""`--network` values: none, host, bridge (the default network), container:ID, or a network's name."""

from __future__ import annotations

from minicache.errors import InvalidSpec

NONE, HOST, BRIDGE, CONTAINER, NETWORK = "none", "host", "bridge", "container", "network"


def parse(text: str) -> tuple[str, str | None]:
    """(kind, argument): ("none", None), ("host", None), ("bridge", None), ("container", ID),
    ("network", NAME)."""
    if text in (NONE, HOST, BRIDGE):
        return text, None
    if text == "default":
        return BRIDGE, None
    if text.startswith("container:"):
        target = text.partition(":")[2]
        if not target:
            raise InvalidSpec(f"invalid --network {text!r}", hint="use container:NAME|ID")
        return CONTAINER, target
    from minirun.network.networks import check_name

    return NETWORK, check_name(text)

"""Container networking: network namespaces as files, bridges, veths, IPAM, ports, names.

The engine's side of it is two calls: `attach(store, container_id, NetworkOptions(...))` before the
container starts (it returns the namespace path to put in the OCI spec, the hosts and resolv.conf
content and the published ports) and `detach(store, container_id)` after it stops; minirun.engine.networking
adapts them to the engine's containers. Importing this package costs nothing: the names below are loaded on
first use (PEP 562), rtnetlink and libnftables only by the calls that need them, so `--network none` pays
nothing.

May import: minicache, minirun.errors, and the runtime's kernel calls (minirun.runtime.syscalls: unshare,
setns). It knows container IDs, not the engine's containers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minirun.network.attachment import (
        Attachment,
        Interface,
        NetworkOptions,
        attach,
        connect,
        detach,
        disconnect,
        endpoint,
        prune,
    )
    from minirun.network.manage import (
        create_network,
        inspect_network,
        list_networks,
        prune_networks,
        remove_network,
    )
    from minirun.network.networks import Network
    from minirun.network.ports import PortMapping

_WHERE = {
    **dict.fromkeys(
        ("Attachment", "Interface", "NetworkOptions", "attach", "connect", "detach", "disconnect", "endpoint", "prune"),
        "minirun.network.attachment",
    ),
    **dict.fromkeys(
        ("create_network", "inspect_network", "list_networks", "prune_networks", "remove_network"),
        "minirun.network.manage",
    ),
    "Network": "minirun.network.networks",
    "PortMapping": "minirun.network.ports",
}  # name -> its module, spelled out in full so that a reading of the sources sees these imports too

__all__ = [  # noqa: RUF022 - grouped as _WHERE
    "Attachment",
    "Interface",
    "NetworkOptions",
    "attach",
    "connect",
    "detach",
    "disconnect",
    "endpoint",
    "prune",
    "create_network",
    "inspect_network",
    "list_networks",
    "prune_networks",
    "remove_network",
    "Network",
    "PortMapping",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

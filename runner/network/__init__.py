"""Container networking: network namespaces as files, bridges, veths, IPAM, ports, names.

The engine's side of it is two calls: `attach(store, container_id, NetworkOptions(...))` before the
container starts (it returns the namespace path to put in the OCI spec, the hosts and resolv.conf
content and the published ports) and `detach(store, container_id)` after it stops. Importing this
package is cheap; pyroute2 and libnftables are loaded only by the calls that need them.
"""

from __future__ import annotations

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
from minirun.network.manage import create_network, inspect_network, list_networks, prune_networks, remove_network
from minirun.network.networks import Network
from minirun.network.ports import PortMapping

__all__ = [
    "Attachment",
    "Interface",
    "Network",
    "NetworkOptions",
    "PortMapping",
    "attach",
    "connect",
    "create_network",
    "detach",
    "disconnect",
    "endpoint",
    "inspect_network",
    "list_networks",
    "prune",
    "prune_networks",
    "remove_network",
]

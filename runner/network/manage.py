"""Managing networks as a whole: `minirun network create|ls|inspect|rm|prune` call these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from minicache.errors import Conflict
from minirun.network import networks, settings, state

if TYPE_CHECKING:
    from typing import Any

    from minicache.store import Store
    from minirun.network.networks import Network


def members(store: Store, net: Network) -> dict[str, Any]:
    return state.read(state.network_state_path(store, net.id), {"members": {}})["members"]


def create_network(
    store: Store, name: str, *, subnet: str | None = None, gateway: str | None = None, mtu: int | None = None
) -> Network:
    """Define a user network; its bridge is made when the first container joins."""
    with state.lock(store):
        return networks.create(store, name, subnet=subnet, gateway=gateway, mtu=mtu)


def list_networks(store: Store) -> list[tuple[Network, int]]:
    """Every network (the default one first, once it has been used) with its number of members."""
    nets = sorted(networks.all_networks(store), key=lambda n: (not n.default, n.name))
    return [(n, len(members(store, n))) for n in nets]


def inspect_network(store: Store, ref: str) -> dict[str, Any]:
    net = networks.get(store, ref)
    return networks.inspect_view(net, members(store, net))


def remove_network(store: Store, ref: str) -> Network:
    """Delete a network without members: its bridge, its rules and its definition (the default
    network too: it is defined again, with a fresh subnet choice, when next used)."""
    from minirun.network import bridge, firewall
    from minirun.network.nft import Nft
    from minirun.network.rtnl import Rtnl

    with state.lock(store):
        net = networks.get(store, ref)
        used = members(store, net)
        if used:
            raise Conflict(  # Docker's words, and which containers
                f"error while removing network: network {net.name} id {net.id} has active endpoints "
                f"({len(used)} container(s): {', '.join(c[:12] for c in sorted(used))})",
                hint="disconnect or remove those containers first",
            )
        table = settings.load(store).table
        with Rtnl() as rtnl, Nft() as nft:
            bridge.remove(rtnl, nft, net, table)
            networks.delete_definition(store, net)
            firewall.remove_table_if_unused(nft, table)
    return net


def prune_networks(store: Store) -> list[str]:
    """Remove every user-defined network that has no members; their names."""
    removed = []
    for net, count in list_networks(store):
        if not net.default and count == 0:
            try:
                remove_network(store, net.id)
            except Conflict:
                continue  # joined in the meantime
            removed.append(net.name)
    return removed

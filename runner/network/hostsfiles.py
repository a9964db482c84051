"""The hosts files of a network's members, rendered from the records and kept up to date.

A container's file lists localhost, its `--add-host` entries, its own addresses (host name, name,
aliases) and, on user-defined networks, every peer's name, aliases and short ID (minirun.network.hosts
says why files and not a DNS server). Callers hold the network lock: the records do not move while a
file is rendered, and every member's file is rewritten when one joins or leaves.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minirun.network import hosts, networks, state

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from minicache.store import Store


def resolve_extra(extra: list[hosts.HostEntry], gateway: str | None) -> list[hosts.HostEntry]:
    """`--add-host NAME:host-gateway` becomes NAME and the gateway's address."""
    out = []
    for entry in extra:
        if entry.address == hosts.HOST_GATEWAY:
            if gateway is None:
                raise InvalidSpec("--add-host NAME:host-gateway needs a bridge network or the host's network")
            entry = hosts.HostEntry(gateway, entry.names)
        out.append(entry)
    return out


def write(path: str | None, content: str) -> None:
    """Write a container's hosts file in place (nothing when the engine gave no path)."""
    if path:
        hosts.write_in_place(path, content)


def members_of(store: Store, network_ids: list[str]) -> set[str]:
    """The IDs of every container on these networks."""
    out: set[str] = set()
    for network_id in network_ids:
        st = state.read(state.network_state_path(store, network_id), {"members": {}})
        out |= set(st["members"])
    return out


def render_for(
    store: Store, container_id: str, endpoint: dict[str, Any], extra: list[hosts.HostEntry] | None = None
) -> str:
    """The container's hosts file from the records (the caller holds the lock)."""
    if extra is None:
        extra = [hosts.parse_add_host(h) for h in endpoint.get("add_hosts", [])]
    interfaces = endpoint.get("interfaces", [])
    extra = resolve_extra(extra, interfaces[0]["gateway"] if interfaces else None)
    names = [endpoint.get("hostname") or container_id[:12]]
    for name in [endpoint.get("name"), *endpoint.get("aliases", [])]:
        if name and name not in names:
            names.append(name)
    own = [hosts.HostEntry(i["ip"], names) for i in interfaces]
    peers = []
    defaults = {n.id for n in networks.all_networks(store) if n.default}
    for iface in interfaces:
        if iface["network_id"] in defaults:
            continue  # the default network has no name resolution, as in Docker
        st = state.read(state.network_state_path(store, iface["network_id"]), {"members": {}})
        for cid, member in sorted(st["members"].items()):
            if cid == container_id:
                continue
            peer_names = [n for n in [member.get("name"), *member.get("aliases", []), cid[:12]] if n]
            peers.append(hosts.HostEntry(member["ip"], list(dict.fromkeys(peer_names))))
    return hosts.render(own, peers, extra)


def rewrite(store: Store, container_ids: Iterable[str]) -> None:
    """Rewrite the hosts files of these containers (the caller holds the lock)."""
    for container_id in container_ids:
        endpoint = state.read(state.endpoint_path(store, container_id))
        if endpoint and endpoint.get("hosts_path"):
            content = render_for(store, container_id, endpoint)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                hosts.write_in_place(endpoint["hosts_path"], content)

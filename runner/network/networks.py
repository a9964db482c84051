"""Network definitions: the default `bridge` network and user-defined ones (`minirun network create`).

A definition is the network's name, ID, subnet, gateway, bridge name and MTU. The bridge itself is
made on first use and removed with the network (minirun.network.bridge). The default network differs
in one way, as in Docker: its members do not resolve each other's names.
"""

from __future__ import annotations

import os
import re
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec, NotFound
from minicache.record import Record
from minirun.network import ipam, settings, state

if TYPE_CHECKING:
    from typing import Any

    from minicache.store import Store
    from minirun.network.rtnl import Rtnl

DEFAULT = "bridge"
RESERVED = frozenset({"bridge", "host", "none", "default", "container"})
DEFAULT_MTU = 1500
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class Network(Record):
    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    mtu: int = DEFAULT_MTU
    created: str = ""
    default: bool = False
    driver: str = "bridge"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidSpec(
            f"invalid network name {name!r}", hint="names are [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 63 characters"
        )
    return name


def _path(store: Store, name: str):
    return os.path.join(store.networks_dir, f"{name}.json")


def _load(store: Store, name: str) -> Network | None:
    data = state.read(_path(store, name))
    return Network(**data) if data is not None else None


def all_networks(store: Store) -> list[Network]:
    try:
        names = sorted(os.listdir(store.networks_dir))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(".json") and name != "settings.json":
            net = _load(store, name[:-5])
            if net is not None:
                out.append(net)
    return out


def get(store: Store, ref: str) -> Network:
    """A network by name, full ID or unique ID prefix."""
    if "/" not in ref and ref not in (".", ".."):
        net = _load(store, ref)
        if net is not None:
            return net
    matches = [n for n in all_networks(store) if n.id.startswith(ref.lower())] if ref else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise Conflict(f"network ID prefix {ref!r} is ambiguous", hint="give more digits or the name")
    raise NotFound(f"no such network: {ref}", hint="list networks with `minirun network ls`")


def _taken(store: Store, rtnl: Rtnl) -> list[tuple[IPv4Network, str]]:
    """What a new subnet must not overlap: the host's routes (but those of our own bridges, which are
    the store's networks, named as such) and the store's networks."""
    nets = all_networks(store)
    ours = {n.bridge for n in nets}
    routes = [(net, f"the host route {net} dev {dev}") for net, dev in ipam.host_routes(rtnl) if dev not in ours]
    return routes + [(IPv4Network(n.subnet), f"the network {n.name}") for n in nets]


def create(
    store: Store,
    name: str,
    *,
    subnet: str | None = None,
    gateway: str | None = None,
    mtu: int | None = None,
    default: bool = False,
) -> Network:
    """Define a network (the caller holds the network lock). Its subnet is checked against the host's
    routes and the store's other networks, or picked from the pool when not given."""
    import hashlib
    import time

    from minicache.atomic import atomic_write_json
    from minirun.network.rtnl import Rtnl

    check_name(name)
    if not default and name in RESERVED:
        raise InvalidSpec(f"{name!r} is a reserved network name", hint="choose another name")
    if _load(store, name) is not None:
        raise Conflict(f"network {name} already exists", hint="remove it first, or choose another name")
    if gateway is not None and subnet is None:
        raise InvalidSpec("--gateway needs --subnet", hint="give the subnet the gateway belongs to")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InvalidSpec(f"invalid MTU {mtu}", hint="use a value between 68 and 65535")
    conf = settings.load(store)
    with Rtnl() as rtnl:
        taken = _taken(store, rtnl)
    if subnet is not None:
        chosen = ipam.parse_subnet(subnet)
        clash = ipam.conflict(chosen, taken)
        if clash:
            raise Conflict(f"subnet {chosen} overlaps {clash}", hint="choose another --subnet")
    else:
        chosen = ipam.choose_subnet(ipam.parse_pool(conf.pool), taken)
    net_id = hashlib.sha256(f"{name}\0{time.time_ns()}\0{os.urandom(16).hex()}".encode()).hexdigest()
    net = Network(
        name=name,
        id=net_id,
        subnet=str(chosen),
        gateway=str(ipam.gateway_for(chosen, gateway)),
        bridge=conf.default_bridge if default else conf.bridge_for(net_id),
        mtu=mtu or DEFAULT_MTU,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        default=default,
    )
    path = _path(store, name)
    atomic_write_json(path, net.as_dict())
    return net


def ensure_default(store: Store) -> Network:
    """The default network, defined on first use (the caller holds the network lock)."""
    return _load(store, DEFAULT) or create(store, DEFAULT, default=True)


def delete_definition(store: Store, net: Network) -> None:
    state.delete(_path(store, net.name))
    state.delete(state.network_state_path(store, net.id))


def inspect_view(net: Network, members: dict[str, Any]) -> dict[str, Any]:
    """Docker's `network inspect` layout."""
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Driver": net.driver,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
        "Options": {"com.docker.network.bridge.name": net.bridge, "com.docker.network.driver.mtu": str(net.mtu)},
        "Containers": {
            cid: {
                "Name": m.get("name") or "",
                "IPv4Address": f"{m['ip']}/{IPv4Network(net.subnet).prefixlen}",
                "MacAddress": m.get("mac", ""),
                "Interface": m.get("ifname", ""),
                "HostInterface": m.get("veth", ""),
            }
            for cid, m in sorted(members.items())
        },
    }

"""A network's Linux bridge: created on first use with the gateway address, removed by `network rm`.

Forwarding is switched on for our bridges only (net.ipv4.conf.<bridge>.forwarding), together with
route_localnet (so a published port answers on 127.0.0.1; see minirun.network.firewall). The global
switch, net.ipv4.ip_forward, is never flipped: when it is off, replies from the outside cannot come
back through the host's uplink, and the network's first use returns a warning saying so.
"""

from __future__ import annotations

import errno
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from minicache.errors import Conflict, MiniError
from minirun.network import firewall, ipam
from minirun.network.nft import Nft
from minirun.network.rtnl import NetlinkError, Rtnl

if TYPE_CHECKING:
    from minirun.network.networks import Network

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_sysctl(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def no_ipv6(bridge: str) -> None:
    """Turn IPv6 off on one of our bridges (our networks are IPv4 only): with it on, the host takes router
    advertisements that a container (CAP_NET_RAW) sends there, and gives itself the addresses and routes
    they announce, so that traffic of the host's goes to the container. A bridge an older version made is
    switched off when next used."""
    path = f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6"
    if _read_sysctl(path) == "0":
        _sysctl(path, "1")


def ensure(rtnl: Rtnl, net: Network, table: str) -> tuple[int, list[str]]:
    """The bridge's index, creating and configuring it if needed; and warnings for the user."""
    index = rtnl.link_index(net.bridge)
    if index is not None:
        no_ipv6(net.bridge)
        return index, []
    subnet = IPv4Network(net.subnet)
    routes = [(route, f"the host route {route} dev {dev}") for route, dev in ipam.host_routes(rtnl)]
    clash = ipam.conflict(subnet, routes)
    if clash:
        raise Conflict(
            f"network {net.name}'s subnet {subnet} overlaps {clash}",
            hint=f"remove the network (minirun network rm {net.name}) and create it with another --subnet",
        )
    try:
        index = rtnl.add_bridge(net.bridge, mtu=net.mtu)
    except NetlinkError as e:
        if e.errno == errno.EEXIST:
            raise Conflict(f"an interface named {net.bridge} exists but is not usable as the bridge") from None
        raise MiniError(f"cannot create the bridge {net.bridge}: {e.strerror}") from None
    try:
        no_ipv6(net.bridge)  # before it has a port
        rtnl.add_address(index, net.gateway, subnet.prefixlen, broadcast=str(subnet.broadcast_address))
        conf = f"/proc/sys/net/ipv4/conf/{net.bridge}"
        _sysctl(f"{conf}/forwarding", "1")
        _sysctl(f"{conf}/route_localnet", "1")
        with Nft() as nft:
            firewall.add_network(nft, table, net.id, net.bridge, net.subnet)
    except BaseException:
        rtnl.delete_link(net.bridge)
        raise
    warnings = []
    if _read_sysctl(IP_FORWARD) == "0":
        warnings.append(
            f"net.ipv4.ip_forward is 0: containers on network {net.name} reach the host and each other, "
            "but not beyond; enable it with `sysctl -w net.ipv4.ip_forward=1`"
        )
    return index, warnings


def remove(rtnl: Rtnl, nft: Nft, net: Network, table: str) -> None:
    """Delete the bridge and its rules (callers make sure no container uses it)."""
    rtnl.delete_link(net.bridge)
    firewall.remove_network(nft, table, net.id, net.bridge)

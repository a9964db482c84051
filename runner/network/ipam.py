"""Address management: choosing a network's subnet and handing out its addresses.

Subnets never shadow what the host already routes: a subnet is refused (or skipped, when picked from
the pool) if it overlaps a route of any table other than a default route, or another network of the
store. Addresses are leased per container in the network's state file (under the store's network
lock, see minirun.network.state); a lease goes on from the last address handed out rather than
reusing a just-released one at once, as Docker does, so peers' ARP caches have time to forget it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec

if TYPE_CHECKING:
    from minirun.network.rtnl import Rtnl


def host_routes(rtnl: Rtnl) -> list[tuple[IPv4Network, str]]:
    """The host's IPv4 routes of every table, default routes left out, as (network, device name)."""
    names = {link["index"]: link["name"] for link in rtnl.links()}
    out = []
    for route in rtnl.routes():
        if route["dst_len"] == 0 or route["dst"] is None:
            continue
        out.append((IPv4Network(f"{route['dst']}/{route['dst_len']}", strict=False), names.get(route["oif"], "?")))
    return out


def parse_subnet(text: str) -> IPv4Network:
    try:
        subnet = IPv4Network(text, strict=True)
    except ipaddress.NetmaskValueError:
        raise InvalidSpec(f"invalid subnet {text!r}", hint="use CIDR notation, e.g. 10.90.0.0/24") from None
    except ValueError as e:
        if "has host bits set" in str(e):
            base = IPv4Network(text, strict=False)
            raise InvalidSpec(f"invalid subnet {text!r}: host bits are set", hint=f"did you mean {base}?") from None
        raise InvalidSpec(f"invalid subnet {text!r} (IPv4 only)", hint="use CIDR notation, e.g. 10.90.0.0/24") from None
    if not 8 <= subnet.prefixlen <= 29:
        raise InvalidSpec(f"invalid subnet {text!r}: the prefix length must be between /8 and /29")
    if subnet.is_loopback or subnet.is_multicast or subnet.is_link_local or subnet.is_unspecified:
        raise InvalidSpec(f"invalid subnet {text!r}: it is a loopback, multicast or link-local range")
    return subnet


def parse_address(text: str, what: str = "address") -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise InvalidSpec(f"invalid {what} {text!r}", hint="give an IPv4 address, e.g. 10.90.0.1") from None


def parse_pool(entries: Iterable[str]) -> list[tuple[IPv4Network, int]]:
    """`CIDR:SIZE` entries: cut CIDR into /SIZE subnets."""
    out = []
    for entry in entries:
        cidr, _, size = entry.partition(":")
        try:
            base = IPv4Network(cidr, strict=True)
            new_prefix = int(size) if size else base.prefixlen
        except ValueError:
            raise InvalidSpec(
                f"invalid subnet pool entry {entry!r}", hint="use CIDR:SIZE, e.g. 10.89.0.0/16:24"
            ) from None
        if not base.prefixlen <= new_prefix <= 29:
            raise InvalidSpec(f"invalid subnet pool entry {entry!r}: SIZE must be between the prefix and 29")
        out.append((base, new_prefix))
    return out


def gateway_for(subnet: IPv4Network, gateway: str | None = None) -> IPv4Address:
    """The given gateway (checked to be a host of the subnet) or the subnet's first host."""
    if gateway is None:
        return subnet.network_address + 1
    address = parse_address(gateway, "gateway")
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidSpec(f"gateway {gateway} is not a host address of the subnet {subnet}")
    return address


def conflict(subnet: IPv4Network, taken: Iterable[tuple[IPv4Network, str]]) -> str | None:
    """What `subnet` would shadow or share ("route 10.1.0.0/16 dev eth0", "network foo"), or None."""
    for other, what in taken:
        if subnet.overlaps(other):
            return what
    return None


def choose_subnet(pool: list[tuple[IPv4Network, int]], taken: list[tuple[IPv4Network, str]]) -> IPv4Network:
    """The first subnet of the pool that overlaps nothing taken."""
    for base, new_prefix in pool:
        for candidate in base.subnets(new_prefix=new_prefix):
            if conflict(candidate, taken) is None:
                return candidate
    raise Conflict(
        "no free subnet left in the pool: every candidate overlaps a host route or another network",
        hint="give one with --subnet, or remove unused networks (minirun network prune)",
    )


def allocate(
    subnet: IPv4Network,
    gateway: IPv4Address,
    leased: Iterable[str],
    last: str | None,
    requested: str | None = None,
) -> IPv4Address:
    """A free host address of `subnet`: `requested` if given, else the next free one after `last`."""
    used = {IPv4Address(a) for a in leased}
    used.add(gateway)
    if requested is not None:
        address = parse_address(requested, "IP address")
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise InvalidSpec(f"IP address {requested} is not a host address of the subnet {subnet}")
        if address in used:
            raise Conflict(f"IP address {requested} is already in use on this network")
        return address
    first, end = int(subnet.network_address) + 1, int(subnet.broadcast_address)  # hosts: [first, end)
    size = end - first
    start = int(IPv4Address(last)) + 1 if last and IPv4Address(last) in subnet else first
    for step in range(size):
        candidate = IPv4Address(first + (start - first + step) % size)
        if candidate not in used:
            return candidate
    raise Conflict(f"no free address left in {subnet}", hint="remove containers or use a larger --subnet")

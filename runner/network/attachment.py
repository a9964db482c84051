"""Attach a container to the network before it starts, detach it after: what the engine calls.

    attachment = attach(store, container_id, NetworkOptions(network="bridge", publish=["8080:80"]))
    ... run the container in attachment.netns_path (None: a private namespace / the host's) ...
    detach(store, container_id)     # idempotent; also undoes what a crashed attach left

In bridge mode attach records its intent first (the endpoint file), then makes the namespace file,
then, under the network lock, leases an address, makes the bridge if needed, registers the ports and
rewrites the hosts files, and last, outside the lock, plumbs the veth pair and the addresses. detach
undoes each step whether or not it happened, so a crash anywhere in attach is undone by the next
detach, or by prune for containers that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from minicache.errors import Conflict, InvalidSpec, MiniError, NotFound
from minicache.record import Record
from minirun.network import hosts, hostsfiles, modes, networks, ports, resolv, settings, state

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from minicache.store import Store
    from minirun.network.rtnl import Rtnl
    from minirun.network.settings import NetworkSettings

MAX_INTERFACES = 10


class NetworkOptions(Record):
    """What `minirun run` flags ask of the network (plain values: they are saved with the container)."""

    network: str = "bridge"  # none | host | bridge | container:ID | NAME of a user-defined network
    name: str | None = None  # the container's name, resolvable by its peers
    hostname: str | None = None
    aliases: list[str] = []  # --network-alias
    ip: str | None = None  # --ip
    add_hosts: list[str] = []  # --add-host NAME:IP
    dns: list[str] = []
    dns_search: list[str] = []
    dns_options: list[str] = []
    publish: list[str] = []  # -p values
    publish_all: bool = False  # -P
    exposed_ports: list[str] = []  # the image's ExposedPorts keys, for -P
    hosts_path: str | None = None  # where the container's /etc/hosts lives; kept up to date by this module


class Interface(Record):
    ifname: str  # inside the container: eth0, eth1, ...
    network: str
    network_id: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    veth: str  # the host end, on the bridge
    bridge: str
    mtu: int = 1500


class Attachment(Record):
    container_id: str
    mode: str  # none | host | bridge | container
    netns_path: str | None = None  # join this namespace; None: a private one (none) or the host's (host)
    interfaces: list[Interface] = []
    gateway: str | None = None
    hosts: str = ""  # /etc/hosts content (already written to hosts_path when one was given)
    resolv_conf: str = ""
    ports: list[ports.PortMapping] = []
    shared_with: str | None = None  # container:ID
    warnings: list[str] = []


def mac_for(ip: str) -> str:
    """Docker's scheme: 02:42 and the four bytes of the address (stable across a restart, no ARP surprises)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(ip).packed)


# -- checks before anything is touched ----------------------------------------------------------------------------
def check_container_id(container_id: str) -> str:
    """Container IDs name files and interfaces: 64 lower-case hex digits, nothing else."""
    if len(container_id) != 64 or container_id.strip("0123456789abcdef"):
        raise InvalidSpec(f"invalid container ID {container_id!r}", hint="give the full 64-digit ID")
    return container_id


def _check(options: NetworkOptions, kind: str) -> tuple[list[hosts.HostEntry], list[ports.PortMapping]]:
    extra = [hosts.parse_add_host(h) for h in options.add_hosts]
    resolv.check_dns(options.dns)
    resolv.check_words(options.dns_search, "--dns-search")
    resolv.check_words(options.dns_options, "--dns-option")
    for name, what in ((options.name, "container name"), (options.hostname, "host name")):
        if name is not None:
            hosts.check_name(name, what)
    for alias in options.aliases:
        hosts.check_name(alias, "network alias")
    mappings = [m for spec in options.publish for m in ports.parse_publish(spec)]
    if options.publish_all:
        mappings += ports.publish_all(options.exposed_ports, mappings)
    if kind in (modes.NONE, modes.HOST, modes.CONTAINER):
        if mappings:
            raise InvalidSpec(
                f"ports cannot be published with --network {options.network}", hint="use a bridge network"
            )
        if options.ip or options.aliases:
            raise InvalidSpec(f"--ip and --network-alias need a bridge network, not --network {options.network}")
    if options.ip is not None:
        if kind != modes.NETWORK:
            raise InvalidSpec("--ip is only for user-defined networks", hint="create one with minirun network create")
        from minirun.network.ipam import parse_address

        parse_address(options.ip, "IP address")
    return extra, mappings


def _resolv(options: NetworkOptions, host_network: bool) -> str:
    return resolv.render(
        host_network=host_network, dns=options.dns, search=options.dns_search, options=options.dns_options
    )


# -- the public steps -------------------------------------------------------------------------------------------
def attach(store: Store, container_id: str, options: NetworkOptions | None = None) -> Attachment:
    """Prepare the container's network before it starts (see the module docstring)."""
    check_container_id(container_id)
    options = options or NetworkOptions()
    kind, target = modes.parse(options.network)
    extra, mappings = _check(options, kind)
    if kind == modes.NONE:
        content = hosts.render([], [], hostsfiles.resolve_extra(extra, None))
        hostsfiles.write(options.hosts_path, content)
        return Attachment(container_id, modes.NONE, hosts=content, resolv_conf=_resolv(options, False))
    if kind == modes.HOST:
        try:
            with open("/etc/hosts") as f:
                base = f.read()
        except OSError:
            base = hosts.LOCALHOST
        content = hosts.render([], [], hostsfiles.resolve_extra(extra, "127.0.0.1"), base=base)
        hostsfiles.write(options.hosts_path, content)
        return Attachment(container_id, modes.HOST, hosts=content, resolv_conf=_resolv(options, True))
    if kind == modes.CONTAINER:
        return _share(store, container_id, target or "", options)
    return _attach_bridge(store, container_id, target or networks.DEFAULT, options, extra, mappings)


def detach(store: Store, container_id: str) -> None:
    """Undo attach (or whatever part of it happened): veths, namespace, lease, ports, hosts entries."""
    from minirun.network import netns

    check_container_id(container_id)
    ep_path = state.endpoint_path(store, container_id)
    endpoint = state.read(ep_path)
    if endpoint is not None and endpoint.get("mode") in (modes.NONE, modes.HOST, modes.CONTAINER):
        state.delete(ep_path)
        return
    ns_path = netns.path_for(store, container_id)
    complete = bool(endpoint and endpoint.get("complete"))
    if endpoint is None and not os.path.lexists(ns_path) and not _is_member_anywhere(store, container_id):
        return  # nothing of this container in the network (never attached, or detached already)
    conf = settings.load(store)
    from minirun.network.rtnl import Rtnl

    with Rtnl() as rtnl:  # interfaces first: the address must not be leased again while a veth still uses it
        for iface in (endpoint or {}).get("interfaces", []):
            rtnl.delete_link(iface["veth"])
        if not complete:
            _sweep_veths(rtnl, [conf.veth_stem(container_id)])
    netns.remove(ns_path)
    with state.lock(store):
        _leave_all(store, container_id)
        _release_ports(store, conf, container_id, firewall=not complete or bool(endpoint and endpoint["ports"]))
    state.delete(ep_path)


def connect(
    store: Store, container_id: str, network: str, *, ip: str | None = None, aliases: list[str] | None = None
) -> Interface:
    """Add a running container (attached in bridge mode) to another network: eth1, eth2, ..."""
    _bridge_endpoint(store, check_container_id(container_id))  # fail early, before pyroute2 is loaded
    aliases = [hosts.check_name(a, "network alias") for a in aliases or []]
    conf = settings.load(store)
    from minirun.network.rtnl import Rtnl

    with Rtnl() as rtnl:
        with state.lock(store):
            endpoint = _bridge_endpoint(store, container_id)  # read under the lock: it is about to change
            net = _network(store, network)
            if any(i["network_id"] == net.id for i in endpoint["interfaces"]):
                raise Conflict(f"container {container_id[:12]} is already connected to network {net.name}")
            used = {i["ifname"] for i in endpoint["interfaces"]}
            slot = next((n for n in range(MAX_INTERFACES) if f"eth{n}" not in used), None)
            if slot is None:
                raise Conflict(f"container {container_id[:12]} is on {MAX_INTERFACES} networks already")
            iface, bridge_index, _warnings = _join(store, rtnl, conf, net, container_id, endpoint, slot, ip, aliases)
            hostsfiles.rewrite(store, hostsfiles.members_of(store, [net.id]) | {container_id})
        try:
            _plumb(rtnl, endpoint["netns"], iface, bridge_index, default_route=False)
        except BaseException:
            with contextlib.suppress(Exception):
                disconnect(store, container_id, net.id)
            raise
    return iface


def disconnect(store: Store, container_id: str, network: str) -> None:
    """Take a container off one of its networks (its interface, lease and hosts entries)."""
    endpoint = _bridge_endpoint(store, check_container_id(container_id))
    net = networks.get(store, network)
    iface = next((i for i in endpoint["interfaces"] if i["network_id"] == net.id), None)
    if iface is None:
        raise NotFound(f"container {container_id[:12]} is not connected to network {net.name}")
    from minirun.network.rtnl import Rtnl

    with Rtnl() as rtnl:
        rtnl.delete_link(iface["veth"])
    with state.lock(store):
        peers = hostsfiles.members_of(store, [net.id])
        _leave(store, net.id, container_id)
        endpoint = state.read(state.endpoint_path(store, container_id)) or endpoint
        endpoint["interfaces"] = [i for i in endpoint["interfaces"] if i["network_id"] != net.id]
        state.write(state.endpoint_path(store, container_id), endpoint)
        hostsfiles.rewrite(store, peers | {container_id})


def prune(store: Store, keep: Iterable[str]) -> list[str]:
    """Detach every container not in `keep` (the IDs of containers that still exist), remove veths on
    our bridges and rules of ours that belong to no kept container; the IDs detached."""
    from minirun.network import firewall
    from minirun.network.nft import Nft
    from minirun.network.rtnl import Rtnl

    keep = set(keep)
    seen = set(state.endpoint_ids(store))
    with contextlib.suppress(FileNotFoundError):
        seen |= set(os.listdir(store.netns_dir))
    for st in state.network_states(store).values():
        seen |= set(st.get("members", {}))
    gone = sorted(c for c in seen - keep if len(c) == 64 and not c.strip("0123456789abcdef"))
    for container_id in gone:
        detach(store, container_id)
    conf = settings.load(store)
    bridges = {n.bridge for n in networks.all_networks(store)}
    with Rtnl() as rtnl:
        indices = {link["index"] for link in rtnl.links() if link["name"] in bridges}
        stems = [conf.veth_stem(k) for k in keep]
        for link in rtnl.links():
            name = link["name"] or ""
            if (
                link["master"] in indices
                and link["kind"] == "veth"
                and name.startswith(conf.veth_prefix)
                and not any(name.startswith(s) for s in stems)
            ):
                rtnl.delete_link(name)
    with state.lock(store), Nft() as nft:
        for _chain, _handle, tag in firewall.tagged_rules(nft, conf.table):
            if tag.startswith("ctr:") and tag[4:] not in keep:
                firewall.remove_tagged(nft, conf.table, tag)
        registry = state.read(state.ports_path(store), {})
        kept = {k: v for k, v in registry.items() if v in keep}
        if kept != registry:
            state.write(state.ports_path(store), kept)
    return gone


def endpoint(store: Store, container_id: str) -> dict[str, Any] | None:
    """The container's attachment record as saved (None if it has none)."""
    return state.read(state.endpoint_path(store, container_id))


# -- bridge mode ------------------------------------------------------------------------------------------------
def _attach_bridge(
    store: Store,
    container_id: str,
    network: str,
    options: NetworkOptions,
    extra: list[hosts.HostEntry],
    mappings: list[ports.PortMapping],
) -> Attachment:
    from minirun.network import netns
    from minirun.network.rtnl import Rtnl

    conf = settings.load(store)
    ep_path = state.endpoint_path(store, container_id)
    ns_path = netns.path_for(store, container_id)
    if os.path.exists(ep_path) or os.path.lexists(ns_path):
        raise Conflict(f"container {container_id[:12]} is attached to a network already", hint="detach it first")
    endpoint: dict[str, Any] = {
        "mode": modes.BRIDGE,
        "network": options.network,
        "netns": str(ns_path),
        "name": options.name,
        "hostname": options.hostname or container_id[:12],
        "aliases": list(options.aliases),
        "add_hosts": list(options.add_hosts),
        "hosts_path": options.hosts_path,
        "interfaces": [],
        "ports": [],
        "complete": False,
    }
    state.write(ep_path, endpoint)  # the intent, before anything exists: what detach reads after a crash
    warnings: list[str] = []
    try:
        netns.create(ns_path, loopback_up=False)
        with Rtnl() as rtnl:
            with state.lock(store):
                net = _network(store, network)
                iface, bridge_index, warnings = _join(
                    store, rtnl, conf, net, container_id, endpoint, 0, options.ip, options.aliases
                )
                published = _publish(store, conf, container_id, iface.ip, mappings)
                endpoint["ports"] = [m.as_dict() for m in published]
                state.write(ep_path, endpoint)
                peers = hostsfiles.members_of(store, [net.id]) if not net.default else set()
                hostsfiles.rewrite(store, peers - {container_id})
                content = hostsfiles.render_for(store, container_id, endpoint, extra)
                hostsfiles.write(options.hosts_path, content)
            _plumb(rtnl, str(ns_path), iface, bridge_index, default_route=True)
        endpoint["complete"] = True
        state.write(ep_path, endpoint)
    except BaseException:
        with contextlib.suppress(Exception):
            detach(store, container_id)
        raise
    return Attachment(
        container_id,
        modes.BRIDGE,
        netns_path=str(ns_path),
        interfaces=[iface],
        gateway=iface.gateway,
        hosts=content,
        resolv_conf=_resolv(options, False),
        ports=published,
        warnings=warnings,
    )


def _network(store: Store, ref: str) -> networks.Network:
    """The network to join (the caller holds the lock; the default one is defined on first use)."""
    if ref == networks.DEFAULT:
        return networks.ensure_default(store)
    return networks.get(store, ref)


def _join(
    store: Store,
    rtnl: Rtnl,
    conf: NetworkSettings,
    net: networks.Network,
    container_id: str,
    endpoint: dict[str, Any],
    slot: int,
    ip: str | None,
    aliases: list[str],
) -> tuple[Interface, int, list[str]]:
    """Under the lock: the bridge up, an address leased, the member and the endpoint recorded."""
    from minirun.network import bridge, ipam

    bridge_index, warnings = bridge.ensure(rtnl, net, conf.table)
    st_path = state.network_state_path(store, net.id)
    st = state.read(st_path, {"members": {}, "last": None})
    subnet = IPv4Network(net.subnet)
    leased = [m["ip"] for m in st["members"].values()]
    address = str(ipam.allocate(subnet, IPv4Address(net.gateway), leased, st.get("last"), ip))
    iface = Interface(
        ifname=f"eth{slot}",
        network=net.name,
        network_id=net.id,
        ip=address,
        prefixlen=subnet.prefixlen,
        gateway=net.gateway,
        mac=mac_for(address),
        veth=conf.veth_for(container_id, slot),
        bridge=net.bridge,
        mtu=net.mtu,
    )
    st["members"][container_id] = {
        "ip": address,
        "mac": iface.mac,
        "ifname": iface.ifname,
        "veth": iface.veth,
        "name": endpoint.get("name"),
        "aliases": list(aliases),
    }
    st["last"] = address
    state.write(st_path, st)
    endpoint["interfaces"].append(iface.as_dict())
    state.write(state.endpoint_path(store, container_id), endpoint)
    return iface, bridge_index, warnings


def _plumb(rtnl: Rtnl, ns_path: str, iface: Interface, bridge_index: int, *, default_route: bool) -> None:
    """The veth pair (host end on the bridge, `ethN` in the namespace), the address, loopback, the route."""
    from minirun.network.rtnl import Rtnl

    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        rtnl.add_veth(
            iface.veth, peer=iface.ifname, peer_netns_fd=fd, master=bridge_index, mtu=iface.mtu, peer_mac=iface.mac
        )
    finally:
        os.close(fd)
    broadcast = str(IPv4Network(f"{iface.ip}/{iface.prefixlen}", strict=False).broadcast_address)
    with Rtnl(netns=ns_path) as inner:
        index = inner.link_index(iface.ifname)
        if index is None:
            raise MiniError(f"{iface.ifname} did not appear in the container's network namespace")
        _ipv6_off(ns_path, iface.ifname)
        inner.add_address(index, iface.ip, iface.prefixlen, broadcast=broadcast)
        inner.set_up(index)
        if default_route:
            inner.set_up(1)
            inner.add_default_route(iface.gateway, index)


def _ipv6_off(ns_path: str, ifname: str) -> None:
    """IPv6 off on the container's interface (our networks are IPv4 only): otherwise it takes the router
    advertisements another container on the bridge sends (CAP_NET_RAW), and a route through that container.
    A sysctl under /proc/sys/net is the one of the network namespace the opening thread is in."""
    from minirun.network.rtnl import entered

    with (
        entered(ns_path),
        contextlib.suppress(FileNotFoundError),  # no IPv6 in this kernel, or off for the whole namespace
        open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f,
    ):
        f.write("1")


def _publish(
    store: Store, conf: NetworkSettings, container_id: str, address: str, mappings: list[ports.PortMapping]
) -> list[ports.PortMapping]:
    """Under the lock: host ports chosen and registered, DNAT rules in place."""
    if not mappings:
        return []
    from minirun.network import firewall
    from minirun.network.nft import Nft

    registry = state.read(state.ports_path(store), {})
    published = ports.assign(mappings, registry, container_id)
    state.write(state.ports_path(store), registry)
    with Nft() as nft:
        firewall.add_ports(nft, conf.table, container_id, address, published)
    return published


def _release_ports(store: Store, conf: NetworkSettings, container_id: str, *, firewall: bool) -> None:
    registry = state.read(state.ports_path(store), {})
    kept = {k: v for k, v in registry.items() if v != container_id}
    if kept != registry:
        state.write(state.ports_path(store), kept)
    if firewall:
        from minirun.network import firewall as fw
        from minirun.network.nft import Nft

        with Nft() as nft:
            fw.remove_tagged(nft, conf.table, fw.container_tag(container_id))


def _is_member_anywhere(store: Store, container_id: str) -> bool:
    return any(container_id in st.get("members", {}) for st in state.network_states(store).values())


def _leave(store: Store, network_id: str, container_id: str) -> None:
    st_path = state.network_state_path(store, network_id)
    st = state.read(st_path)
    if st is not None and st["members"].pop(container_id, None) is not None:
        state.write(st_path, st)


def _leave_all(store: Store, container_id: str) -> None:
    """Under the lock: off every network (leases released), peers' hosts files rewritten."""
    peers: set[str] = set()
    defaults = {n.id for n in networks.all_networks(store) if n.default}
    for network_id, st in state.network_states(store).items():
        if container_id in st.get("members", {}):
            if network_id not in defaults:
                peers |= set(st["members"])
            _leave(store, network_id, container_id)
    hostsfiles.rewrite(store, peers - {container_id})


def _sweep_veths(rtnl: Rtnl, stems: list[str]) -> None:
    for link in rtnl.links():
        name = link["name"] or ""
        if link["kind"] == "veth" and any(name.startswith(s) for s in stems):
            rtnl.delete_link(name)


def _bridge_endpoint(store: Store, container_id: str) -> dict[str, Any]:
    endpoint = state.read(state.endpoint_path(store, container_id))
    if endpoint is None or endpoint.get("mode") != modes.BRIDGE or not endpoint.get("complete"):
        raise ContainerNetworkError(
            f"container {container_id[:12]} has no bridge network attachment",
            hint="connect/disconnect work for running containers started on a bridge network",
        )
    return endpoint


class ContainerNetworkError(MiniError):
    """The container's network is not in a state that allows the operation."""


# -- container:ID -----------------------------------------------------------------------------------------------
def _share(store: Store, container_id: str, target: str, options: NetworkOptions) -> Attachment:
    check_container_id(target)  # the engine resolves names and prefixes; here only full IDs
    other = state.read(state.endpoint_path(store, target))
    if other is None or other.get("mode") != modes.BRIDGE or not other.get("complete"):
        raise NotFound(
            f"container {target[:12]} has no network namespace to share",
            hint="the container must be running on a bridge or user-defined network",
        )
    state.write(state.endpoint_path(store, container_id), {"mode": modes.CONTAINER, "shared_with": target})
    content = ""
    if other.get("hosts_path"):
        with contextlib.suppress(OSError), open(other["hosts_path"]) as f:
            content = f.read()
    if content:
        hostsfiles.write(options.hosts_path, content)
    interfaces = [Interface(**i) for i in other["interfaces"]]
    return Attachment(
        container_id,
        modes.CONTAINER,
        netns_path=other["netns"],
        interfaces=interfaces,
        gateway=interfaces[0].gateway if interfaces else None,
        hosts=content,
        resolv_conf=_resolv(options, False),
        shared_with=target,
    )

"""The default bridge network on the real kernel: namespaces, veths, addresses, traffic, cleanup."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from kits import netkit
from minicache.errors import Conflict
from minirun import network
from minirun.network import netns, state
from minirun.network.attachment import mac_for
from minirun.network.rtnl import Rtnl

pytestmark = pytest.mark.root


def test_netns_file_lifecycle(net):
    path = netns.path_for(net.store, net.cid())
    netns.create(path)
    try:
        assert netns.is_netns(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino  # a namespace of its own
        inside = netkit.links(str(path))
        assert list(inside) == ["lo"] and "UP" in inside["lo"]["flags"]
        with pytest.raises(Conflict):
            netns.create(path)
    finally:
        assert netns.remove(path)
    assert not os.path.lexists(path)
    assert netkit.mounts_under(net.store.root) == []
    assert netns.remove(path) is False


def test_two_containers_talk_over_the_default_bridge(net):
    a = net.attach()
    b = net.attach()
    try:
        assert a.mode == b.mode == "bridge"
        ia, ib = a.interfaces[0], b.interfaces[0]
        subnet = IPv4Network(f"{ia.ip}/{ia.prefixlen}", strict=False)
        assert IPv4Address(ib.ip) in subnet and ia.ip != ib.ip and a.gateway == b.gateway == ia.gateway
        assert subnet.subnet_of(IPv4Network("10.192.0.0/10")) and subnet.prefixlen == 24  # the test's pool

        # inside: lo and eth0 up, the leased address, the MAC derived from it, a default route via the gateway
        inside = netkit.links(a.netns_path)
        assert set(inside) == {"lo", "eth0"} and "UP" in inside["lo"]["flags"] and "UP" in inside["eth0"]["flags"]
        assert inside["eth0"]["address"] == ia.mac == mac_for(ia.ip)
        assert inside["eth0"]["mtu"] == 1500
        addrs = netkit.ip_json(a.netns_path, "-4", "addr", "show", "eth0")[0]["addr_info"]
        assert [(x["local"], x["prefixlen"]) for x in addrs] == [(ia.ip, ia.prefixlen)]
        routes = netkit.ip_json(a.netns_path, "-4", "route", "show", "default")
        assert routes == [{"dst": "default", "gateway": a.gateway, "dev": "eth0", "protocol": "static", "flags": []}]

        # on the host: the bridge holds the gateway address and both host ends of the veths
        host = netkit.links()
        bridge = ia.bridge
        assert bridge == f"{net.conf.bridge_prefix}0"
        assert host[ia.veth]["master"] == bridge and host[ib.veth]["master"] == bridge
        assert ia.veth.startswith(net.conf.veth_prefix) and len(ia.veth) <= 15
        gw = netkit.ip_json(None, "-4", "addr", "show", bridge)[0]["addr_info"]
        assert [(x["local"], x["prefixlen"]) for x in gw] == [(a.gateway, ia.prefixlen)]
        with open(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding") as f:
            assert f.read().strip() == "1"

        # traffic: TCP from b to a's address, ping both ways, both reach the gateway
        with netkit.Server(a.netns_path, 8080, "hello-from-a"):
            code, out = netkit.request(b.netns_path, ia.ip, 8080)
            assert code == 0 and out == f"hello-from-a {ib.ip}", out
        assert netkit.ping(b.netns_path, ia.ip) and netkit.ping(a.netns_path, ib.ip)
        assert netkit.ping(a.netns_path, a.gateway) and netkit.ping(b.netns_path, b.gateway)

        # the default network has no name resolution between members: hosts lists only the container itself
        hosts_a = Path(net.hosts_path(a.container_id)).read_text()
        assert f"{ia.ip}\t{a.container_id[:12]}" in hosts_a and ib.ip not in hosts_a
        assert a.hosts == hosts_a
        assert "127.0.0.1\tlocalhost" in hosts_a
        assert "nameserver 127." not in a.resolv_conf
    finally:
        network.detach(net.store, a.container_id)
        network.detach(net.store, b.container_id)
    # the veths, namespaces and leases are gone; the bridge stays until `network rm`
    host = netkit.links()
    assert ia.veth not in host and ib.veth not in host and ia.bridge in host
    assert not os.path.exists(a.netns_path)
    default = network.inspect_network(net.store, "bridge")
    assert default["Containers"] == {}
    network.remove_network(net.store, "bridge")
    assert ia.bridge not in netkit.links()
    assert netkit.nft_table(net.conf.table) is None


def test_detach_is_idempotent_and_a_noop_for_strangers(net):
    a = net.attach()
    network.detach(net.store, a.container_id)
    network.detach(net.store, a.container_id)
    network.detach(net.store, net.cid())
    assert net.our_links() == [f"{net.conf.bridge_prefix}0"]


def test_addresses_are_not_reused_at_once_and_gateway_never(net):
    first = net.attach()
    network.detach(net.store, first.container_id)
    second = net.attach()
    try:
        assert IPv4Address(second.interfaces[0].ip) == IPv4Address(first.interfaces[0].ip) + 1
        assert second.interfaces[0].ip != second.gateway
    finally:
        network.detach(net.store, second.container_id)


def test_attach_twice_is_refused_and_keeps_the_first(net):
    a = net.attach()
    try:
        with pytest.raises(Conflict):
            network.attach(net.store, a.container_id, network.NetworkOptions())
        assert netkit.ping(a.netns_path, a.gateway)
        assert state.read(state.endpoint_path(net.store, a.container_id))["complete"] is True
    finally:
        network.detach(net.store, a.container_id)


def test_none_and_host_modes_touch_nothing(net):
    cid = net.cid()
    none = net.attach(cid, network="none", add_hosts=["db:10.1.2.3"])
    assert none.netns_path is None and none.interfaces == [] and "10.1.2.3\tdb" in none.hosts
    host = net.attach(net.cid(), network="host")
    assert host.netns_path is None and host.mode == "host"
    assert host.hosts.startswith(Path("/etc/hosts").read_text().rstrip("\n"))
    assert host.resolv_conf == Path("/etc/resolv.conf").read_text().rstrip("\n") + "\n"
    assert net.our_links() == []
    network.detach(net.store, cid)


def test_container_mode_shares_the_namespace(net):
    a = net.attach(name="web")
    b_id = net.cid()
    try:
        b = network.attach(net.store, b_id, network.NetworkOptions(network=f"container:{a.container_id}"))
        assert b.netns_path == a.netns_path and b.shared_with == a.container_id
        assert [i.ip for i in b.interfaces] == [a.interfaces[0].ip]
        network.detach(net.store, b_id)  # leaves a's namespace alone
        assert netns.is_netns(a.netns_path) and netkit.ping(a.netns_path, a.gateway)
        with pytest.raises(Exception, match="no network namespace to share"):
            network.attach(net.store, b_id, network.NetworkOptions(network=f"container:{net.cid()}"))
    finally:
        network.detach(net.store, a.container_id)


def test_rtnl_link_index():
    """A lookup by name: the index, or None when the kernel says ENODEV."""
    with Rtnl() as rtnl:
        assert rtnl.link_index("lo") == 1 and rtnl.link_index("no-such-link") is None

"""User-defined networks: subnets that never shadow the host's, names through hosts files, isolation,
connect/disconnect of a running container's namespace."""

from __future__ import annotations

import os
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from kits import netkit
from minicache.errors import Conflict, InvalidSpec, NotFound
from minirun import network
from minirun.network import state

pytestmark = pytest.mark.root


def _free_subnet(net, third: int = 0) -> str:
    base = IPv4Network(net.conf.pool[0].split(":")[0])
    return str(list(base.subnets(new_prefix=24))[200 + third])


def test_subnets_never_shadow_host_routes_or_other_networks(net):
    # 192.0.2.0/24 is routed via the host's eth0 here; any host route will do: take one from the table.
    route = next(r for r in netkit.ip_json(None, "-4", "route", "show") if r["dst"] != "default" and "/" in r["dst"])
    inside = str(next(IPv4Network(route["dst"]).subnets(new_prefix=min(IPv4Network(route["dst"]).prefixlen + 1, 29))))
    with pytest.raises(Conflict, match=f"overlaps the host route {route['dst']}"):
        network.create_network(net.store, "clash", subnet=inside)
    one = network.create_network(net.store, "one", subnet=_free_subnet(net))
    with pytest.raises(Conflict, match="overlaps the network one"):
        network.create_network(net.store, "two", subnet=str(IPv4Network(one.subnet).supernet(new_prefix=20)))
    with pytest.raises(Conflict, match="already exists"):
        network.create_network(net.store, "one")
    for bad, message in [
        ("10.0.0.1/24", "host bits"),
        ("nonsense", "invalid subnet"),
        ("127.0.0.0/16", "loopback"),
        ("10.0.0.0/30", "between /8 and /29"),
    ]:
        with pytest.raises(InvalidSpec, match=message):
            network.create_network(net.store, "bad", subnet=bad)
    with pytest.raises(InvalidSpec, match="reserved"):
        network.create_network(net.store, "host")
    with pytest.raises(InvalidSpec, match="not a host address"):
        network.create_network(net.store, "gw", subnet=_free_subnet(net, 1), gateway="10.9.9.9")
    picked = network.create_network(net.store, "auto")  # from the pool: the first free /24
    assert IPv4Network(picked.subnet).prefixlen == 24 and not IPv4Network(picked.subnet).overlaps(
        IPv4Network(one.subnet)
    )
    assert picked.bridge.startswith(f"{net.conf.bridge_prefix}-") and len(picked.bridge) <= 15
    gw = network.create_network(net.store, "gw", subnet=_free_subnet(net, 2), gateway=None)
    assert gw.gateway == str(IPv4Network(gw.subnet).network_address + 1)
    assert net.our_links() == []  # definitions only: bridges come with the first member


def test_names_resolve_between_members_and_follow_joins_and_leaves(net):
    app = network.create_network(net.store, "app", subnet=_free_subnet(net))
    web = net.attach(network="app", name="web", aliases=["www"])
    db = net.attach(network="app", name="db")
    web_hosts = Path(net.hosts_path(web.container_id))
    inode = web_hosts.stat().st_ino
    late = None
    try:
        assert web.interfaces[0].bridge == app.bridge
        text = web_hosts.read_text()
        assert f"{db.interfaces[0].ip}\tdb {db.container_id[:12]}" in text  # db joined after web: rewritten
        db_text = Path(net.hosts_path(db.container_id)).read_text()
        assert f"{web.interfaces[0].ip}\tweb www {web.container_id[:12]}" in db_text

        with netkit.Server(db.netns_path, 5432, "db-here"):
            for name in ("db", db.container_id[:12]):
                code, out = netkit.request(web.netns_path, name, 5432, hosts_file=web_hosts)
                assert code == 0 and out == f"db-here {web.interfaces[0].ip}", out
        with netkit.Server(web.netns_path, 80, "web-here"):
            code, out = netkit.request(db.netns_path, "www", 80, hosts_file=Path(net.hosts_path(db.container_id)))
            assert code == 0 and out.startswith("web-here"), out

        late = net.attach(network="app", name="late")
        assert "\tlate " in web_hosts.read_text()
        network.detach(net.store, db.container_id)
        text = web_hosts.read_text()
        assert "\tdb " not in text and "\tlate " in text
        assert web_hosts.stat().st_ino == inode  # rewritten in place: a bind mount of it sees the change
        code, out = netkit.request(web.netns_path, "db", 5432, hosts_file=web_hosts)
        assert code == 3 and "resolve-error" in out
    finally:
        for a in (web, db, late):
            if a is not None:
                network.detach(net.store, a.container_id)
    assert network.inspect_network(net.store, "app")["Containers"] == {}
    assert app.bridge in netkit.links()  # the last member left; the bridge stays until `network rm`


def test_no_traffic_between_two_networks(net):
    network.create_network(net.store, "red", subnet=_free_subnet(net, 0))
    network.create_network(net.store, "blue", subnet=_free_subnet(net, 1))
    red1, red2 = net.attach(network="red"), net.attach(network="red")
    blue = net.attach(network="blue")
    try:
        with netkit.Server(blue.netns_path, 7000, "blue"), netkit.Server(red2.netns_path, 7000, "red2"):
            # on one network: fine; from the host to either: fine (routing works) ...
            assert netkit.request(red1.netns_path, red2.interfaces[0].ip, 7000)[0] == 0
            assert netkit.request(None, blue.interfaces[0].ip, 7000)[0] == 0
            assert netkit.ping(red1.netns_path, red2.interfaces[0].ip)
            # ... across networks: dropped by our forward rule, both ways
            code, out = netkit.request(red1.netns_path, blue.interfaces[0].ip, 7000, timeout=1.5)
            assert code != 0 and "timed out" in out, out
            assert not netkit.ping(red1.netns_path, blue.interfaces[0].ip)
            assert not netkit.ping(blue.netns_path, red1.interfaces[0].ip)
        drops = [r for r in netkit.nft_rules(net.conf.table) if r["chain"] == "forward"]
        assert len(drops) == 2 and all(r["comment"].startswith("net:") for r in drops)
    finally:
        for a in (red1, red2, blue):
            network.detach(net.store, a.container_id)


def test_connect_and_disconnect_a_running_container(net):
    network.create_network(net.store, "front", subnet=_free_subnet(net, 0))
    back = network.create_network(net.store, "back", subnet=_free_subnet(net, 1))
    proxy = net.attach(network="front", name="proxy")
    api = net.attach(network="back", name="api")
    hosts = Path(net.hosts_path(proxy.container_id))
    try:
        assert netkit.request(proxy.netns_path, api.interfaces[0].ip, 9000, timeout=1)[0] != 0
        iface = network.connect(net.store, proxy.container_id, "back", aliases=["gateway-proxy"])
        assert iface.ifname == "eth1" and IPv4Network(back.subnet).overlaps(IPv4Network(f"{iface.ip}/32"))
        assert set(netkit.links(proxy.netns_path)) == {"lo", "eth0", "eth1"}
        assert "\tapi " in hosts.read_text()
        api_hosts = Path(net.hosts_path(api.container_id)).read_text()
        assert f"{iface.ip}\tproxy gateway-proxy {proxy.container_id[:12]}" in api_hosts
        with netkit.Server(api.netns_path, 9000, "api"):
            code, out = netkit.request(proxy.netns_path, "api", 9000, hosts_file=hosts)
            assert code == 0 and out == f"api {iface.ip}", out
        with pytest.raises(Conflict, match="already connected"):
            network.connect(net.store, proxy.container_id, "back")

        network.disconnect(net.store, proxy.container_id, "back")
        assert set(netkit.links(proxy.netns_path)) == {"lo", "eth0"}
        assert iface.veth not in netkit.links()
        assert "\tapi " not in hosts.read_text()
        assert proxy.container_id not in network.inspect_network(net.store, "back")["Containers"]
        with pytest.raises(NotFound, match="not connected"):
            network.disconnect(net.store, proxy.container_id, "back")
        assert netkit.ping(proxy.netns_path, proxy.gateway)  # eth0 untouched
    finally:
        network.detach(net.store, proxy.container_id)
        network.detach(net.store, api.container_id)


def test_static_ip_and_network_rm_rules(net):
    app = network.create_network(net.store, "static", subnet=_free_subnet(net))
    wanted = str(IPv4Network(app.subnet).network_address + 77)
    a = net.attach(network="static", ip=wanted)
    try:
        assert a.interfaces[0].ip == wanted
        with pytest.raises(Conflict, match="already in use"):
            net.attach(network="static", ip=wanted)
        with pytest.raises(InvalidSpec, match="not a host address"):
            net.attach(network="static", ip="10.1.1.1")
        with pytest.raises(InvalidSpec, match="only for user-defined"):
            net.attach(ip=wanted)
        with pytest.raises(Conflict, match=r"has active endpoints \(1 container"):
            network.remove_network(net.store, "static")
    finally:
        network.detach(net.store, a.container_id)
    assert state.endpoint_ids(net.store) == [] and os.listdir(Path(net.store.run_root) / "netns") == []
    network.remove_network(net.store, "static")
    assert app.bridge not in netkit.links()
    with pytest.raises(NotFound, match="no such network"):
        network.remove_network(net.store, "static")

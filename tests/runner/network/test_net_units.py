"""Parsers and pure logic of minirun.network: -p/-P, --add-host, resolv.conf, IPAM, settings, modes."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from minicache.errors import Conflict, InvalidSpec
from minirun.network import hosts, ipam, modes, ports, resolv, settings
from minirun.network.ports import PortMapping


# -- ports -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [PortMapping(80, 0, "0.0.0.0", "tcp")]),
        ("8080:80", [PortMapping(80, 8080, "0.0.0.0", "tcp")]),
        ("127.0.0.1:8080:80/udp", [PortMapping(80, 8080, "127.0.0.1", "udp")]),
        ("127.0.0.1::80", [PortMapping(80, 0, "127.0.0.1", "tcp")]),
        ("8000-8001:80-81", [PortMapping(80, 8000), PortMapping(81, 8001)]),
        ("53-54/udp", [PortMapping(53, 0, protocol="udp"), PortMapping(54, 0, protocol="udp")]),
        ("9000-9010:80", [PortMapping(80, 9000, "0.0.0.0", "tcp", 9010)]),
    ],
)
def test_parse_publish(spec, expected):
    assert ports.parse_publish(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80/sctp", "invalid protocol"),
        ("0:80", "ports are 1-65535"),
        ("8080:70000", "ports are 1-65535"),
        ("80-70:80-70", "ranges low-high"),
        ("abc:80", "invalid host port"),
        ("1.2.3:80:80", "invalid host IP"),
        ("[::1]:80:80", "IPv6"),
        ("a:b:c:d", "invalid -p"),
        ("8000:80-81", "one host port cannot take a range"),
        ("8000-8002:80-81", "differ in length"),
    ],
)
def test_parse_publish_refuses(spec, message):
    with pytest.raises(InvalidSpec, match=message):
        ports.parse_publish(spec)


def test_publish_all_and_exposed_ports():
    published = [PortMapping(80, 8080)]
    out = ports.publish_all(["80/tcp", "443", "53/udp", "7/sctp", "6000-6001/tcp"], published)
    assert [(m.container_port, m.protocol, m.host_port) for m in out] == [
        (443, "tcp", 0),
        (53, "udp", 0),
        (6000, "tcp", 0),
        (6001, "tcp", 0),
    ]


def test_assign_picks_free_ports_and_refuses_clashes():
    registry = {"tcp/0.0.0.0/40000": "a" * 64}
    with pytest.raises(Conflict, match="container aaaaaaaaaaaa publishes it already"):
        ports.assign([PortMapping(80, 40000, "127.0.0.1")], dict(registry), "b" * 64)
    udp_same_port = ports.assign([PortMapping(53, 40000, "0.0.0.0", "udp")], dict(registry), "b" * 64)
    assert udp_same_port[0].host_port == 40000  # another protocol: no clash
    picked = ports.assign([PortMapping(80), PortMapping(81)], registry, "c" * 64)
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(low <= m.host_port <= high for m in picked) and picked[0].host_port != picked[1].host_port
    assert registry[picked[0].key()] == "c" * 64 and len(registry) == 3
    ranged = ports.assign([PortMapping(80, 41000, "0.0.0.0", "tcp", 41002)], {"tcp/0.0.0.0/41000": "x"}, "d")
    assert 41001 <= ranged[0].host_port <= 41002 and ranged[0].host_port_end == 0


# -- hosts and resolv.conf -------------------------------------------------------------------------------------------
def test_add_host_parsing():
    assert hosts.parse_add_host("db:10.0.0.5") == hosts.HostEntry("10.0.0.5", ["db"])
    assert hosts.parse_add_host("db=10.0.0.5") == hosts.HostEntry("10.0.0.5", ["db"])
    assert hosts.parse_add_host("v6:::1") == hosts.HostEntry("::1", ["v6"])
    assert hosts.parse_add_host("v6:[2001:db8::1]") == hosts.HostEntry("2001:db8::1", ["v6"])
    assert hosts.parse_add_host("gw:host-gateway").address == hosts.HOST_GATEWAY
    for bad in ("db", "db:", ":1.2.3.4", "db:999.1.1.1", "bad name:1.2.3.4", "db:nonsense"):
        with pytest.raises(InvalidSpec):
            hosts.parse_add_host(bad)


def test_hosts_render_and_rewrite_in_place(tmp_path):
    content = hosts.render(
        [hosts.HostEntry("10.0.0.2", ["abc", "web"])],
        [hosts.HostEntry("10.0.0.3", ["db", "0123456789ab"])],
        [hosts.HostEntry("1.2.3.4", ["extra"])],
    )
    assert content.splitlines() == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "1.2.3.4\textra",
        "10.0.0.2\tabc web",
        "10.0.0.3\tdb 0123456789ab",
    ]
    path = tmp_path / "hosts"
    hosts.write_in_place(path, content)
    inode = os.stat(path).st_ino
    hosts.write_in_place(path, "short\n")
    assert path.read_text() == "short\n" and os.stat(path).st_ino == inode


def test_resolv_conf_drops_loopback_servers(tmp_path):
    host = tmp_path / "resolv.conf"
    resolved = tmp_path / "resolved.conf"
    host.write_text("search example.org\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\noptions edns0\n")
    resolved.write_text("nameserver 10.9.9.9\n")
    out = resolv.render(host_file=str(host), resolved_file=str(resolved))
    assert out == "search example.org\nnameserver 10.1.1.1\noptions edns0\n"
    host.write_text("nameserver 127.0.0.53\nsearch lan\n")  # only a local stub: take what it forwards to
    assert resolv.render(host_file=str(host), resolved_file=str(resolved)) == "search lan\nnameserver 10.9.9.9\n"
    assert resolv.render(host_file=str(host), resolved_file=str(tmp_path / "none")) == "search lan\n"
    assert resolv.render(host_network=True, host_file=str(host)) == "nameserver 127.0.0.53\nsearch lan\n"
    out = resolv.render(dns=["9.9.9.9"], search=["a.b"], options=["ndots:2"], host_file=str(host))
    assert out == "nameserver 9.9.9.9\nsearch a.b\noptions ndots:2\n"
    with pytest.raises(InvalidSpec, match="invalid --dns"):
        resolv.render(dns=["dns.example"], host_file=str(host))


# -- IPAM ----------------------------------------------------------------------------------------------------------
def test_choose_subnet_skips_whatever_overlaps():
    pool = ipam.parse_pool(["10.50.0.0/16:24"])
    taken = [(IPv4Network("10.50.0.0/23"), "route"), (IPv4Network("10.50.2.128/25"), "network x")]
    assert ipam.choose_subnet(pool, taken) == IPv4Network("10.50.3.0/24")
    assert ipam.conflict(IPv4Network("10.50.2.0/24"), taken) == "network x"
    with pytest.raises(Conflict, match="no free subnet"):
        ipam.choose_subnet(ipam.parse_pool(["10.50.0.0/23:24"]), taken)
    for bad in ("10.0.0.0/16:8", "nonsense", "10.0.0.1/16:24"):
        with pytest.raises(InvalidSpec):
            ipam.parse_pool([bad])


def test_allocate_goes_on_from_the_last_lease_and_wraps():
    subnet, gw = IPv4Network("10.60.0.0/29"), IPv4Address("10.60.0.1")  # hosts .1-.6
    assert ipam.allocate(subnet, gw, [], None) == IPv4Address("10.60.0.2")
    assert ipam.allocate(subnet, gw, ["10.60.0.2"], "10.60.0.2") == IPv4Address("10.60.0.3")
    assert ipam.allocate(subnet, gw, ["10.60.0.3"], "10.60.0.5") == IPv4Address("10.60.0.6")
    assert ipam.allocate(subnet, gw, ["10.60.0.6"], "10.60.0.6") == IPv4Address("10.60.0.2")  # wrapped, skips gw
    full = [f"10.60.0.{i}" for i in range(2, 7)]
    with pytest.raises(Conflict, match="no free address"):
        ipam.allocate(subnet, gw, full, None)
    assert ipam.allocate(subnet, gw, [], None, "10.60.0.5") == IPv4Address("10.60.0.5")
    for wanted, message in [("10.60.0.1", "already in use"), ("10.60.0.7", "not a host"), ("10.61.0.2", "not a host")]:
        with pytest.raises((Conflict, InvalidSpec), match=message):
            ipam.allocate(subnet, gw, [], None, wanted)


def test_gateway_and_subnet_checks():
    assert ipam.gateway_for(IPv4Network("10.70.0.0/24")) == IPv4Address("10.70.0.1")
    assert ipam.gateway_for(IPv4Network("10.70.0.0/24"), "10.70.0.254") == IPv4Address("10.70.0.254")
    for gateway in ("10.70.0.0", "10.70.0.255", "10.71.0.1"):
        with pytest.raises(InvalidSpec, match="not a host address"):
            ipam.gateway_for(IPv4Network("10.70.0.0/24"), gateway)
    for bad in ("224.0.0.0/8", "169.254.0.0/16", "fd00::/64", "10.0.0.0/7"):
        with pytest.raises(InvalidSpec):
            ipam.parse_subnet(bad)


# -- settings, modes ---------------------------------------------------------------------------------------------------
def test_settings_names_fit_in_ifnamsiz():
    conf = settings.NetworkSettings(bridge_prefix="minibr", veth_prefix="mc")
    cid, nid = "a1" * 32, "b2" * 32
    assert conf.default_bridge == "minibr0"
    assert conf.bridge_for(nid) == "minibr-b2b2b2b2" and len(conf.bridge_for(nid)) == 15
    assert conf.veth_for(cid, 0) == "mca1a1a1a1a1a10" and len(conf.veth_for(cid, 9)) == 15
    long = settings.NetworkSettings(bridge_prefix="abcdefgh", veth_prefix="vwxyz")
    assert len(long.bridge_for(nid)) == 15 and len(long.veth_for(cid, 3)) == 15
    for bad in (
        {"table": "1bad"},
        {"bridge_prefix": "toolongname"},
        {"veth_prefix": "UPPER"},
        {"pool": ["nonsense"]},
    ):
        with pytest.raises(InvalidSpec):
            settings.NetworkSettings(**bad).check()


def test_settings_from_env_are_fixed_in_the_store(store):
    env = {"MINICONTAINER_NFT_TABLE": "other", "MINICONTAINER_SUBNET_POOL": "10.80.0.0/16:24, 10.81.0.0/16:20"}
    conf = settings.from_env(env)
    assert conf.table == "other" and conf.pool == ["10.80.0.0/16:24", "10.81.0.0/16:20"] and conf.veth_prefix == "mc"
    settings.save(store, conf)
    assert settings.load(store) == conf
    (Path(store.networks_dir) / "x.json").write_text("{}")  # a network exists: names cannot change any more
    with pytest.raises(InvalidSpec, match="cannot change while networks exist"):
        settings.save(store, settings.NetworkSettings(table="third"))
    settings.save(store, conf)  # the same settings again: fine


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", ("none", None)),
        ("host", ("host", None)),
        ("bridge", ("bridge", None)),
        ("default", ("bridge", None)),
        ("container:web", ("container", "web")),
        ("my-net", ("network", "my-net")),
    ],
)
def test_modes(text, expected):
    assert modes.parse(text) == expected


@pytest.mark.parametrize("text", ["container:", "bad name", "../x", ""])
def test_modes_refuse(text):
    with pytest.raises(InvalidSpec):
        modes.parse(text)


# -- hostile input: nothing reaches a file name, an interface name or a config line unchecked ---------------------
@pytest.mark.parametrize("bad", ["../../etc", "a" * 63, "A" * 64, "g" * 64, "", "a" * 64 + "/x"])
def test_container_ids_are_checked_before_anything_is_touched(store, bad):
    from minirun import network

    for call in (
        lambda: network.attach(store, bad),
        lambda: network.detach(store, bad),
        lambda: network.connect(store, bad, "bridge"),
        lambda: network.disconnect(store, bad, "bridge"),
    ):
        with pytest.raises(InvalidSpec, match="invalid container ID"):
            call()
    with pytest.raises(InvalidSpec, match="invalid container ID"):
        network.attach(store, "a" * 64, network.NetworkOptions(network=f"container:{bad or 'x'}"))
    assert os.listdir(store.networks_dir) == [] and os.listdir(store.run_networks_dir) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dns_search": ["evil.org\nnameserver 6.6.6.6"]}, "invalid --dns-search"),
        ({"dns_options": ["ndots:1 rotate"]}, "invalid --dns-option"),
        ({"dns": ["1.2.3.4\nnameserver 6.6.6.6"]}, "invalid --dns"),
        ({"add_hosts": ["a\nb:1.2.3.4"]}, "invalid host name"),
        ({"name": "web\n10.0.0.9 bank"}, "invalid container name"),
        ({"hostname": "x y"}, "invalid host name"),
        ({"aliases": ["ok", "not ok"]}, "invalid network alias"),
        ({"publish": ["8080:80/icmp"]}, "invalid protocol"),
        ({"network": "../../etc"}, "invalid network name"),
    ],
)
def test_option_values_cannot_inject_lines_or_paths(store, options, message):
    from minirun import network

    with pytest.raises(InvalidSpec, match=message):
        network.attach(store, "a" * 64, network.NetworkOptions(**options))
    assert os.listdir(store.run_networks_dir) == []

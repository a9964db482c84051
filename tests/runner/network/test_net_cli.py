"""`minirun network ...` as a user runs it (a subprocess against the test's store)."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from kits import netkit
from kits.runkit import minirun
from minirun import network
from minirun.engine.containers import ContainerStore

pytestmark = pytest.mark.root


def _subnet(net, n: int) -> str:
    return str(list(IPv4Network(net.conf.pool[0].split(":")[0]).subnets(new_prefix=24))[100 + n])


def test_create_ls_inspect_rm(net):
    root = Path(net.store.root)
    result = minirun(root, "network", "create", "--subnet", _subnet(net, 0), "--mtu", "1400", "backend")
    assert result.returncode == 0, result.stderr
    net_id = result.stdout.strip()
    assert len(net_id) == 64
    result = minirun(root, "network", "create", "frontend")
    assert result.returncode == 0, result.stderr

    ls = minirun(root, "network", "ls")
    assert ls.returncode == 0
    lines = ls.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "CONTAINERS"]
    backend = next(line.split() for line in lines if " backend " in line)
    assert backend[0] == net_id[:12] and backend[3] == _subnet(net, 0) and backend[-1] == "0"
    assert sorted(minirun(root, "network", "ls", "-q").stdout.split()) == sorted(
        n.id[:12] for n, _ in network.list_networks(net.store)
    )

    view = json.loads(minirun(root, "network", "inspect", "backend", net_id[:6]).stdout)
    assert [v["Name"] for v in view] == ["backend", "backend"]
    assert view[0]["IPAM"]["Config"] == [{"Subnet": _subnet(net, 0), "Gateway": str(IPv4Network(_subnet(net, 0))[1])}]
    assert view[0]["Options"]["com.docker.network.driver.mtu"] == "1400"

    a = net.attach(network="backend")
    try:
        assert netkit.links(a.netns_path)["eth0"]["mtu"] == 1400
        busy = minirun(root, "network", "rm", "backend")
        assert busy.returncode == 1
        assert busy.stderr.startswith("minirun: error: error while removing network: network backend id ")
        assert "disconnect or remove those containers first" in busy.stderr
        assert (
            json.loads(minirun(root, "network", "inspect", "backend").stdout)[0]["Containers"][a.container_id][
                "IPv4Address"
            ]
            == f"{a.interfaces[0].ip}/24"
        )
    finally:
        network.detach(net.store, a.container_id)
    result = minirun(root, "network", "rm", "backend", "nosuch", "frontend")
    assert result.returncode == 1
    assert result.stdout.split() == ["backend", "frontend"]
    assert result.stderr.strip() == "minirun: error: no such network: nosuch; list networks with `minirun network ls`"
    assert network.list_networks(net.store) == []
    assert net.our_links() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--subnet", "10.0.0.1/24", "x"], "host bits are set; did you mean 10.0.0.0/24?"),
        (["create", "--gateway", "10.0.0.1", "x"], "--gateway needs --subnet"),
        (["create", "bad name"], "invalid network name 'bad name'"),
        (["create", "none"], "'none' is a reserved network name"),
        (["inspect", "nosuch"], "no such network: nosuch"),
        (["connect", "bridge", "nosuch"], "No such container: nosuch"),
    ],
)
def test_errors_are_one_line_with_exit_1(net, args, message):
    result = minirun(net.store.root, "network", *args)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minirun: error: ") and message in lines[0], result.stderr


def test_connect_disconnect_and_prune(net):
    root = Path(net.store.root)
    assert minirun(root, "network", "create", "--subnet", _subnet(net, 2), "extra").returncode == 0
    assert minirun(root, "network", "create", "--subnet", _subnet(net, 3), "unused").returncode == 0
    containers = ContainerStore(net.store)
    web = containers.create({"Image": "none"}, name="web", durable=False)
    a = net.attach(web.id, name="web")
    ghost = net.attach()  # a container that no longer exists in the store: prune detaches it
    try:
        result = minirun(root, "network", "connect", "--alias", "w", "extra", "web")
        assert result.returncode == 0, result.stderr
        ifname, address = result.stdout.split()
        assert ifname == "eth1" and IPv4Network(address, strict=False) == IPv4Network(_subnet(net, 2))
        assert "eth1" in netkit.links(a.netns_path)
        result = minirun(root, "network", "connect", "extra", web.id[:8])
        assert result.returncode == 1 and "already connected to network extra" in result.stderr
        assert minirun(root, "network", "disconnect", "extra", "web").returncode == 0
        assert "eth1" not in netkit.links(a.netns_path)

        result = minirun(root, "network", "prune")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["Deleted", "Networks:", "extra", "unused"]
        assert network.endpoint(net.store, ghost.container_id) is None
        assert network.endpoint(net.store, web.id)["complete"] is True  # web exists: kept
        assert [n.name for n, _ in network.list_networks(net.store)] == ["bridge"]
    finally:
        network.detach(net.store, a.container_id)
        network.detach(net.store, ghost.container_id)
        containers.remove(web)

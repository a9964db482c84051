"""A process that dies in the middle of attach leaves debris; the next detach (or prune) removes it.

The death is injected: a subprocess replaces one step of attach with os._exit (fault injection, the
one place fakes are allowed); everything else is the real kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kits import netkit
from minirun import network
from minirun.network import netns, state

pytestmark = pytest.mark.root

CRASH = r"""
import os, sys
from minicache.store import Store
from minirun import network
from minirun.network import attachment as A, firewall, netns, rtnl

store, cid, point = Store(sys.argv[1]), sys.argv[2], sys.argv[3]

def die(*args, **kwargs):
    os._exit(9)

def then_die(step):
    def wrapper(*args, **kwargs):
        step(*args, **kwargs)
        os._exit(9)
    return wrapper

if point == "intent":
    netns.create = die  # the endpoint file is written, nothing else
elif point == "locked":
    A._publish = die  # inside the lock: namespace made, address leased, bridge up; dies holding the lock
elif point == "ports":
    firewall.add_ports = then_die(firewall.add_ports)  # DNAT rules in place, still under the lock
elif point == "veth":
    rtnl.Rtnl.add_veth = then_die(rtnl.Rtnl.add_veth)  # the veth pair exists, its container side unconfigured
network.attach(store, cid, network.NetworkOptions(publish=sys.argv[4:]))
"""


def _crash(net, point: str, *publish: str) -> str:
    cid = net.cid()
    result = subprocess.run(
        [sys.executable, "-c", CRASH, net.store.root, cid, point, *publish], capture_output=True, text=True
    )
    assert result.returncode == 9, result.stderr
    return cid


@pytest.mark.parametrize("point", ["intent", "locked", "ports", "veth"])
def test_detach_undoes_a_crashed_attach(net, point):
    cid = _crash(net, point, "127.0.0.1::80") if point == "ports" else _crash(net, point)
    endpoint = state.read(state.endpoint_path(net.store, cid))
    assert endpoint is not None and endpoint["complete"] is False
    ns_path = Path(netns.path_for(net.store, cid))
    assert netns.is_netns(ns_path) == (point != "intent")
    members = network.inspect_network(net.store, "bridge")["Containers"] if point != "intent" else {}
    assert (cid in members) == (point != "intent")
    veth = net.conf.veth_for(cid, 0)
    assert (veth in netkit.links()) == (point == "veth")
    tagged = [r for r in netkit.nft_rules(net.conf.table) if r.get("comment") == f"ctr:{cid}"]
    assert len(tagged) == (1 if point == "ports" else 0)

    network.detach(net.store, cid)

    assert state.endpoint_ids(net.store) == [] and not os.path.lexists(ns_path)
    assert veth not in netkit.links()
    assert [r for r in netkit.nft_rules(net.conf.table) if r.get("comment") == f"ctr:{cid}"] == []
    if point != "intent":
        assert network.inspect_network(net.store, "bridge")["Containers"] == {}
    assert state.read(state.ports_path(net.store), {}) == {}
    # the lock died with the process: the next attach goes through
    a = net.attach()
    assert netkit.ping(a.netns_path, a.gateway)
    network.detach(net.store, a.container_id)


def test_prune_removes_what_dead_containers_left(net):
    alive = net.attach(publish=["80"])
    dead = [_crash(net, "veth"), _crash(net, "ports", "81"), _crash(net, "locked")]
    bridge = alive.interfaces[0].bridge
    # an orphan veth on our bridge with our prefix, and no record at all
    orphan = net.conf.veth_for("f" * 64, 0)
    subprocess.run(
        ["ip", "link", "add", orphan, "master", bridge, "type", "veth", "peer", "name", orphan[:-1] + "p"], check=True
    )
    try:
        gone = network.prune(net.store, keep=[alive.container_id])
        assert sorted(gone) == sorted(dead)
        assert orphan not in netkit.links() and net.conf.veth_for(dead[0], 0) not in netkit.links()
        assert list(network.inspect_network(net.store, "bridge")["Containers"]) == [alive.container_id]
        comments = {r.get("comment") for r in netkit.nft_rules(net.conf.table) if r["chain"] == "ports"}
        assert comments == {f"ctr:{alive.container_id}"}
        assert set(state.read(state.ports_path(net.store)).values()) == {alive.container_id}
        assert netkit.ping(alive.netns_path, alive.gateway)  # the living one is untouched
    finally:
        subprocess.run(["ip", "link", "delete", orphan], capture_output=True)
        network.detach(net.store, alive.container_id)

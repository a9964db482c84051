"""Published ports (DNAT in our nftables table) and outbound masquerade, on the real kernel.

Traffic goes to 127.0.0.1 on the host or to addresses inside namespaces the test made; the "outside"
of the masquerade test is one more namespace of the test's, linked to the host by a veth pair of its own.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from ipaddress import IPv4Address

import pytest
from kits import netkit
from minicache.errors import Conflict, InvalidSpec
from minirun import network
from minirun.network import state

pytestmark = pytest.mark.root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_port_answers_on_host_loopback(net):
    port = _free_port()
    a = net.attach(publish=[f"127.0.0.1:{port}:80", "80/udp"])
    try:
        tcp, udp = a.ports
        assert (tcp.host_ip, tcp.host_port, tcp.container_port, tcp.protocol) == ("127.0.0.1", port, 80, "tcp")
        assert udp.protocol == "udp" and udp.host_ip == "0.0.0.0" and 32768 <= udp.host_port <= 60999
        with netkit.Server(a.netns_path, 80, "tcp-in-container"), netkit.Server(a.netns_path, 80, "udp", kind="udp"):
            code, out = netkit.request(None, "127.0.0.1", port)
            assert code == 0 and out.startswith("tcp-in-container "), out
            # the source the container sees is the gateway (loopback sources are masqueraded on our bridge)
            assert out.split()[1] == a.gateway
            code, out = netkit.request(None, "127.0.0.1", udp.host_port, kind="udp")
            assert code == 0 and out.startswith("udp "), out
        rules = [r for r in netkit.nft_rules(net.conf.table) if r["chain"] == "ports"]
        assert len(rules) == 2 and {r["comment"] for r in rules} == {f"ctr:{a.container_id}"}
        assert state.read(state.ports_path(net.store)) == {
            f"tcp/127.0.0.1/{port}": a.container_id,
            f"udp/0.0.0.0/{udp.host_port}": a.container_id,
        }
    finally:
        network.detach(net.store, a.container_id)
    assert [r for r in netkit.nft_rules(net.conf.table) if r["chain"] == "ports"] == []
    code, out = netkit.request(None, "127.0.0.1", port, timeout=1)
    assert code != 0 and "refused" in out.lower(), out


def test_publish_all_uses_the_image_exposed_ports(net):
    a = net.attach(publish=["8000:80"], publish_all=True, exposed_ports=["80/tcp", "443/tcp", "53/udp", "9/sctp"])
    try:
        got = sorted((m.container_port, m.protocol) for m in a.ports)
        assert got == [(53, "udp"), (80, "tcp"), (443, "tcp")]
        assert next(m for m in a.ports if m.container_port == 80).host_port == 8000  # -p wins over -P
    finally:
        network.detach(net.store, a.container_id)


def test_port_conflicts_are_refused_and_leave_nothing(net):
    port = _free_port()
    a = net.attach(publish=[f"{port}:80"])
    try:
        before = net.our_links()
        with pytest.raises(Conflict, match=f"container {a.container_id[:12]} publishes it already"):
            net.attach(publish=[f"127.0.0.1:{port}:81"])
        with socket.socket() as busy:  # a host service on the port: DNAT would shadow it
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            with pytest.raises(Conflict, match="in use on the host"):
                net.attach(publish=[f"{taken}:80"])
        assert net.our_links() == before  # the failed attaches rolled back: no veth, namespace or lease
        assert len(state.endpoint_ids(net.store)) == 1
        assert list(state.read(state.ports_path(net.store)).values()) == [a.container_id]
        with pytest.raises(InvalidSpec, match="cannot be published"):
            net.attach(network="host", publish=["80"])
    finally:
        network.detach(net.store, a.container_id)


def test_containers_reach_the_outside_masqueraded(net):
    """A container reaches an address beyond the host (here: a namespace behind a veth of the test's
    own), with the host's address as source: the outside needs no route back to our subnet."""
    h = secrets.token_hex(2)
    block = IPv4Address("198.18.0.0") + 4 * secrets.randbelow(1 << 14)  # one /30 of the RFC 2544 test range
    near, far_ip = str(block + 1), str(block + 2)
    outside = net.tmp / "outside"
    uplink, far = f"tu{h}", f"tf{h}"
    open(outside, "w").close()
    subprocess.run(["unshare", f"--net={outside}", "true"], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", uplink, "type", "veth", "peer", "name", far, "netns", str(outside)], check=True
        )
        subprocess.run(["ip", "addr", "add", f"{near}/30", "dev", uplink], check=True)
        subprocess.run(["ip", "link", "set", uplink, "up"], check=True)
        with open(f"/proc/sys/net/ipv4/conf/{uplink}/forwarding", "w") as f:
            f.write("1")  # our test interface only
        for cmd in (
            ["addr", "add", f"{far_ip}/30", "dev", far],
            ["link", "set", far, "up"],
            ["link", "set", "lo", "up"],
        ):
            subprocess.run(netkit.in_netns(str(outside), ["ip", *cmd]), check=True)
        a = net.attach()
        try:
            with netkit.Server(str(outside), 4000, "outside"):
                code, out = netkit.request(a.netns_path, far_ip, 4000)
                assert code == 0 and out == f"outside {near}", out  # not the container's address
        finally:
            network.detach(net.store, a.container_id)
    finally:
        subprocess.run(["ip", "link", "delete", uplink], check=False)
        subprocess.run(["umount", str(outside)], check=False)
        os.unlink(outside)


def test_containers_cannot_reach_the_host_loopback(net):
    """route_localnet=1 on our bridges (for ports published on 127.0.0.1) must not let a container send
    to services bound to the host's loopback (CVE-2020-8558). The 'container' plays the attacker with
    every capability: it routes 127.0.0.2 to the gateway itself. Without the guard rule the datagram
    arrives (checked by hand: flush the guard chain and it does); with it, it is dropped."""
    a = net.attach()
    try:
        inside = a.netns_path
        for cmd in (
            ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet"],  # the namespace's own /proc/sys/net
            ["ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
            ["ip", "route", "add", "127.0.0.2/32", "via", a.gateway, "dev", "eth0"],
        ):
            subprocess.run(netkit.in_netns(inside, cmd), check=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim:  # trusts its loopback address
            victim.bind(("127.0.0.2", 0))
            victim.settimeout(1.5)
            target = victim.getsockname()
            send = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', {target})"
            subprocess.run(netkit.in_netns(inside, [netkit.PY, "-c", send]), check=True)
            with pytest.raises(TimeoutError):
                victim.recvfrom(64)
        guard = [r for r in netkit.nft_rules(net.conf.table) if r["chain"] == "guard"]
        counted = [e["counter"]["packets"] for r in guard for e in r["expr"] if "counter" in e]
        assert counted[0] >= 1  # dropped by our guard rule (daddr 127.0.0.0/8), not by chance
    finally:
        network.detach(net.store, a.container_id)

"""20 attaches by separate processes at the same moment: distinct addresses, all reach one server."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kits import netkit
from minirun import network

pytestmark = pytest.mark.root

ATTACH = r"""
import sys
from minicache.store import Store
from minirun import network
store, cid = Store(sys.argv[1]), sys.argv[2]
sys.stdin.read()  # wait for the go: every process is loaded and starts attaching at once
a = network.attach(store, cid, network.NetworkOptions(network=sys.argv[3], hosts_path=sys.argv[4]))
print(a.interfaces[0].ip, a.netns_path)
"""
DETACH = (
    "import sys\nfrom minicache.store import Store\nfrom minirun import network\n"
    "network.detach(Store(sys.argv[1]), sys.argv[2])\n"
)


@pytest.mark.parametrize("which", ["bridge", "user"])
def test_twenty_concurrent_attaches(net, which):
    name = "bridge" if which == "bridge" else "crowd"
    if which == "user":
        network.create_network(net.store, "crowd")
    server = net.attach(network=name, name="server")
    ids = [net.cid() for _ in range(20)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ATTACH, net.store.root, cid, name, net.hosts_path(cid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cid in ids
    ]
    results = []
    try:
        for proc in procs:
            proc.stdin.close()
            proc.stdin = None  # communicate() must not flush it
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            ip, netns_path = out.split()
            results.append((ip, netns_path))
        ips = [ip for ip, _ in results]
        assert len(set(ips)) == 20 and server.interfaces[0].ip not in ips and server.gateway not in ips
        with netkit.Server(server.netns_path, 6000, "server"), ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda r: netkit.request(r[1], server.interfaces[0].ip, 6000), results))
        for (ip, _), (code, out) in zip(results, answers, strict=True):
            assert code == 0 and out == f"server {ip}", out
        if which == "user":  # every member's hosts file names all the others
            server_hosts = Path(net.hosts_path(server.container_id)).read_text()
            assert all(f"{ip}\t" in server_hosts for ip in ips)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        detaches = [subprocess.Popen([sys.executable, "-c", DETACH, net.store.root, cid]) for cid in ids]
        for proc in detaches:
            proc.wait(timeout=240)
        network.detach(net.store, server.container_id)
    assert network.inspect_network(net.store, name)["Containers"] == {}
    assert net.our_links() == [server.interfaces[0].bridge]

"""Networking wired into real containers: `minirun run -d` of the busybox image, the seed demo and more.

Every container runs in a store whose network names and subnet pool are the test's own (the `net`
fixture), so the host's real default network is never touched; traffic goes between containers of the
test, to their gateway, or to 127.0.0.1 on the host. After each test `ctr` removes the containers
(`rm -f`) and `net` checks that no veth, bridge, nftables table, namespace file or lease is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from kits import netkit
from kits.lifecyclekit import _subreaper, alive, reaper, state_file, wait_until  # noqa: F401 - fixtures
from kits.runkit import MINIRUN, minirun, no_leaks  # noqa: F401 - fixture

pytestmark = pytest.mark.root

SERVE = ["busybox", "httpd", "-f", "-p", "7000", "-h", "/etc"]  # serves the container's /etc over HTTP
DEFAULT = {"MINICONTAINER_DEFAULT_NETWORK": ""}  # the real default (bridge), not the test suite's none


class Ctr:
    def __init__(self, net, image: str) -> None:
        self.net = net
        self.root = Path(net.store.root)
        self.image = image

    def run(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return minirun(self.root, *args, env={**DEFAULT, **(env or {})}, timeout=timeout)

    def ok(self, *args: str, **kw) -> str:
        result = self.run(*args, **kw)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def detached(self, *args: str) -> str:
        """`run -d [ARGS] IMAGE CMD...` (flags before the image, command after a `--`-free split)."""
        flags, cmd = _split(args)
        return self.ok("run", "-d", *flags, self.image, *cmd).strip()

    def inspect(self, ref: str) -> dict:
        (doc,) = json.loads(self.ok("inspect", ref))
        return doc

    def ip(self, ref: str) -> str:
        return self.inspect(ref)["NetworkSettings"]["IPAddress"]

    def sh(self, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
        """A foreground `run --rm [FLAGS] IMAGE sh -c SCRIPT`."""
        return self.run("run", "--rm", *flags, self.image, "sh", "-c", script)

    def wait_serving(self, ip: str, *flags: str) -> None:
        wait_until(lambda: self.sh(f"wget -qO- http://{ip}:7000/hostname", *flags).returncode == 0, 10, "httpd")


def _split(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if "--" in args:
        i = args.index("--")
        return list(args[:i]), list(args[i + 1 :])
    return list(args), SERVE


@pytest.fixture
def ctr(net, busybox_image):
    helper = Ctr(net, busybox_image)
    yield helper
    ids = [n for n in os.listdir(helper.root / "containers") if len(n) == 64]
    if ids:
        result = minirun(helper.root, "rm", "-f", *ids)
        assert result.returncode == 0, result.stderr


def _veths(net) -> list[str]:
    return [n for n in net.our_links() if n.startswith(net.conf.veth_prefix)]


def test_seed_demo_two_containers_on_the_default_bridge(ctr, net):
    server = ctr.detached("--name", "srv")
    doc = ctr.inspect("srv")
    ns = doc["NetworkSettings"]
    assert doc["HostConfig"]["NetworkMode"] == "bridge"
    ip, gateway = ns["IPAddress"], ns["Gateway"]
    subnet = IPv4Network(f"{ip}/{ns['IPPrefixLen']}", strict=False)
    assert subnet.subnet_of(IPv4Network("10.192.0.0/10")) and IPv4Address(gateway) in subnet  # the test's pool
    assert ns["Bridge"] == f"{net.conf.bridge_prefix}0" and set(ns["Networks"]) == {"bridge"}
    assert ns["MacAddress"] == ns["Networks"]["bridge"]["MacAddress"] and ns["SandboxKey"].endswith(server)
    ctr.wait_serving(ip)

    # the client: TCP to the server's address, ping it and the gateway; its own address is another one
    out = ctr.sh(
        f"wget -qO- http://{ip}:7000/hostname && ping -c1 -W2 {ip} && ping -c1 -W2 {gateway} && ip -4 -o addr show eth0"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == server[:12]  # the server's /etc/hostname, served over TCP
    assert out.stdout.count("1 packets received") == 2
    client_ip = out.stdout.split(" inet ")[1].split("/")[0]
    assert client_ip != ip and IPv4Address(client_ip) in subnet

    # exec joins the container's network namespace; /etc/hosts names the container itself
    assert f"inet {ip}/" in ctr.ok("exec", "srv", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"{ip}\t{server[:12]} srv" in ctr.ok("exec", "srv", "cat", "/etc/hosts")
    assert len(_veths(net)) == 1  # the --rm client's veth went with it


def test_names_resolve_on_a_user_network_and_networks_are_isolated(ctr, net):
    ctr.ok("network", "create", "front")
    ctr.ok("network", "create", "back")
    web = ctr.detached("--name", "web", "--network", "front", "--network-alias", "www")
    ip = ctr.ip("web")
    ctr.wait_serving(ip, "--network", "front")
    out = ctr.sh(
        f"wget -qO- http://web:7000/hostname && wget -qO- http://www:7000/hostname && ping -c1 -W2 {web[:12]}",
        "--network",
        "front",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [web[:12], web[:12]] and f"({ip})" in out.stdout

    # from another network: neither the address nor the name
    script = f"echo | nc -w 2 {ip} 7000; echo rc=$?; ping -c1 -W1 {ip}; echo rc=$?"  # (busybox wget -T crashes)
    out = ctr.sh(script, "--network", "back")
    assert out.stdout.split().count("rc=1") == 2, out.stdout
    assert ctr.sh("ping -c1 -W1 web", "--network", "back").returncode != 0
    # nor from the default bridge
    assert ctr.sh(f"echo | nc -w 2 {ip} 7000").returncode != 0

    # a network in use cannot be removed; an unused one can
    busy = ctr.run("network", "rm", "front")
    assert busy.returncode == 1 and "error while removing network: network front id" in busy.stderr
    assert "has active endpoints" in busy.stderr
    ctr.ok("rm", "-f", "web")
    ctr.ok("network", "rm", "front", "back")


def test_published_port_answers_on_the_hosts_loopback(ctr, net):
    ctr.detached("--name", "pub", "-p", "127.0.0.1::7000")
    ports = ctr.inspect("pub")["NetworkSettings"]["Ports"]
    (binding,) = ports["7000/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    host_port = int(binding["HostPort"])
    row = json.loads(ctr.ok("ps", "--format", "json").splitlines()[0])
    assert row["Ports"] == f"127.0.0.1:{host_port}->7000/tcp"

    def fetch() -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", host_port), timeout=2) as s:
                s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data
        except OSError:
            return None

    data = wait_until(fetch, 10, "the published port")
    assert data.startswith(b"HTTP/1.") and data.rstrip().endswith(ctr.inspect("pub")["Id"][:12].encode())
    ctr.ok("rm", "-f", "pub")
    table = netkit.nft_table(net.conf.table)
    assert table is None or str(host_port) not in json.dumps(table)  # the DNAT rule went with the container
    assert fetch() is None


def test_twenty_containers_started_concurrently_get_distinct_addresses(ctr, net):
    ctr.detached("--name", "hub")
    hub = ctr.ip("hub")
    ctr.wait_serving(hub)
    script = f"ip -4 -o addr show eth0 && wget -qO- http://{hub}:7000/hostname"
    procs = [
        subprocess.Popen(
            [MINIRUN, "--root", str(ctr.root), "run", "--rm", ctr.image, "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **DEFAULT},
        )
        for _ in range(20)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [err for _, err in outputs]
    addresses = {out.split(" inet ")[1].split("/")[0] for out, _ in outputs}
    assert len(addresses) == 20 and hub not in addresses
    hub_id = ctr.inspect("hub")["Id"][:12]
    assert all(out.splitlines()[-1] == hub_id for out, _ in outputs)
    assert len(_veths(net)) == 1  # only the hub's


def test_stop_detaches_and_start_attaches_again(ctr, net):
    ctr.detached("--name", "svc", "-p", "127.0.0.1::7000")
    assert len(_veths(net)) == 1
    ctr.ok("stop", "-t", "0", "svc")
    assert _veths(net) == []
    doc = ctr.inspect("svc")
    assert doc["NetworkSettings"]["IPAddress"] == "" and doc["NetworkSettings"]["Ports"] == {}
    assert "1" not in ctr.ok("network", "ls").split("\n", 1)[1].split()[-1:]  # no member left on bridge
    ctr.ok("start", "svc")
    ip = ctr.ip("svc")
    ctr.wait_serving(ip)
    assert len(_veths(net)) == 1 and ctr.inspect("svc")["NetworkSettings"]["Ports"]["7000/tcp"]
    ctr.ok("restart", "-t", "0", "svc")
    ctr.wait_serving(ctr.ip("svc"))
    assert len(_veths(net)) == 1


def test_rm_f_cleans_what_a_crashed_container_left(ctr, net):
    cid = ctr.detached("--name", "doomed", "-p", "127.0.0.1::7000")
    state = state_file(ctr.root, cid)
    for pid in (state["MonitorPid"], state["Pid"]):  # the monitor and the container die without cleaning up
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(state["Pid"]), 10, "the container's death")
    assert len(_veths(net)) == 1 and (Path(net.store.root) / "run" / "netns" / cid).exists()
    ctr.ok("rm", "-f", "doomed")
    assert _veths(net) == [] and not (Path(net.store.root) / "run" / "netns").joinpath(cid).exists()


def test_container_mode_connect_and_disconnect(ctr, net):
    ctr.detached("--name", "base")
    ip = ctr.ip("base")
    ctr.wait_serving(ip)
    # --network container:base shares base's namespace: its address, its server on localhost
    out = ctr.sh("ip -4 -o addr show eth0 && wget -qO- http://127.0.0.1:7000/hostname", "--network", "container:base")
    assert out.returncode == 0 and f"inet {ip}/" in out.stdout, out.stderr
    # connect a running container to a user network: eth1 there, peers resolve it; then disconnect
    ctr.ok("network", "create", "extra")
    assert ctr.ok("network", "connect", "extra", "base").startswith("eth1 ")
    extra_ip = ctr.inspect("base")["NetworkSettings"]["Networks"]["extra"]["IPAddress"]
    assert f"inet {extra_ip}/" in ctr.ok("exec", "base", "ip", "-4", "-o", "addr", "show", "eth1")
    out = ctr.sh("wget -qO- http://base:7000/hostname", "--network", "extra")
    assert out.returncode == 0, out.stderr
    ctr.ok("network", "disconnect", "extra", "base")
    assert "eth1" not in ctr.ok("exec", "base", "ip", "-o", "link")
    ctr.ok("network", "rm", "extra")


def test_none_and_host_modes_make_no_interface(ctr, net):
    out = ctr.sh("ip -o link", "--network", "none")
    assert out.returncode == 0 and [ln.split(":")[1].strip() for ln in out.stdout.splitlines()] == ["lo"]
    out = ctr.sh(
        "cat /etc/hosts /etc/resolv.conf", "--network", "none", "--add-host", "db:10.1.2.3", "--dns", "10.9.9.9"
    )
    assert "10.1.2.3\tdb" in out.stdout and "nameserver 10.9.9.9" in out.stdout
    assert ctr.ok("run", "--rm", "--network", "host", ctr.image, "hostname").strip() == os.uname().nodename
    assert net.our_links() == []  # not even the default bridge was made


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--network", "none", "-p", "80"], "conflicting options: port publishing"),
        (["--network", "bridge", "--ip", "10.1.1.1"], "only for user defined networks"),
        (["-p", "99999:80"], "ports are 1-65535"),
        (["--add-host", "nocolon"], "--add-host"),
        (["--network", "nosuch"], "no such network: nosuch"),
    ],
)
def test_bad_network_flags_are_refused_before_anything_is_made(ctr, net, flags, message):
    result = ctr.run("run", "--rm", *flags, ctr.image, "true")
    assert result.returncode == 125 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert [n for n in os.listdir(ctr.root / "containers") if len(n) == 64] == []


def test_hostname_and_dns_flags_shape_the_containers_files(ctr, net):
    out = ctr.sh("cat /etc/hostname /etc/resolv.conf; hostname", "-h", "box", "--dns", "10.0.0.53")
    assert out.returncode == 0 and out.stdout.split() == ["box", "nameserver", "10.0.0.53", "box"]
    assert _veths(net) == []  # the --rm container's veth went with it

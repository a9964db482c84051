"""A container holds CAP_NET_RAW by default, so it can send IPv6 router advertisements onto its bridge. The
host took them (the bridge had IPv6 on, accept_ra=1 and no forwarding): it gave itself the announced
address and on-link route, and would take a default route through the container, so the host's own IPv6
traffic went to the container (the shape of CVE-2020-10749 and CVE-2020-13401). Our networks are IPv4
only: IPv6 is off on their bridges, and a bridge an older version left with it on is switched off when
next used. The advertisement is sent from the container's network namespace (the container's image has no
tool for it), to the bridge the test made.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits.runkit import (
    container_ids,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
)
from minicache.store import Store

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridges, netns)")]

BRIDGE_NETWORK = {"MINICONTAINER_DEFAULT_NETWORK": ""}  # the real default (a bridge), not the suite's none
PREFIX = "2001:db8:77:1::"  # documentation prefix

SEND_RA = r"""
import ctypes, os, socket, struct, sys
pid, prefix = int(sys.argv[1]), sys.argv[2]
fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
assert ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) == 0, "setns"
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
ifindex = socket.if_nametoindex("eth0")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)  # router lifetime 0: no default route
pio = struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 60, 30, 0, socket.inet_pton(socket.AF_INET6, prefix))
for _ in range(100):  # until eth0's link-local address is past duplicate address detection
    try:
        s.sendto(ra + pio, ("ff02::1", 0, 0, ifindex))
        break
    except OSError:
        __import__("time").sleep(0.1)
else:
    sys.exit("eth0 never had a usable link-local address")
"""


@pytest.fixture
def bridge_store(store: Store) -> Iterator[tuple[Path, str]]:
    """A store whose networks have names and a subnet of their own; its default bridge's name."""
    from minirun import network
    from minirun.network import settings

    h = secrets.token_hex(2)
    conf = settings.save(
        store,
        settings.NetworkSettings(
            table=f"mcra{h}",
            bridge_prefix=f"tr{h}",
            veth_prefix=f"tw{h[:3]}",
            pool=[f"10.{200 + secrets.randbelow(51)}.0.0/16:24"],
        ),
    )
    try:
        yield Path(store.root), f"{conf.bridge_prefix}0"
    finally:
        for cid in container_ids(store.root):
            minirun(store.root, "rm", "-f", cid)
        with contextlib.suppress(Exception):
            network.prune(store, keep=[])
        for net, _count in network.list_networks(store):
            network.remove_network(store, net.id)
        subprocess.run(["ip", "link", "delete", f"{conf.bridge_prefix}0"], capture_output=True, check=False)


def _advertise_from(root: Path, name: str) -> None:
    """One router advertisement from container `name`. Its interface has IPv6 off, which stops no one with
    CAP_NET_RAW: a packet socket sends the same frame. The test turns IPv6 on again in the sender's
    namespace to let the kernel build the packet."""
    (doc,) = json.loads(minirun(root, "inspect", name).stdout)
    subprocess.run(
        ["nsenter", f"--net=/proc/{doc['State']['Pid']}/ns/net", "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"],
        check=True,
    )
    sent = subprocess.run(
        [sys.executable, "-c", SEND_RA, str(doc["State"]["Pid"]), PREFIX], capture_output=True, text=True
    )
    shown = subprocess.run(
        ["nsenter", f"--net=/proc/{doc['State']['Pid']}/ns/net", "ip", "-6", "addr"], capture_output=True, text=True
    ).stdout
    assert sent.returncode == 0, sent.stderr + shown


def _ipv6_of(bridge: str) -> str:
    return subprocess.run(["ip", "-6", "addr", "show", "dev", bridge], capture_output=True, text=True).stdout


def _taken(bridge: str) -> bool:
    deadline = time.monotonic() + 2  # the kernel configures the address as the advertisement arrives
    while time.monotonic() < deadline:
        if PREFIX.rstrip(":") in _ipv6_of(bridge):
            return True
        time.sleep(0.1)
    return False


def test_the_host_takes_no_router_advertisement_from_a_container(
    bridge_store: tuple[Path, str], busybox_image: str
) -> None:
    root, bridge = bridge_store
    made = minirun(root, "run", "-d", "--name", "ra1", busybox_image, "sleep", "300", env=BRIDGE_NETWORK)
    assert made.returncode == 0, made.stderr
    assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").read_text().strip() == "1"
    _advertise_from(root, "ra1")
    assert not _taken(bridge), _ipv6_of(bridge)

    # A bridge an older version made, with IPv6 on: switched off when the next container joins it.
    Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").write_text("0")
    made = minirun(root, "run", "-d", "--name", "ra2", busybox_image, "sleep", "300", env=BRIDGE_NETWORK)
    assert made.returncode == 0, made.stderr
    _advertise_from(root, "ra2")
    assert not _taken(bridge), _ipv6_of(bridge)


def test_a_container_takes_no_router_advertisement_from_another(
    bridge_store: tuple[Path, str], busybox_image: str
) -> None:
    """The shape of CVE-2020-13401: the victim would route its IPv6 traffic through the sender."""
    root, _bridge = bridge_store
    for name in ("sender", "victim"):
        made = minirun(root, "run", "-d", "--name", name, busybox_image, "sleep", "300", env=BRIDGE_NETWORK)
        assert made.returncode == 0, made.stderr
    _advertise_from(root, "sender")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        shown = minirun(root, "exec", "victim", "ip", "-6", "addr").stdout
        assert PREFIX.rstrip(":") not in shown, shown
        time.sleep(0.2)
    victim = minirun(root, "exec", "victim", "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    assert victim.stdout.strip() == "1", victim.stderr

"""minirun.network.netlink's messages, byte for byte against pyroute2's encoding of the same requests.

pyroute2 is a test dependency only: the product encodes these few messages itself so that a bridge-mode
start never imports it.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

import pytest
from minirun.network import netlink as nl

pytest.importorskip("pyroute2")
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

REQ_ACK_CREATE_EXCL = 0x1 | 0x4 | 0x400 | 0x200


def _pyroute2(msg, msg_type: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def _link(index: int = 0, attrs: list | None = None, *, up: bool | None = None):
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["flags"] = nl.IFF_UP if up else 0
    msg["change"] = nl.IFF_UP if up is not None else 0
    msg["attrs"] = attrs or []
    return msg


def _without_nested_flag(data: bytes, prefix: int) -> tuple[bytes, int]:
    """`data` with NLA_F_NESTED cleared at every level, and how many attributes carried it.

    We flag nested attributes as iproute2 does; pyroute2 leaves the flag off and the kernel accepts both, so
    the comparison is on everything else. A VETH_INFO_PEER payload opens with the peer's ifinfomsg.
    """
    out, flagged, offset = bytearray(data[:prefix]), 0, prefix
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        payload = data[offset + 4 : offset + length]
        if kind & nl.NLA_F_NESTED:
            inner = nl.IFINFO.size if kind & ~nl.NLA_F_NESTED == nl.VETH_INFO_PEER and len(payload) > 16 else 0
            payload, count = _without_nested_flag(payload, inner)
            flagged += 1 + count
        out += struct.pack("=HH", length, kind & ~nl.NLA_F_NESTED) + payload
        end = offset + ((length + 3) & ~3)
        out += data[offset + length : end]
        offset = end
    return bytes(out), flagged


def _same(ours: bytes, theirs: bytes, fixed: int, *, nested: int = 0) -> None:
    """`ours` equals pyroute2's `theirs` but for NLA_F_NESTED, set on exactly `nested` attributes."""
    head = nl.HEADER.size + fixed
    body, flagged = _without_nested_flag(ours[head:], 0)
    assert ours[:head] + body == theirs, (ours.hex(), theirs.hex())
    assert flagged == nested


def test_new_bridge_matches_pyroute2():
    attrs = [("IFLA_IFNAME", "mc-br0"), ("IFLA_MTU", 1500), ("IFLA_ADDRESS", "02:42:ac:11:00:01")]
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]}))
    theirs = _pyroute2(_link(attrs=attrs, up=True), 16, REQ_ACK_CREATE_EXCL, 7)
    ours = nl.message(16, REQ_ACK_CREATE_EXCL, 7, nl.new_bridge("mc-br0", mtu=1500, mac="02:42:ac:11:00:01"))
    _same(ours, theirs, nl.IFINFO.size, nested=1)


@pytest.mark.parametrize("peer_mac", [None, "02:42:0a:58:00:05"])
def test_new_veth_matches_pyroute2(peer_mac):
    peer = [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 9), ("IFLA_MTU", 1400)]
    if peer_mac:
        peer.append(("IFLA_ADDRESS", peer_mac))
    info = {
        "attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}),
        ]
    }
    attrs = [("IFLA_IFNAME", "mcv0123456789"), ("IFLA_MTU", 1400), ("IFLA_MASTER", 42), ("IFLA_LINKINFO", info)]
    theirs = _pyroute2(_link(attrs=attrs, up=True), 16, REQ_ACK_CREATE_EXCL, 3)
    body = nl.new_veth("mcv0123456789", peer="eth0", peer_netns_fd=9, master=42, mtu=1400, peer_mac=peer_mac)
    _same(nl.message(16, REQ_ACK_CREATE_EXCL, 3, body), theirs, nl.IFINFO.size, nested=3)


@pytest.mark.parametrize(
    ("msg_type", "flags", "index", "attrs", "up"),
    [
        (18, 0x5, 0, [("IFLA_IFNAME", "lo")], None),  # get by name
        (18, 0x301, 0, [], None),  # dump
        (16, 0x5, 7, [], True),  # set up
        (17, 0x5, 0, [("IFLA_IFNAME", "mcv0123456789")], None),  # delete by name
    ],
)
def test_link_requests_match_pyroute2(msg_type, flags, index, attrs, up):
    theirs = _pyroute2(_link(index, attrs, up=up), msg_type, flags, 11)
    ours_attrs = [(nl.IFLA_IFNAME, value) for _name, value in attrs]
    ours = nl.message(msg_type, flags, 11, nl.link_request(index, ours_attrs, up=up))
    assert ours == theirs


@pytest.mark.parametrize("broadcast", [None, "10.88.0.255"])
def test_new_address_matches_pyroute2(broadcast):
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = 24
    msg["index"] = 5
    msg["attrs"] = [("IFA_LOCAL", "10.88.0.5"), ("IFA_ADDRESS", "10.88.0.5")]
    if broadcast:
        msg["attrs"].append(("IFA_BROADCAST", broadcast))
    theirs = _pyroute2(msg, 20, REQ_ACK_CREATE_EXCL, 2)
    assert nl.message(20, REQ_ACK_CREATE_EXCL, 2, nl.new_address(5, "10.88.0.5", 24, broadcast=broadcast)) == theirs


def test_default_route_and_route_dump_match_pyroute2():
    msg = rtmsg()
    msg["family"] = socket.AF_INET
    msg["dst_len"] = 0
    msg["table"] = nl.RT_TABLE_MAIN
    msg["proto"] = nl.RTPROT_STATIC
    msg["scope"] = nl.RT_SCOPE_UNIVERSE
    msg["type"] = nl.RTN_UNICAST
    msg["attrs"] = [("RTA_GATEWAY", "10.88.0.1"), ("RTA_OIF", 5)]
    theirs = _pyroute2(msg, 24, REQ_ACK_CREATE_EXCL, 4)
    assert nl.message(24, REQ_ACK_CREATE_EXCL, 4, nl.default_route("10.88.0.1", 5)) == theirs
    dump = rtmsg()
    dump["family"] = socket.AF_INET
    assert nl.message(26, 0x301, 5, nl.route()) == _pyroute2(dump, 26, 0x301, 5)


def test_link_and_route_replies_decode_like_pyroute2():
    """pyroute2 encodes a link and a route; our parsers read back what rtnl's callers use."""
    attrs = [("IFLA_IFNAME", "mcv0"), ("IFLA_MTU", 1400), ("IFLA_MASTER", 42), ("IFLA_ADDRESS", "02:42:0a:58:00:05")]
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}))
    link = _link(9, attrs, up=True)
    data = _pyroute2(link, 16, 0x2, 1)
    assert nl.parse_link(data[nl.HEADER.size :]) == {
        "name": "mcv0",
        "index": 9,
        "kind": "veth",
        "master": 42,
        "flags": nl.IFF_UP,
        "mtu": 1400,
        "address": "02:42:0a:58:00:05",
    }
    msg = rtmsg()
    msg["family"] = socket.AF_INET
    msg["dst_len"] = 16
    msg["table"] = nl.RT_TABLE_MAIN
    msg["type"] = nl.RTN_UNICAST
    msg["attrs"] = [("RTA_TABLE", 1000), ("RTA_DST", "10.88.0.0"), ("RTA_OIF", 5)]
    route = nl.parse_route(_pyroute2(msg, 24, 0x2, 1)[nl.HEADER.size :])
    assert route == {"dst": "10.88.0.0", "dst_len": 16, "table": 1000, "oif": 5, "type": nl.RTN_UNICAST}
    msg = rtmsg()  # a fresh one: pyroute2 keeps what an encoded message once held
    msg["family"] = socket.AF_INET
    msg["table"] = nl.RT_TABLE_MAIN
    msg["attrs"] = [("RTA_OIF", 5)]
    default = nl.parse_route(_pyroute2(msg, 24, 0x2, 1)[nl.HEADER.size :])
    assert default["dst"] is None and default["table"] == nl.RT_TABLE_MAIN and default["oif"] == 5


def test_truncated_attributes_are_ignored_not_overread():
    good = nl.encode_attrs([(nl.IFLA_IFNAME, "eth0"), (nl.IFLA_MTU, 1500)])
    bad = good + struct.pack("=HH", 64, nl.IFLA_MASTER) + b"\0" * 4  # claims more than there is
    assert nl.decode_attrs(bad) == nl.decode_attrs(good)


def test_rtnl_never_imports_pyroute2():
    """Creating and reading links over rtnl loads no pyroute2: its import would land on every bridge start."""
    code = (
        "import sys\n"
        "from minirun.network.rtnl import Rtnl\n"
        "with Rtnl() as r:\n"
        "    assert r.link_index('lo') == 1 and r.link_index('no-such-link') is None and r.links() and r.routes()\n"
        "assert not [m for m in sys.modules if m.startswith('pyroute2')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr

"""The few rtnetlink messages minirun sends and reads, encoded and decoded with struct.

Why not pyroute2's message classes: importing them runs pyroute2's package `__init__` (asyncio, NDB, every
message kind), which would land on every bridge-mode container start. minirun needs six request shapes
(bridge and veth creation, link up, delete and get by name, address add, default route add) and two dumps,
so this module spells out exactly those layouts: nlmsghdr, ifinfomsg, ifaddrmsg, rtmsg and netlink
attributes (NLAs), each padded to 4 bytes, nested ones flagged NLA_F_NESTED as iproute2 flags them (the
kernel accepts both; attribute types are read with the flags masked off).
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # An attribute value: u32 (int), NUL-terminated string (str), raw bytes, or nested attributes (list);
    # a nested value may carry a fixed header before its attributes (VETH_INFO_PEER's ifinfomsg): (bytes, list).
    Value = int | str | bytes | list[tuple[int, "Value"]] | tuple[bytes, list[tuple[int, "Value"]]]
    Attrs = list[tuple[int, Value]]

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, pad, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NLA = struct.Struct("=HH")  # nlattr: length, type
NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF

# attribute numbers (linux/if_link.h, if_addr.h, rtnetlink.h, veth.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1


def _pad(n: int) -> int:
    return (n + 3) & ~3


def encode_attrs(attrs: Attrs) -> bytes:
    """NLAs, each padded to 4 bytes; lists and (header, list) pairs are nested and flagged so."""
    out = bytearray()
    for kind, value in attrs:
        if isinstance(value, bool):
            raise TypeError(f"netlink attribute {kind}: bool is not a netlink type")
        if isinstance(value, int):
            payload = struct.pack("=I", value)
        elif isinstance(value, str):
            payload = value.encode() + b"\0"
        elif isinstance(value, bytes):
            payload = value
        elif isinstance(value, list):
            payload, kind = encode_attrs(value), kind | NLA_F_NESTED
        else:
            head, inner = value
            payload, kind = _padded(head) + encode_attrs(inner), kind | NLA_F_NESTED
        out += _NLA.pack(_NLA.size + len(payload), kind) + _padded(payload)
    return bytes(out)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (_pad(len(data)) - len(data))


def decode_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """Attribute type → payload (the first of each type), flags stripped; a truncated tail is ignored."""
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size or offset + length > end:
            break
        out.setdefault(kind & _NLA_TYPE_MASK, bytes(data[offset + _NLA.size : offset + length]))
        offset += _pad(length)
    return out


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: nlmsghdr (port id 0: the kernel fills in ours) and `body`."""
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def mac_bytes(mac: str) -> bytes:
    """'02:42:ac:11:00:02' → six bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def ipv4(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, address)


def link(index: int = 0, attrs: Attrs | None = None, *, flags: int = 0, change: int = 0) -> bytes:
    """ifinfomsg (AF_UNSPEC) and its attributes."""
    return IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change) + encode_attrs(attrs or [])


def addr(index: int, prefixlen: int, attrs: Attrs) -> bytes:
    """ifaddrmsg (AF_INET, universe scope) and its attributes."""
    return IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + encode_attrs(attrs)


def route(
    attrs: Attrs | None = None, *, dst_len: int = 0, table: int = 0, proto: int = 0, scope: int = 0, kind: int = 0
) -> bytes:
    """rtmsg (AF_INET) and its attributes."""
    return RTMSG.pack(socket.AF_INET, dst_len, 0, 0, table, proto, scope, kind, 0) + encode_attrs(attrs or [])


# -- the request bodies Rtnl sends ------------------------------------------------------------------------------------
def link_request(index: int = 0, attrs: Attrs | None = None, *, up: bool | None = None) -> bytes:
    """ifinfomsg for a link by index or by IFLA_IFNAME; `up` sets (True) or clears (False) IFF_UP."""
    return link(index, attrs, flags=IFF_UP if up else 0, change=IFF_UP if up is not None else 0)


def new_bridge(name: str, *, mtu: int, mac: str | None = None) -> bytes:
    """RTM_NEWLINK body: a bridge called `name`, up."""
    attrs: Attrs = [(IFLA_IFNAME, name), (IFLA_MTU, mtu)]
    if mac:
        attrs.append((IFLA_ADDRESS, mac_bytes(mac)))
    attrs.append((IFLA_LINKINFO, [(IFLA_INFO_KIND, "bridge")]))
    return link_request(attrs=attrs, up=True)


def new_veth(name: str, *, peer: str, peer_netns_fd: int, master: int, mtu: int, peer_mac: str | None = None) -> bytes:
    """RTM_NEWLINK body: veth `name` up on bridge `master`, its peer created in the namespace of `peer_netns_fd`."""
    peer_attrs: Attrs = [(IFLA_IFNAME, peer), (IFLA_NET_NS_FD, peer_netns_fd), (IFLA_MTU, mtu)]
    if peer_mac:
        peer_attrs.append((IFLA_ADDRESS, mac_bytes(peer_mac)))
    peer_info = (IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0), peer_attrs)
    info: Attrs = [(IFLA_INFO_KIND, "veth"), (IFLA_INFO_DATA, [(VETH_INFO_PEER, peer_info)])]
    attrs: Attrs = [(IFLA_IFNAME, name), (IFLA_MTU, mtu), (IFLA_MASTER, master), (IFLA_LINKINFO, info)]
    return link_request(attrs=attrs, up=True)


def new_address(index: int, address: str, prefixlen: int, *, broadcast: str | None = None) -> bytes:
    """RTM_NEWADDR body: IPv4 `address`/`prefixlen` on link `index`."""
    attrs: Attrs = [(IFA_LOCAL, ipv4(address)), (IFA_ADDRESS, ipv4(address))]
    if broadcast:
        attrs.append((IFA_BROADCAST, ipv4(broadcast)))
    return addr(index, prefixlen, attrs)


def default_route(gateway: str, index: int) -> bytes:
    """RTM_NEWROUTE body: the main table's default route via `gateway` on link `index`."""
    return route(
        [(RTA_GATEWAY, ipv4(gateway)), (RTA_OIF, index)],
        table=RT_TABLE_MAIN,
        proto=RTPROT_STATIC,
        scope=RT_SCOPE_UNIVERSE,
        kind=RTN_UNICAST,
    )


# -- replies ----------------------------------------------------------------------------------------------------------
def _u32(attrs: dict[int, bytes], kind: int) -> int | None:
    raw = attrs.get(kind)
    return struct.unpack_from("=I", raw)[0] if raw is not None and len(raw) >= 4 else None


def _string(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def parse_link(body: bytes) -> dict[str, object]:
    """An RTM_NEWLINK reply: name, index, kind (None for plain devices), master index, flags, mtu, address."""
    _family, _type, index, flags, _change = IFINFO.unpack_from(body)
    attrs = decode_attrs(body, IFINFO.size)
    info = decode_attrs(attrs.get(IFLA_LINKINFO, b""))
    mac = attrs.get(IFLA_ADDRESS)
    return {
        "name": _string(attrs.get(IFLA_IFNAME)),
        "index": index,
        "kind": _string(info.get(IFLA_INFO_KIND)),
        "master": _u32(attrs, IFLA_MASTER),
        "flags": flags,
        "mtu": _u32(attrs, IFLA_MTU),
        "address": ":".join(f"{b:02x}" for b in mac) if mac is not None else None,
    }


def parse_route(body: bytes) -> dict[str, object]:
    """An RTM_NEWROUTE reply: dst (None for default), prefix length, table, output device index, type."""
    _family, dst_len, _src, _tos, table, _proto, _scope, kind, _flags = RTMSG.unpack_from(body)
    attrs = decode_attrs(body, RTMSG.size)
    dst = attrs.get(RTA_DST)
    rta_table = _u32(attrs, RTA_TABLE)
    return {
        "dst": socket.inet_ntop(socket.AF_INET, dst) if dst is not None and len(dst) == 4 else None,
        "dst_len": dst_len,
        "table": rta_table if rta_table is not None else table,
        "oif": _u32(attrs, RTA_OIF),
        "type": kind,
    }

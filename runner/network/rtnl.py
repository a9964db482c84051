"""Links, addresses and routes over rtnetlink, encoded and decoded by pyroute2's message classes.

Why not `pyroute2.IPRoute`: its import is slow and would land on every bridge-mode container start
(bench/network.py prints the figures): IPRoute's core runs on asyncio and the package pulls in much of
the library. `Rtnl` sends pyroute2's `ifinfmsg`/`ifaddrmsg`/`rtmsg` messages over a plain blocking
NETLINK_ROUTE socket: pyroute2 does all the encoding and decoding (NLA layouts, nesting, veth peers),
this module only frames requests and reads acknowledgements. pyroute2 is imported on the first request,
normally, so `--network none` never loads it.

A socket for another network namespace is opened by entering that namespace for the duration of one
socket() call (`Rtnl(netns=path)`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IFF_UP = 0x1
AF_BRIDGE = 7
NETLINK_ROUTE = 0
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 24, 26
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_F_REQUEST, _F_MULTI, _F_ACK = 0x1, 0x2, 0x4
_F_DUMP, _F_EXCL, _F_CREATE = 0x300, 0x200, 0x400
_classes: dict[str, Any] = {}


def load() -> dict[str, Any]:
    """pyroute2's rtnetlink message classes: {'link': ifinfmsg, 'addr': ifaddrmsg, 'route': rtmsg}."""
    if not _classes:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        _classes.update(link=ifinfmsg, addr=ifaddrmsg, route=rtmsg)
    return _classes


class NetlinkError(OSError):
    """The kernel refused a request; `errno` is its error code, `what` the request."""


def _open_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    return sock


def _socket_in(netns: str) -> socket.socket:
    """A NETLINK_ROUTE socket of the network namespace bound at `netns`.

    A netlink socket belongs to the namespace its creator was in at socket(): enter, open, come back.
    Only this thread moves, and only for the one call.
    """
    from minicache.syscalls import CLONE_NEWNET, setns

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            return _open_socket()
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


class Rtnl:
    """A blocking rtnetlink client: one request at a time, each acknowledged or raising NetlinkError."""

    def __init__(self, netns: str | None = None) -> None:
        self.msg = load()
        self.sock = _socket_in(netns) if netns else _open_socket()
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing -----------------------------------------------------------------------------------------------
    def request(self, msg: Any, msg_type: int, flags: int = 0, *, what: str = "") -> list[Any]:
        """Send `msg` (a pyroute2 message) and return the decoded replies (for dumps: every entry)."""
        self.seq += 1
        seq = self.seq
        header = msg["header"]
        header["type"] = msg_type
        header["flags"] = _F_REQUEST | flags | (0 if flags & _F_DUMP == _F_DUMP else _F_ACK)
        header["sequence_number"] = seq
        header["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
        replies: list[Any] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, rseq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EBADMSG, "malformed netlink reply", what)
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if rseq != seq:
                    continue  # a late reply to an earlier request: not ours to read
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, _HEADER.size)
                    if code:
                        raise NetlinkError(-code, os.strerror(-code), what)
                    return replies
                if kind == _NLMSG_DONE:
                    return replies
                reply = type(msg)(chunk)
                reply.decode()
                replies.append(reply)

    def _link(self, index: int = 0, attrs: list[Any] | None = None, *, up: bool | None = None) -> Any:
        msg = self.msg["link"]()
        msg["family"] = socket.AF_UNSPEC
        msg["index"] = index
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP if up is not None else 0
        msg["attrs"] = attrs or []
        return msg

    # -- links ---------------------------------------------------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        """The index of the link called `name`, None when there is none."""
        try:
            (reply,) = self.request(self._link(attrs=[("IFLA_IFNAME", name)]), RTM_GETLINK, what=f"get link {name}")
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return reply["index"]

    def links(self) -> list[dict[str, Any]]:
        """Every link: name, index, kind (None for plain devices), master index, flags, mtu."""
        out = []
        for reply in self.request(self._link(), RTM_GETLINK, _F_DUMP, what="dump links"):
            out.append(
                {
                    "name": reply.get_attr("IFLA_IFNAME"),
                    "index": reply["index"],
                    "kind": reply.get(("linkinfo", "kind")),
                    "master": reply.get_attr("IFLA_MASTER"),
                    "flags": reply["flags"],
                    "mtu": reply.get_attr("IFLA_MTU"),
                    "address": reply.get_attr("IFLA_ADDRESS"),
                }
            )
        return out

    def add_bridge(self, name: str, *, mtu: int, mac: str | None = None) -> int:
        """Create a bridge, up; its index."""
        attrs: list[Any] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu)]
        if mac:
            attrs.append(("IFLA_ADDRESS", mac))
        attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]}))
        self.request(self._link(attrs=attrs, up=True), RTM_NEWLINK, _F_CREATE | _F_EXCL, what=f"create bridge {name}")
        index = self.link_index(name)
        if index is None:
            raise NetlinkError(errno.ENODEV, "bridge vanished right after its creation", name)
        return index

    def add_veth(
        self,
        name: str,
        *,
        peer: str,
        peer_netns_fd: int,
        master: int,
        mtu: int,
        peer_mac: str | None = None,
    ) -> None:
        """A veth pair in one request: `name` up on bridge `master` here, `peer` up in the other namespace."""
        peer_attrs: list[Any] = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd), ("IFLA_MTU", mtu)]
        if peer_mac:
            peer_attrs.append(("IFLA_ADDRESS", peer_mac))
        info = {
            "attrs": [
                ("IFLA_INFO_KIND", "veth"),
                (
                    "IFLA_INFO_DATA",
                    {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]},
                ),
            ]
        }
        attrs = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_MASTER", master), ("IFLA_LINKINFO", info)]
        self.request(self._link(attrs=attrs, up=True), RTM_NEWLINK, _F_CREATE | _F_EXCL, what=f"create veth {name}")

    def set_up(self, index: int) -> None:
        self.request(self._link(index, up=True), RTM_NEWLINK, what=f"set link {index} up")

    def delete_link(self, name: str) -> bool:
        """Delete the link called `name`; False when there was none."""
        try:
            self.request(self._link(attrs=[("IFLA_IFNAME", name)]), RTM_DELLINK, what=f"delete link {name}")
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses and routes ------------------------------------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int, *, broadcast: str | None = None) -> None:
        msg = self.msg["addr"]()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        attrs = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if broadcast:
            attrs.append(("IFA_BROADCAST", broadcast))
        msg["attrs"] = attrs
        self.request(msg, RTM_NEWADDR, _F_CREATE | _F_EXCL, what=f"add address {address}/{prefixlen}")

    def add_default_route(self, gateway: str, index: int) -> None:
        msg = self.msg["route"]()
        msg["family"] = socket.AF_INET
        msg["dst_len"] = 0
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", index)]
        self.request(msg, RTM_NEWROUTE, _F_CREATE | _F_EXCL, what=f"add default route via {gateway}")

    def routes(self) -> list[dict[str, Any]]:
        """Every IPv4 route of every table: dst (None for default), prefix length, table, device index."""
        msg = self.msg["route"]()
        msg["family"] = socket.AF_INET
        out = []
        for reply in self.request(msg, RTM_GETROUTE, _F_DUMP, what="dump routes"):
            out.append(
                {
                    "dst": reply.get_attr("RTA_DST"),
                    "dst_len": reply["dst_len"],
                    "table": reply.get_attr("RTA_TABLE", reply["table"]),
                    "oif": reply.get_attr("RTA_OIF"),
                    "type": reply["type"],
                }
            )
        return out

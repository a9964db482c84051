"""Links, addresses and routes over a plain blocking NETLINK_ROUTE socket.

Why not pyroute2: importing any of it runs its package `__init__` (asyncio core, NDB, every message kind),
which would land on every bridge-mode container start. minirun needs a handful of rtnetlink messages; their
layouts are spelled out in minirun.network.netlink, and this module frames requests and reads replies and
acknowledgements. `--network none` imports neither.

A socket for another network namespace is opened by entering that namespace for the duration of one
socket() call (`Rtnl(netns=path)`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

from minirun.network import netlink as nl

AF_BRIDGE = 7
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 24, 26
_HEADER = nl.HEADER
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_F_REQUEST, _F_MULTI, _F_ACK = 0x1, 0x2, 0x4
_F_DUMP, _F_EXCL, _F_CREATE = 0x300, 0x200, 0x400


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
    """
    with entered(netns):
        return _open_socket()


@contextlib.contextmanager
def entered(path: str | os.PathLike[str]) -> Iterator[None]:
    """This thread in the network namespace bound at `path` for the body, then back in its own.

    What belongs to a namespace is decided by the thread that makes it: a netlink socket at socket(), a
    sysctl under /proc/sys/net at open(). Only this thread moves, and only for the body.
    """
    from minirun.runtime.syscalls import CLONE_NEWNET, setns

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


class Rtnl:
    """A blocking rtnetlink client: one request at a time, each acknowledged or raising NetlinkError."""

    def __init__(self, netns: str | None = None) -> None:
        self.sock = _socket_in(netns) if netns else _open_socket()
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing -----------------------------------------------------------------------------------------------
    def request(self, msg_type: int, body: bytes, flags: int = 0, *, what: str = "") -> list[bytes]:
        """Send one message and return the bodies of its replies (for dumps: every entry)."""
        self.seq += 1
        seq = self.seq
        flags = _F_REQUEST | flags | (0 if flags & _F_DUMP == _F_DUMP else _F_ACK)
        self.sock.send(nl.message(msg_type, flags, seq, body))
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, rseq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
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
                replies.append(chunk[_HEADER.size :])

    # -- links ---------------------------------------------------------------------------------------------------
    def link_index(self, name: str) -> int | None:
        """The index of the link called `name`, None when there is none."""
        try:
            body = nl.link_request(attrs=[(nl.IFLA_IFNAME, name)])
            (reply,) = self.request(RTM_GETLINK, body, what=f"get link {name}")
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return nl.IFINFO.unpack_from(reply)[2]

    def links(self) -> list[dict[str, Any]]:
        """Every link: name, index, kind (None for plain devices), master index, flags, mtu."""
        replies = self.request(RTM_GETLINK, nl.link_request(), _F_DUMP, what="dump links")
        return [nl.parse_link(body) for body in replies]

    def add_bridge(self, name: str, *, mtu: int, mac: str | None = None) -> int:
        """Create a bridge, up; its index."""
        body = nl.new_bridge(name, mtu=mtu, mac=mac)
        self.request(RTM_NEWLINK, body, _F_CREATE | _F_EXCL, what=f"create bridge {name}")
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
        """A veth pair in one request: `name` up on bridge `master` here, `peer` (down) in the other namespace."""
        body = nl.new_veth(name, peer=peer, peer_netns_fd=peer_netns_fd, master=master, mtu=mtu, peer_mac=peer_mac)
        self.request(RTM_NEWLINK, body, _F_CREATE | _F_EXCL, what=f"create veth {name}")

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, nl.link_request(index, up=True), what=f"set link {index} up")

    def delete_link(self, name: str) -> bool:
        """Delete the link called `name`; False when there was none."""
        try:
            self.request(RTM_DELLINK, nl.link_request(attrs=[(nl.IFLA_IFNAME, name)]), what=f"delete link {name}")
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses and routes ------------------------------------------------------------------------------------
    def add_address(self, index: int, address: str, prefixlen: int, *, broadcast: str | None = None) -> None:
        body = nl.new_address(index, address, prefixlen, broadcast=broadcast)
        self.request(RTM_NEWADDR, body, _F_CREATE | _F_EXCL, what=f"add address {address}/{prefixlen}")

    def add_default_route(self, gateway: str, index: int) -> None:
        body = nl.default_route(gateway, index)
        self.request(RTM_NEWROUTE, body, _F_CREATE | _F_EXCL, what=f"add default route via {gateway}")

    def routes(self) -> list[dict[str, Any]]:
        """Every IPv4 route of every table: dst (None for default), prefix length, table, device index."""
        return [nl.parse_route(body) for body in self.request(RTM_GETROUTE, nl.route(), _F_DUMP, what="dump routes")]

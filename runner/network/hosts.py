"""The container's /etc/hosts: localhost, `--add-host` entries, its own addresses and its peers'.

Name resolution between containers of one user-defined network uses these files, not a DNS server:
minicontainer has no daemon, and a DNS responder on each bridge would be a process to keep alive,
restart and clean up for every network. Each member's hosts file is rewritten, under the network
lock, whenever a member joins or leaves; names, aliases and the 12-digit short ID of every peer
resolve, through any libc, with no process between the container and its answer. The file is
rewritten in place (same inode) because it is bind-mounted into the running container: a rename
would leave the container looking at the old file.
"""

from __future__ import annotations

import ipaddress
import os
import re

from minicache.errors import InvalidSpec
from minicache.record import Record

LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
HOST_GATEWAY = "host-gateway"  # Docker's magic --add-host value: the host, as the container sees it
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$")


class HostEntry(Record):
    address: str
    names: list[str]


def parse_add_host(text: str) -> HostEntry:
    """`--add-host NAME:IP` (or NAME=IP); IP may be IPv6 or `host-gateway`."""
    sep = "=" if "=" in text else ":"
    name, found, address = text.partition(sep)
    address = address.strip("[]")
    if not found or not name or not address:
        raise InvalidSpec(f"invalid --add-host {text!r}", hint="use NAME:IP, e.g. db:10.0.0.5")
    if not _HOSTNAME_RE.match(name):
        raise InvalidSpec(f"invalid host name {name!r} in --add-host {text!r}")
    if address != HOST_GATEWAY:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise InvalidSpec(
                f"invalid IP address {address!r} in --add-host {text!r}", hint="use NAME:IP or NAME:host-gateway"
            ) from None
    return HostEntry(address, [name])


def check_name(name: str, what: str = "alias") -> str:
    if not _HOSTNAME_RE.match(name):
        raise InvalidSpec(f"invalid {what} {name!r}", hint="letters, digits, '-', '_' and dots")
    return name


def render(own: list[HostEntry], peers: list[HostEntry], extra: list[HostEntry], *, base: str = LOCALHOST) -> str:
    """The file: `base` (localhost lines, or the host's file in host mode), extra hosts, own, peers."""
    lines = [base.rstrip("\n")] if base else []
    for entry in [*extra, *own, *peers]:
        lines.append(f"{entry.address}\t{' '.join(entry.names)}")
    return "\n".join(lines) + "\n"


def write_in_place(path: str | os.PathLike[str], content: str) -> None:
    """Replace the file's content without replacing the file (its inode may be bind-mounted somewhere).

    One write of the whole content at offset 0, then the size: a reader sees the old or the new
    entries, at worst for an instant the new ones followed by the old tail.
    """
    data = content.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)

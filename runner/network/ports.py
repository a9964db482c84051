"""Published ports: `-p [HOSTIP:][HOSTPORT:]CTRPORT[/tcp|/udp]` (ranges too), `-P`, and host port choice.

A host port of 0 means "pick one": the first free port of the kernel's ephemeral range after a random
start. A port is free when no other container of the store publishes it (the registry in the store's
run-time state) and a socket can be bound to it on the host: a DNAT rule would otherwise silently
shadow a host service (Docker's userland proxy finds the same conflict by binding the port itself).
"""

from __future__ import annotations

import re

from minicache.errors import Conflict, InvalidSpec
from minicache.record import Record

PROTOCOLS = ("tcp", "udp")
ANY = "0.0.0.0"
_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


class PortMapping(Record):
    container_port: int
    host_port: int = 0  # 0: pick a free port when attaching
    host_ip: str = ANY
    protocol: str = "tcp"
    host_port_end: int = 0  # >0: pick a free host port in host_port..host_port_end (`-p 8000-8010:80`)

    def key(self) -> str:
        return f"{self.protocol}/{self.host_ip}/{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"


def _range(text: str, spec: str, what: str) -> list[int]:
    match = _RANGE_RE.match(text)
    if not match:
        raise InvalidSpec(f"invalid {what} {text!r} in -p {spec!r}", hint="use a number or a range like 8000-8010")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 1 <= first <= last <= 65535:
        raise InvalidSpec(f"invalid {what} {text!r} in -p {spec!r}: ports are 1-65535, ranges low-high")
    return list(range(first, last + 1))


def _host_ip(text: str, spec: str) -> str:
    import ipaddress

    if text.startswith("["):
        raise InvalidSpec(f"IPv6 host addresses are not supported (-p {spec!r})", hint="publish on an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InvalidSpec(f"invalid host IP {text!r} in -p {spec!r}", hint="use -p [HOSTIP:]HOSTPORT:CTRPORT") from None


def parse_publish(spec: str) -> list[PortMapping]:
    """One `-p` value → its mappings (one per port of a range)."""
    body, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidSpec(f"invalid protocol {protocol!r} in -p {spec!r}", hint="use /tcp or /udp")
    if body.startswith("["):  # [v6]:host:ctr
        raise InvalidSpec(f"IPv6 host addresses are not supported (-p {spec!r})", hint="publish on an IPv4 address")
    parts = body.split(":")
    if len(parts) == 1:
        host_ip, host_part, ctr_part = ANY, "", parts[0]
    elif len(parts) == 2:
        host_ip, host_part, ctr_part = ANY, parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host_part, ctr_part = _host_ip(parts[0], spec) if parts[0] else ANY, parts[1], parts[2]
    else:
        raise InvalidSpec(f"invalid -p {spec!r}", hint="use -p [HOSTIP:][HOSTPORT:]CTRPORT[/tcp|/udp]")
    ctr_ports = _range(ctr_part, spec, "container port")
    if not host_part:
        return [PortMapping(p, 0, host_ip, protocol) for p in ctr_ports]
    host_ports = _range(host_part, spec, "host port")
    if len(host_ports) == 1 and len(ctr_ports) > 1:
        raise InvalidSpec(f"invalid -p {spec!r}: one host port cannot take a range of container ports")
    if len(ctr_ports) == 1 and len(host_ports) > 1:
        return [PortMapping(ctr_ports[0], host_ports[0], host_ip, protocol, host_ports[-1])]
    if len(host_ports) != len(ctr_ports):
        raise InvalidSpec(f"invalid -p {spec!r}: the host and container port ranges differ in length")
    return [PortMapping(c, h, host_ip, protocol) for h, c in zip(host_ports, ctr_ports, strict=True)]


def parse_exposed(keys: list[str]) -> list[tuple[int, str]]:
    """The image's ExposedPorts keys (`80/tcp`, `53/udp`, `8000-8001/tcp`) as (port, protocol) pairs."""
    out = []
    for key in keys:
        port, _, protocol = key.partition("/")
        protocol = (protocol or "tcp").lower()
        if protocol not in PROTOCOLS:
            continue  # sctp and others: not published, as podman does without support for them
        out += [(p, protocol) for p in _range(port, key, "exposed port")]
    return out


def publish_all(exposed: list[str], published: list[PortMapping]) -> list[PortMapping]:
    """`-P`: every exposed port that -p does not already publish, on a free host port."""
    done = {(m.container_port, m.protocol) for m in published}
    return [PortMapping(port, 0, ANY, proto) for port, proto in parse_exposed(exposed) if (port, proto) not in done]


def _clashes(mapping: PortMapping, key: str) -> bool:
    protocol, host_ip, port = key.split("/")
    if protocol != mapping.protocol or int(port) != mapping.host_port:
        return False
    return ANY in (host_ip, mapping.host_ip) or host_ip == mapping.host_ip


def host_port_free(mapping: PortMapping) -> bool:
    """Can a host process bind this address and port right now (then nothing on the host uses it)?"""
    import socket

    kind = socket.SOCK_STREAM if mapping.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((mapping.host_ip, mapping.host_port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def assign(mappings: list[PortMapping], registry: dict[str, str], container_id: str) -> list[PortMapping]:
    """Fill in host ports of 0 and check every mapping against the registry and the host; the registry
    (`protocol/ip/port` → container ID) gets the container's entries."""
    import random

    out: list[PortMapping] = []
    mine: dict[str, str] = {}
    for mapping in mappings:
        mapping = PortMapping(**mapping.as_dict())
        taken = {**registry, **mine}
        if mapping.host_port == 0 or mapping.host_port_end:
            low, high = (mapping.host_port, mapping.host_port_end) if mapping.host_port_end else _ephemeral_range()
            mapping.host_port_end = 0
            start = random.randint(low, high)
            for step in range(high - low + 1):
                mapping.host_port = low + (start - low + step) % (high - low + 1)
                if not any(_clashes(mapping, k) for k in taken) and host_port_free(mapping):
                    break
            else:
                raise Conflict(f"no free host port left in {low}-{high}/{mapping.protocol}")
        else:
            owner = next((taken[k] for k in taken if _clashes(mapping, k)), None)
            if owner is not None:
                raise Conflict(
                    f"cannot publish {mapping.host_ip}:{mapping.host_port}/{mapping.protocol}: "
                    f"container {owner[:12]} publishes it already",
                    hint="choose another host port",
                )
            if not host_port_free(mapping):
                raise Conflict(
                    f"cannot publish {mapping.host_ip}:{mapping.host_port}/{mapping.protocol}: "
                    "the port is in use on the host",
                    hint="choose another host port, or stop what listens there",
                )
        mine[mapping.key()] = container_id
        out.append(mapping)
    registry.update(mine)
    return out

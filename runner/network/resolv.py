"""The container's /etc/resolv.conf, as Docker makes it.

`--dns` servers replace the host's; otherwise the host's file is used without its loopback
nameservers (127.0.0.0/8, ::1: inside a network namespace they would be the container's own
loopback). When nothing but a local stub (systemd-resolved's 127.0.0.53) was there, the servers it
forwards to are taken from /run/systemd/resolve/resolv.conf. Unlike Docker, no public resolver
(8.8.8.8) is added when none remains: the container then has no nameserver, and says so by failing
lookups, rather than sending queries somewhere nobody chose. With the host's network the host's file
is used unchanged. `--dns-search` and `--dns-option` replace the host's search and options lines.
"""

from __future__ import annotations

import ipaddress

from minicache.errors import InvalidSpec

HOST_RESOLV = "/etc/resolv.conf"
SYSTEMD_RESOLVED = "/run/systemd/resolve/resolv.conf"


def check_dns(servers: list[str]) -> list[str]:
    out = []
    for server in servers:
        try:
            out.append(str(ipaddress.ip_address(server)))
        except ValueError:
            raise InvalidSpec(f"invalid --dns {server!r}", hint="give a nameserver's IP address") from None
    return out


def check_words(values: list[str], flag: str) -> list[str]:
    """--dns-search / --dns-option values: one word each (no blank, no newline that could add a line)."""
    for value in values:
        if not value or any(c.isspace() for c in value) or len(value) > 253:
            raise InvalidSpec(f"invalid {flag} {value!r}", hint="one word per value, e.g. example.org or ndots:2")
    return values


def _read(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _is_loopback_nameserver(line: str) -> bool:
    words = line.split()
    if len(words) < 2 or words[0] != "nameserver":
        return False
    try:
        return ipaddress.ip_address(words[1].split("%")[0]).is_loopback
    except ValueError:
        return False


def render(
    *,
    host_network: bool = False,
    dns: list[str] | None = None,
    search: list[str] | None = None,
    options: list[str] | None = None,
    host_file: str = HOST_RESOLV,
    resolved_file: str = SYSTEMD_RESOLVED,
) -> str:
    lines = _read(host_file)
    if not host_network and not dns:
        kept = [ln for ln in lines if not _is_loopback_nameserver(ln)]
        has_servers = any(ln.split()[:1] == ["nameserver"] for ln in kept)
        if not has_servers and len(kept) != len(lines):
            upstream = [
                ln
                for ln in _read(resolved_file)
                if ln.split()[:1] == ["nameserver"] and not _is_loopback_nameserver(ln)
            ]
            kept += upstream
        lines = kept
    if dns:
        lines = [ln for ln in lines if ln.split()[:1] != ["nameserver"]] + [f"nameserver {s}" for s in check_dns(dns)]
    if search:
        check_words(search, "--dns-search")
        lines = [ln for ln in lines if ln.split()[:1] not in (["search"], ["domain"])] + ["search " + " ".join(search)]
    if options:
        check_words(options, "--dns-option")
        lines = [ln for ln in lines if ln.split()[:1] != ["options"]] + ["options " + " ".join(options)]
    return "\n".join(lines) + "\n" if lines else ""

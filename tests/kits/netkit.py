"""Helpers for network tests: processes inside network namespaces the tests made, and leak checks.

Every process runs through `nsenter --net=<namespace file>` (busybox's ping, or this Python for TCP/UDP
servers and clients), so traffic only flows inside namespaces the test created or to 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
BUSYBOX = "/bin/busybox"

SERVER = r"""
import socket, sys
kind, port, reply = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
if kind == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        c.sendall(reply + b" " + peer[0].encode()); c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(reply + b" " + peer[0].encode(), peer)
"""

CLIENT = r"""
import socket, sys
kind, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    addr = socket.getaddrinfo(host, port, socket.AF_INET)[0][4]
except socket.gaierror as e:
    print("resolve-error", e); sys.exit(3)
if kind == "tcp":
    s = socket.create_connection(addr, timeout=timeout)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    s.sendto(b"ping", addr)
    data = s.recv(4096)
print(data.decode())
"""


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns}", *argv] if netns else argv


class Server:
    """A TCP or UDP server in a namespace that answers `<reply> <peer address>` to every client."""

    def __init__(self, netns: str | None, port: int, reply: str, kind: str = "tcp") -> None:
        self.proc = subprocess.Popen(
            in_netns(netns, [PY, "-c", SERVER, kind, str(port), reply]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # by PID: a process this test started
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def request(netns: str | None, host: str, port: int, *, kind: str = "tcp", timeout: float = 3.0, hosts_file=None):
    """Connect from inside `netns` (None: the host) and return (exit code, output). With `hosts_file`,
    the client runs in a private mount namespace where that file is /etc/hosts (as in a container)."""
    argv = in_netns(netns, [PY, "-c", CLIENT, kind, host, str(port), str(timeout)])
    if hosts_file is not None:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts_file), *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    return result.returncode, (result.stdout + result.stderr).strip()


def ping(netns: str, address: str) -> bool:
    result = subprocess.run(
        in_netns(netns, [BUSYBOX, "ping", "-c", "1", "-W", "2", address]), capture_output=True, timeout=30
    )
    return result.returncode == 0


def ip_json(netns: str | None, *args: str) -> list[dict]:
    out = subprocess.run(in_netns(netns, ["ip", "-j", *args]), capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def links(netns: str | None = None) -> dict[str, dict]:
    return {link["ifname"]: link for link in ip_json(netns, "-d", "link", "show")}


def nft_table(table: str) -> dict | None:
    result = subprocess.run(["nft", "-j", "list", "table", "inet", table], capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 else None


def nft_rules(table: str) -> list[dict]:
    data = nft_table(table) or {"nftables": []}
    return [o["rule"] for o in data["nftables"] if "rule" in o]


def mounts_under(path: Path | str) -> list[str]:
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def servers(*items: Server):
    try:
        yield items
    finally:
        for server in items:
            server.stop()

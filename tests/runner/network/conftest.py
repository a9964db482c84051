"""Fixtures for network tests: a store with network names of its own, and a leak check after each test.

Every test's store gets its own nftables table (`mct<hex>`), bridge prefix (`tb<hex>`: bridges
`tb<hex>0` and `tb<hex>-<id>`), veth prefix (`tv<hex>`) and a subnet pool in 10.200.0.0-10.250.255.255
(cut into /24s; a candidate overlapping any host route is skipped), so tests of other sessions running at
the same time never meet ours. Teardown fails the test if it left a container attached, then removes the
test's networks and checks that no veth, bridge, nftables table, namespace file, mount, lease or port
registration of the test is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import netkit
from minicache.store import Store
from minirun import network
from minirun.network import settings, state


class NetEnv:
    def __init__(self, store: Store, conf: settings.NetworkSettings, tmp: Path) -> None:
        self.store = store
        self.conf = conf
        self.tmp = tmp

    def cid(self, tag: str = "") -> str:
        """A fresh container ID (64 hex digits)."""
        return secrets.token_hex(32)

    def hosts_path(self, container_id: str) -> str:
        path = self.tmp / f"hosts-{container_id[:12]}"
        return str(path)

    def attach(self, container_id: str | None = None, **options) -> network.Attachment:
        container_id = container_id or self.cid()
        options.setdefault("hosts_path", self.hosts_path(container_id))
        return network.attach(self.store, container_id, network.NetworkOptions(**options))

    def our_links(self) -> list[str]:
        prefixes = (self.conf.bridge_prefix, self.conf.veth_prefix)
        return sorted(name for name in netkit.links() if name.startswith(prefixes))

    def env(self) -> dict[str, str]:
        return {"MINICONTAINER_ROOT": self.store.root}


@pytest.fixture
def net(store: Store, tmp_path: Path) -> Iterator[NetEnv]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, bridges, nftables)")
    h = secrets.token_hex(2)
    pool = [f"10.{200 + secrets.randbelow(51)}.0.0/16:24"]
    conf = settings.save(
        store, settings.NetworkSettings(table=f"mct{h}", bridge_prefix=f"tb{h}", veth_prefix=f"tv{h[:3]}", pool=pool)
    )
    files = tmp_path / "files"
    files.mkdir()
    env = NetEnv(store, conf, files)
    yield env
    problems = []
    attached = sorted(set(state.endpoint_ids(store)) | set(_listdir(store.netns_dir)))
    if attached:
        problems.append(f"containers still attached: {[c[:12] for c in attached]}")
    with contextlib.suppress(Exception):
        network.prune(store, keep=[])
    for net_, _count in network.list_networks(store):
        try:
            network.remove_network(store, net_.id)
        except Exception as e:
            problems.append(f"cannot remove network {net_.name}: {e}")
    leftovers = {
        "links": env.our_links(),
        "nft table": netkit.nft_table(conf.table) is not None,
        "netns files": _listdir(store.netns_dir),
        "mounts": netkit.mounts_under(store.root),
        "network states": [p for p in _listdir(store.run_networks_dir) if p.endswith(".json") and p != "ports.json"],
        "endpoints": state.endpoint_ids(store),
        "port registrations": state.read(state.ports_path(store), {}),
    }
    for what, value in leftovers.items():
        if value:
            problems.append(f"{what} left: {value}")
    # Last resort, so one failing test does not spoil the machine for the next ones.
    for name in env.our_links():
        os.system(f"ip link delete {name} 2>/dev/null")
    if leftovers["nft table"]:
        os.system(f"nft delete table inet {conf.table}")
    for point in sorted(netkit.mounts_under(store.root), key=len, reverse=True):
        os.system(f"umount -l {point}")
    if problems:
        pytest.fail("; ".join(problems))


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []

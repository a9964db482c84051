"""Per-store network settings: our nftables table, interface name prefixes and the subnet pool.

Fixed the first time a store does networking (from the environment, else the defaults) and kept in
`<root>/networks/settings.json`, so every later `minirun` process, whatever its environment, finds the
same bridges, veths and rules. Two stores on one host (tests, a second --root) choose different names:

    MINICONTAINER_NFT_TABLE      nftables table (family inet)              default: minicontainer
    MINICONTAINER_BRIDGE_PREFIX  default bridge PREFIX0, others PREFIX-HEX default: minibr
    MINICONTAINER_VETH_PREFIX    host end of a container's veth            default: mc
    MINICONTAINER_SUBNET_POOL    CIDR:SIZE,...  where networks are cut from, first free wins
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minicache.record import Record

if TYPE_CHECKING:
    from minicache.store import Store

IFNAMSIZ = 15  # longest interface name the kernel takes
# Docker's default pools: /16s from 172.17.0.0 to 172.31.0.0, then smaller ones (here /24s from 10.89.0.0/16).
DEFAULT_POOL = ("172.17.0.0/16:16", "172.18.0.0/15:16", "172.20.0.0/14:16", "172.24.0.0/13:16", "10.89.0.0/16:24")
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")


class NetworkSettings(Record):
    table: str = "minicontainer"
    bridge_prefix: str = "minibr"
    veth_prefix: str = "mc"
    pool: list[str] = list(DEFAULT_POOL)

    def check(self) -> NetworkSettings:
        if not _TABLE_RE.match(self.table):
            raise InvalidSpec(f"invalid nftables table name {self.table!r}", hint="use letters, digits, _ and -")
        if not _PREFIX_RE.match(self.bridge_prefix) or len(self.bridge_prefix) > 8:
            raise InvalidSpec(f"invalid bridge prefix {self.bridge_prefix!r}", hint="1-8 lower-case letters and digits")
        if not _PREFIX_RE.match(self.veth_prefix) or len(self.veth_prefix) > 5:
            raise InvalidSpec(f"invalid veth prefix {self.veth_prefix!r}", hint="1-5 lower-case letters and digits")
        from minirun.network.ipam import parse_pool

        parse_pool(self.pool)
        return self

    # -- interface names -------------------------------------------------------------------------------------
    @property
    def default_bridge(self) -> str:
        return f"{self.bridge_prefix}0"

    def bridge_for(self, network_id: str) -> str:
        """`minibr-<hex>`: as much of the network's ID as fits in 15 characters."""
        return f"{self.bridge_prefix}-{network_id[: IFNAMSIZ - len(self.bridge_prefix) - 1]}"

    def veth_stem(self, container_id: str) -> str:
        """What every host-side veth of one container starts with: the prefix and the ID's first digits."""
        return f"{self.veth_prefix}{container_id[: IFNAMSIZ - len(self.veth_prefix) - 1]}"

    def veth_for(self, container_id: str, slot: int) -> str:
        """The host end of the container's `eth<slot>` (slot 0-9; ten networks per container at most)."""
        return f"{self.veth_stem(container_id)}{slot}"


def _path(store: Store):
    return os.path.join(store.networks_dir, "settings.json")


def from_env(environ: dict[str, str] | None = None) -> NetworkSettings:
    env = os.environ if environ is None else environ
    settings = NetworkSettings()
    settings.table = env.get("MINICONTAINER_NFT_TABLE") or settings.table
    settings.bridge_prefix = env.get("MINICONTAINER_BRIDGE_PREFIX") or settings.bridge_prefix
    settings.veth_prefix = env.get("MINICONTAINER_VETH_PREFIX") or settings.veth_prefix
    if pool := env.get("MINICONTAINER_SUBNET_POOL"):
        settings.pool = [p.strip() for p in pool.split(",") if p.strip()]
    return settings.check()


def load(store: Store) -> NetworkSettings:
    """The store's settings; fixed (written) on first use."""
    path = _path(store)
    try:
        with open(path, "rb") as f:
            return NetworkSettings(**json.load(f))
    except FileNotFoundError:
        pass
    return save(store, from_env())


def save(store: Store, settings: NetworkSettings) -> NetworkSettings:
    """Fix the store's settings (tests do this with names of their own); refused once networks exist."""
    from minicache.atomic import atomic_write_json, read_json

    settings.check()
    path = _path(store)
    if any(n.endswith(".json") and n != "settings.json" for n in os.listdir(os.path.dirname(path))):
        current = read_json(path) if os.path.exists(path) else None
        if current != settings.as_dict():
            raise InvalidSpec("network settings cannot change while networks exist", hint="remove the networks first")
    atomic_write_json(path, settings.as_dict())
    return settings

"""Where networking keeps its records, and the one lock that orders every change to them.

    <root>/networks/settings.json          per-store names and pool (minirun.network.settings)
    <root>/networks/<name>.json            a network's definition (durable: it outlives reboots)
    <run_root>/networks/<id>.json          a network's members and their leases (gone with a reboot,
                                           like the bridges, veths and namespaces they describe)
    <run_root>/networks/endpoints/<cid>.json  one container's attachment: how detach finds what to undo
    <run_root>/networks/ports.json         published host ports → container ID
    <run_root>/netns/<cid>                 the container's network namespace (minirun.network.netns)

Every read-modify-write of these files happens under `lock(store)` (an flock in <root>/locks), so
concurrent starts never lease one address twice. Run-time files are replaced by rename, not fsync'ed:
they live in /run (tmpfs) for the default store.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from minicache.atomic import atomic_write_json

if TYPE_CHECKING:
    from typing import Any

    from minicache.locks import FileLock
    from minicache.store import Store


def lock(store: Store) -> FileLock:
    return store.lock("network")


def network_state_path(store: Store, network_id: str) -> str:
    return os.path.join(store.run_networks_dir, f"{network_id}.json")


def endpoint_path(store: Store, container_id: str) -> str:
    return os.path.join(store.run_networks_dir, "endpoints", f"{container_id}.json")


def ports_path(store: Store) -> str:
    return os.path.join(store.run_networks_dir, "ports.json")


def read(path: str | os.PathLike[str], default: Any = None) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def write(path: str | os.PathLike[str], data: Any, *, durable: bool = False) -> None:
    with contextlib.suppress(FileExistsError):  # endpoints/: the store made the folder above it
        os.mkdir(os.path.dirname(path), 0o700)
    atomic_write_json(path, data, durable=durable)


def delete(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def endpoint_ids(store: Store) -> list[str]:
    try:
        return [n[:-5] for n in os.listdir(os.path.join(store.run_networks_dir, "endpoints")) if n.endswith(".json")]
    except FileNotFoundError:
        return []


def network_states(store: Store) -> dict[str, dict[str, Any]]:
    """Every network's run-time state, by network ID."""
    out = {}
    try:
        names = os.listdir(store.run_networks_dir)
    except FileNotFoundError:
        return out
    for name in names:
        if name.endswith(".json") and name != "ports.json":
            data = read(os.path.join(store.run_networks_dir, name))
            if data is not None:
                out[name[:-5]] = data
    return out

"""The engine's two network steps: `attach` before a container's process starts, `detach` after it ends.

    wired = networking.attach(store, container, opts, hostname, image_config, mode)   # in steps.prepare
    ... spec: network namespace {"path": wired.netns_path}; /etc/hosts, /etc/resolv.conf from wired ...
    networking.detach(store, container)   # lifecycle.finish / delete, steps.cleanup: idempotent, leftovers too

`--network none` and `host` without --add-host/--dns return None from `attach` without importing
anything of the network package (the engine writes its own defaults), so that path pays nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from minicache.record import Record

if TYPE_CHECKING:
    from typing import Any

    from minicache.store import Store
    from minirun.engine.containers import Container
    from minirun.engine.spec import RunOptions

LIGHT_MODES = ("none", "host")  # no namespace file, no interface, nothing to undo


class Wired(Record):
    netns_path: str | None = None  # the namespace to join; None: a private one (none) or the host's
    hosts: str = ""
    resolv_conf: str = ""


def _needs_files(opts: RunOptions) -> bool:
    return bool(opts.add_hosts or opts.dns or opts.dns_search or opts.dns_options)


def attach(
    store: Store, container: Container, opts: RunOptions, hostname: str, image_config: dict[str, Any], mode: str
) -> Wired | None:
    """Attach the container as its saved options ask (any leftover of an earlier run undone first).

    `mode` is the saved `--network`, with `container:REF` already resolved to `container:<full ID>` of a
    running container by the caller (minirun.engine.steps.network_mode), which may ask the state machine.
    """
    if mode in LIGHT_MODES and not _needs_files(opts):
        return None
    from minirun import network

    network.detach(store, container.id)  # what a crashed run of this container may have left
    attachment = network.attach(
        store,
        container.id,
        network.NetworkOptions(
            network=mode,
            name=container.name,
            hostname=hostname,
            aliases=list(opts.network_aliases),
            ip=opts.ip,
            add_hosts=list(opts.add_hosts),
            dns=list(opts.dns),
            dns_search=list(opts.dns_search),
            dns_options=list(opts.dns_options),
            publish=list(opts.publish),
            publish_all=opts.publish_all,
            exposed_ports=sorted(image_config.get("ExposedPorts") or {}),
            hosts_path=os.path.join(container.dir, "hosts"),
        ),
    )
    return Wired(attachment.netns_path, attachment.hosts, attachment.resolv_conf)


def detach(store: Store, container: Container) -> None:
    """Undo `attach` for a container whose process is gone (veths, rules, lease, namespace file)."""
    from minicache.errors import NotFound

    try:
        mode = (container.record.get("Options") or {}).get("network", "none")
    except NotFound:
        mode = "bridge"  # the record is gone already: look for leftovers anyway
    if mode in LIGHT_MODES:
        return
    from minirun import network

    network.detach(store, container.id)


def network_settings(store: Store, container: Container, running: bool) -> dict[str, Any]:
    """docker inspect's NetworkSettings for the container (empty addresses when it is not running)."""
    mode = (container.record.get("Options") or {}).get("network", "none")
    empty: dict[str, Any] = {
        "Bridge": "",
        "SandboxKey": "",
        "Ports": {},
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "MacAddress": "",
        "Networks": {},
    }
    if mode in LIGHT_MODES:
        if mode == "host" or mode == "none":
            empty["Networks"] = {mode: _network_entry(None, mode)}
        return empty
    from minirun import network

    endpoint = network.endpoint(store, container.id) if running else None
    if endpoint is None:
        return empty
    if endpoint.get("mode") == "container":
        other = network.endpoint(store, endpoint["shared_with"]) or {}
        endpoint = {**other, "ports": []}
    interfaces = endpoint.get("interfaces") or []
    ports: dict[str, Any] = {}
    for m in endpoint.get("ports") or []:
        key = f"{m['container_port']}/{m['protocol']}"
        ports.setdefault(key, []).append({"HostIp": m["host_ip"], "HostPort": str(m["host_port"])})
    first = interfaces[0] if interfaces else None
    return {
        "Bridge": first["bridge"] if first else "",
        "SandboxKey": endpoint.get("netns") or "",
        "Ports": ports,
        "Gateway": first["gateway"] if first else "",
        "IPAddress": first["ip"] if first else "",
        "IPPrefixLen": first["prefixlen"] if first else 0,
        "MacAddress": first["mac"] if first else "",
        "Networks": {i["network"]: _network_entry(i, i["network"]) for i in interfaces},
    }


def _network_entry(iface: dict[str, Any] | None, name: str) -> dict[str, Any]:
    iface = iface or {}
    return {
        "NetworkID": iface.get("network_id", ""),
        "EndpointID": iface.get("veth", ""),
        "Gateway": iface.get("gateway", ""),
        "IPAddress": iface.get("ip", ""),
        "IPPrefixLen": iface.get("prefixlen", 0),
        "MacAddress": iface.get("mac", ""),
        "InterfaceName": iface.get("ifname", ""),
    }


def ports_column(store: Store, container: Container) -> str:
    """`docker ps`'s PORTS: `0.0.0.0:8080->80/tcp, ...` for a running container on a bridge network."""
    mode = (container.record.get("Options") or {}).get("network", "none")
    if mode in LIGHT_MODES or mode.startswith("container:"):
        return ""
    from minirun import network

    endpoint = network.endpoint(store, container.id) or {}
    return ", ".join(
        f"{m['host_ip']}:{m['host_port']}->{m['container_port']}/{m['protocol']}" for m in endpoint.get("ports") or []
    )

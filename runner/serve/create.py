"""`POST /containers/create`: the Engine API's container config made into `minirun create`'s flags.

The body is turned into the namespace `minirun run`'s option table would give (flag strings, as a user
would type them) and handed to `minirun.cli.commands.run.create`: the same checks and the same container
as `minirun run -d` makes from the same options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minicache.errors import InvalidSpec

if TYPE_CHECKING:
    from minicache.store import Store
    from minirun.engine.containers import Container


def _defaults() -> dict[str, Any]:
    from minirun.cli.commands.run import CONTAINER_OPTIONS
    from minirun.cli.options import defaults

    return defaults(CONTAINER_OPTIONS)


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidSpec(f"{what} must be a list of strings")


def _number(value: Any) -> str | None:
    """A resource figure as a flag value; 0 (Docker's "not set") is none."""
    if value in (None, 0, ""):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidSpec(f"invalid resource value {value!r}")
    return str(value)


def namespace(body: dict[str, Any], name: str | None) -> Any:
    """`minirun create`'s parsed flags for an Engine API create body."""
    from argparse import Namespace

    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidSpec("HostConfig must be an object")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidSpec("the config has no Image")
    args = _defaults()
    entrypoint = _strings(body.get("Entrypoint"), "Entrypoint")
    command = _strings(body.get("Cmd"), "Cmd")
    if len(entrypoint) > 1:  # minirun's --entrypoint is one word, as Docker's flag: the rest leads the command
        command = entrypoint[1:] + command
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidSpec("Labels must be an object")
    network = host.get("NetworkMode") or None
    publish = []
    for port, bindings in (host.get("PortBindings") or {}).items():
        for b in bindings or [{}]:
            host_ip, host_port = b.get("HostIp") or "", b.get("HostPort") or ""
            publish.append(":".join(p for p in (host_ip, host_port) if p) + f":{port}" if host_port else port)
    restart = host.get("RestartPolicy") or {}
    policy = restart.get("Name") or "no"
    if policy == "on-failure" and restart.get("MaximumRetryCount"):
        policy += f":{restart['MaximumRetryCount']}"
    nano = host.get("NanoCpus") or 0
    args.update(
        name=name,
        image=image,
        command=command,
        entrypoint=entrypoint[0] if entrypoint else ("" if body.get("Entrypoint") == [] else None),
        env=_strings(body.get("Env"), "Env"),
        workdir=body.get("WorkingDir") or None,
        user=body.get("User") or None,
        hostname=body.get("Hostname") or None,
        tty=bool(body.get("Tty")),
        interactive=bool(body.get("OpenStdin")),
        label=[f"{k}={v}" for k, v in labels.items()],
        volume=_strings(host.get("Binds"), "Binds"),
        tmpfs=[f"{k}:{v}" if v else k for k, v in (host.get("Tmpfs") or {}).items()],
        read_only=bool(host.get("ReadonlyRootfs")),
        cap_add=_strings(host.get("CapAdd"), "CapAdd"),
        cap_drop=_strings(host.get("CapDrop"), "CapDrop"),
        privileged=bool(host.get("Privileged")),
        init=bool(host.get("Init")),
        network=None if network in (None, "default") else network,
        publish=publish,
        publish_all=bool(host.get("PublishAllPorts")),
        add_host=_strings(host.get("ExtraHosts"), "ExtraHosts"),
        dns=_strings(host.get("Dns"), "Dns"),
        dns_search=_strings(host.get("DnsSearch"), "DnsSearch"),
        dns_option=_strings(host.get("DnsOptions"), "DnsOptions"),
        security_opt=_strings(host.get("SecurityOpt"), "SecurityOpt"),
        ulimit=[f"{u['Name']}={u['Soft']}:{u['Hard']}" for u in host.get("Ulimits") or []],
        restart=policy,
        rm=bool(host.get("AutoRemove")),
        stop_signal=body.get("StopSignal") or None,
        stop_timeout=body.get("StopTimeout"),
        cgroup_parent=host.get("CgroupParent") or None,
        memory=_number(host.get("Memory")),
        memory_reservation=_number(host.get("MemoryReservation")),
        memory_swap=_number(host.get("MemorySwap")),
        cpus=str(nano / 1e9) if nano else None,
        cpu_shares=_number(host.get("CpuShares")),
        cpu_period=_number(host.get("CpuPeriod")),
        cpu_quota=_number(host.get("CpuQuota")),
        cpuset_cpus=host.get("CpusetCpus") or None,
        cpuset_mems=host.get("CpusetMems") or None,
        pids_limit=_number(host.get("PidsLimit")),
    )
    return Namespace(**args)


def create(store: Store, body: dict[str, Any], name: str | None) -> Container:
    """Create (not start) the container the body describes."""
    from minirun.cli.commands import run

    return run.create(store, namespace(body, name), attach=False)

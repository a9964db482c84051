"""The Docker Engine API's JSON documents (v1.41), made from what the engine's library reads.

Nothing here reads the kernel or the store by itself: container state comes from minirun.engine.lifecycle,
inspect documents from minirun.cli.views, counters from minirun.engine.usage, images from minicache.imageinfo.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from typing import TYPE_CHECKING, Any

from minirun.cli import views
from minirun.engine.containers import ACTIVE

if TYPE_CHECKING:
    from minicache.images import ImageRecord
    from minicache.store import Store
    from minirun.cgroups import CgroupStats
    from minirun.engine.containers import Container, State

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
_CLOCK_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_CPUS = os.cpu_count() or 1  # os.cpu_count() reads sysfs: asked once, not per stats reading


def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minicontainer")
    except PackageNotFoundError:
        return "0.0.0"


def labels(record: dict[str, Any]) -> dict[str, str]:
    return (record.get("Config") or {}).get("Labels") or {}


def _created_seconds(record: dict[str, Any]) -> int:
    return int(views.parse_time(record.get("Created")) or 0)


def port_list(network_settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Inspect's {"80/tcp": [{"HostIp", "HostPort"}]} as the list `GET /containers/json` gives."""
    out: list[dict[str, Any]] = []
    for key, bindings in (network_settings.get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        for b in bindings or [{}]:
            entry: dict[str, Any] = {"PrivatePort": int(port), "Type": proto or "tcp"}
            if b.get("HostPort"):
                entry.update(IP=b.get("HostIp") or "0.0.0.0", PublicPort=int(b["HostPort"]))
            out.append(entry)
    return out


def container_summary(container: Container, state: State, now: float | None = None) -> dict[str, Any]:
    """One entry of `GET /containers/json`."""
    from minirun.engine import networking

    record = container.record
    settings = networking.network_settings(container.store, container, state.Status in ACTIVE)
    return {
        "Id": container.id,
        "Names": ["/" + record.get("Name", "")],
        "Image": record.get("ImageName") or record.get("Image", ""),
        "ImageID": record.get("Image", ""),
        "Command": " ".join(w for w in [record.get("Path") or "", *(record.get("Args") or [])] if w),
        "Created": _created_seconds(record),
        "Ports": port_list(settings),
        "Labels": labels(record),
        "State": state.Status,
        "Status": views.status_text(state, now),
        "HostConfig": {"NetworkMode": (record.get("HostConfig") or {}).get("NetworkMode", "")},
        "NetworkSettings": {"Networks": settings.get("Networks") or {}},
        "Mounts": views.mounts(record),
    }


def inspect(container: Container, state: State) -> dict[str, Any]:
    """`GET /containers/{id}/json`: minirun's inspect document, with the fields clients index into."""
    doc = views.inspect_document(container, state)
    doc["Config"].setdefault("Labels", {})
    doc["Config"]["Labels"] = doc["Config"]["Labels"] or {}
    doc["Config"].setdefault("AttachStdin", False)
    doc["Config"].setdefault("AttachStdout", False)
    doc["Config"].setdefault("AttachStderr", False)
    doc["ExecIDs"] = None
    doc["Platform"] = "linux"
    doc["SizeRw"] = 0
    doc["HostConfig"] = {"LogConfig": {"Type": "json-file", "Config": {}}, **doc["HostConfig"]}
    return doc


def filter_matches(filters: dict[str, list[str]], container: Container, state: State) -> bool:
    """Docker's container filters: status, name, id (minirun ps's rules) and label (KEY or KEY=VALUE)."""
    from minirun.cli.commands.ps import matches

    basic = {k: v for k, v in filters.items() if k in ("status", "name", "id")}
    record = container.record
    if not matches(basic, container.id, record.get("Name", ""), state.Status):
        return False
    own = labels(record)
    for item in filters.get("label", []):
        key, eq, value = item.partition("=")
        if key not in own or (eq and own[key] != value):
            return False
    return all(item in (record.get("ImageName"), record.get("Image")) for item in filters.get("ancestor", []))


# -- stats --------------------------------------------------------------------------------------------------------
def system_cpu_ns() -> int:
    """The host's CPU time since boot, all CPUs (Docker's system_cpu_usage: the denominator of CPU %)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:9]
    return sum(int(x) for x in fields) * _CLOCK_TICK_NS


def _rfc3339(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e9):09d}Z"


class Sample:
    """One reading of a container for the stats endpoint: cgroup counters, host CPU time, network."""

    __slots__ = ("nets", "read", "stats", "system")

    def __init__(
        self, stats: CgroupStats | None, pid: int, *, read: float | None = None, system: int | None = None
    ) -> None:
        from minirun.engine import usage

        self.stats = stats
        self.read = time.time() if read is None else read
        self.system = system_cpu_ns() if system is None else system
        self.nets = (usage.interfaces(pid) if pid else None) or {}


def _cpu(sample: Sample | None) -> dict[str, Any]:
    if sample is None or sample.stats is None or sample.stats.cpu_ns is None:
        return {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    s = sample.stats
    return {
        "cpu_usage": {
            "total_usage": s.cpu_ns,
            "usage_in_kernelmode": s.cpu_system_ns or 0,
            "usage_in_usermode": s.cpu_user_ns or 0,
        },
        "system_cpu_usage": sample.system,
        "online_cpus": _CPUS,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": s.cpu_throttled_ns or 0},
    }


def stats(container: Container, now: Sample, before: Sample | None) -> dict[str, Any]:
    """One `GET /containers/{id}/stats` object in Docker's shape, so the CLI's columns fill."""
    from minirun.cgroups.stats import host_memory

    s = now.stats
    doc: dict[str, Any] = {
        "read": _rfc3339(now.read),
        "preread": _rfc3339(before.read) if before is not None else views.ZERO_TIME,
        "name": "/" + container.name,
        "id": container.id,
        "pids_stats": {},
        "blkio_stats": {"io_service_bytes_recursive": []},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(now),
        "precpu_stats": _cpu(before),
        "memory_stats": {},
        "networks": {
            name: {"rx_bytes": c[0], "tx_bytes": c[1], "rx_packets": c[2], "tx_packets": c[3]}
            for name, c in now.nets.items()
        },
    }
    if s is None:
        return doc
    if s.pids is not None:
        doc["pids_stats"] = {"current": s.pids, **({"limit": s.pids_limit} if s.pids_limit else {})}
    if s.block_read_bytes is not None or s.block_write_bytes is not None:
        doc["blkio_stats"]["io_service_bytes_recursive"] = [
            {"major": 0, "minor": 0, "op": "read", "value": s.block_read_bytes or 0},
            {"major": 0, "minor": 0, "op": "write", "value": s.block_write_bytes or 0},
        ]
    if s.memory_bytes is not None:
        doc["memory_stats"] = {
            "usage": s.memory_bytes,
            "limit": s.memory_limit if s.memory_limit is not None else (host_memory() or 0),
            "failcnt": s.memory_limit_hits,
            "stats": {"total_inactive_file": s.memory_cache_bytes or 0, "inactive_file": s.memory_cache_bytes or 0},
        }
    return doc


# -- images -------------------------------------------------------------------------------------------------------
def image_summary(store: Store, record: ImageRecord, containers: int = -1) -> dict[str, Any]:
    """One entry of `GET /images/json`."""
    from minicache import imageinfo, reference

    tags, digests = [], []
    for n in store.images.names_of(record.id):
        ref = reference.parse(n, default_tag=False)
        (digests if ref.digest else tags).append(ref.familiar)
    config = {}
    with contextlib.suppress(OSError, ValueError):
        config = store.images.config(record).get("config") or {}
    size = imageinfo.image_size(store, record)
    return {
        "Id": record.id,
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": int(views.parse_time(_utc(imageinfo.created(store, record))) or 0),
        "Size": size,
        "VirtualSize": size,
        "SharedSize": -1,
        "Labels": config.get("Labels") or {},
        "Containers": containers,
        "Layers": len(record.layers),
    }


def _utc(stamp: str | None) -> str | None:
    """An RFC 3339 time as views.parse_time reads it (UTC, Z); other offsets count as unknown."""
    if not stamp:
        return None
    if stamp.endswith("+00:00"):
        return stamp[:-6] + "Z"
    return stamp


# -- events -------------------------------------------------------------------------------------------------------
def event(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored event (minicache.events) as `GET /events` sends it."""
    nano = int(entry.get("timeNano") or 0)
    attributes = entry.get("Attributes") or {}
    doc: dict[str, Any] = {
        "Type": entry.get("Type", ""),
        "Action": entry.get("Action", ""),
        "Actor": {"ID": entry.get("ID", ""), "Attributes": attributes},
        "scope": "local",
        "time": nano // 1_000_000_000,
        "timeNano": nano,
    }
    if doc["Type"] == "container":
        doc.update(status=doc["Action"], id=doc["Actor"]["ID"], **{"from": attributes.get("image", "")})
    elif doc["Type"] == "image":
        doc.update(status=doc["Action"], id=attributes.get("name") or doc["Actor"]["ID"])
    return doc


def event_matches(filters: dict[str, list[str]], entry: dict[str, Any]) -> bool:
    """Docker's event filters: type, event (action), container (ID prefix or name), image, label."""
    attributes = entry.get("Attributes") or {}
    actor = entry.get("ID", "")
    kind = entry.get("Type", "")

    def container_ok(v: str) -> bool:
        return kind == "container" and (actor.startswith(v) or attributes.get("name") == v)

    def image_ok(v: str) -> bool:
        names = (attributes.get("image"), attributes.get("name")) if kind in ("container", "image") else ()
        return v in names or (kind == "image" and actor.removeprefix("sha256:").startswith(v.removeprefix("sha256:")))

    def label_ok(v: str) -> bool:
        key, eq, value = v.partition("=")
        return key in attributes and (not eq or attributes[key] == value)

    checks = {
        "type": lambda v: kind == v,
        "event": lambda v: entry.get("Action") == v or entry.get("Action", "").split(":")[0] == v,
        "container": container_ok,
        "image": image_ok,
        "label": label_ok,
    }
    return all(any(checks[k](v) for v in values) for k, values in filters.items() if k in checks)


# -- the daemon -----------------------------------------------------------------------------------------------------
def version() -> dict[str, Any]:
    uname = os.uname()
    v = version_string()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    common = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "python" + platform.python_version(),
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": uname.release,
        "BuildTime": "",
    }
    details = {**common, "Experimental": "false"}
    return {
        "Platform": {"Name": "minicontainer"},
        "Components": [{"Name": "Engine", "Version": v, "Details": details}],
        "Version": v,
        **common,
    }


def info(store: Store, counts: dict[str, int]) -> dict[str, Any]:
    from minirun.cgroups.stats import host_memory

    uname = os.uname()
    cgroup_version = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    return {
        "ID": "",
        "Containers": sum(counts.values()),
        "ContainersRunning": counts.get("running", 0),
        "ContainersPaused": counts.get("paused", 0),
        "ContainersStopped": sum(v for k, v in counts.items() if k not in ("running", "paused")),
        "Images": len(store.images.ids()),
        "Driver": "overlay",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "none"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": _rfc3339(time.time()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": uname.release,
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": host_memory() or 0,
        "DockerRootDir": str(store.root),
        "Name": uname.nodename,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": version_string(),
        "Runtimes": {"minirun-runtime": {"path": "minirun-runtime"}},
        "DefaultRuntime": "minirun-runtime",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": False},
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "tini",
        "SecurityOptions": ["name=seccomp,profile=default"],
        "Warnings": [],
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"

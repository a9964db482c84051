"""How containers are shown: `ps` rows, `inspect` documents and Go-template `-f` (units and tables: minishow)."""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from typing import Any

from minirun.engine.containers import ACTIVE, EXITED, PAUSED, RESTARTING, Container, State
from minishow import human_duration
from minishow import table as show_table

ZERO_TIME = "0001-01-01T00:00:00Z"  # Docker's "never"
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_time(stamp: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC timestamp as minirun writes them (None for none)."""
    if not stamp or stamp == ZERO_TIME:
        return None
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", stamp)
    if not m:
        return None
    fields = [int(v) for v in m.groups()[:6]]
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 62):
        return None  # what strptime refused; timegm (no strptime: a listing parses one per container) would not
    return calendar.timegm((*fields, 0, 0, 0)) + float("0." + (m.group(7) or "0"))


def _since(stamp: str | None, now: float) -> str:
    at = parse_time(stamp)
    return human_duration(max(0.0, now - at)) if at is not None else "Less than a second"


def status_text(state: State, now: float | None = None) -> str:
    """The STATUS column: "Up 5 seconds", "Up 2 minutes (Paused)", "Exited (0) 3 seconds ago", "Created"."""
    now = time.time() if now is None else now
    if state.Status in ACTIVE:
        text = f"Up {_since(state.StartedAt, now)}"
        return text + " (Paused)" if state.Status == PAUSED else text
    if state.Status == RESTARTING:
        return f"Restarting ({state.ExitCode}) {_since(state.FinishedAt, now)} ago"
    if state.Status == EXITED:
        return f"Exited ({state.ExitCode}) {_since(state.FinishedAt, now)} ago"
    return "Created"


def command_text(record: dict[str, Any], truncate: bool) -> str:
    """The COMMAND column: the process's command line, quoted, cut to 20 characters unless --no-trunc."""
    words = [record.get("Path") or "", *(record.get("Args") or [])]
    text = " ".join(w for w in words if w)
    if truncate and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def ps_row(container: Container, state: State, *, truncate: bool = True, now: float | None = None) -> dict[str, str]:
    """One `ps` row, keyed like `docker ps --format json`."""
    now = time.time() if now is None else now
    record = container.record
    created = record.get("Created")
    created_at = parse_time(created)
    return {
        "Command": command_text(record, truncate),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created_at or 0)),
        "ID": container.id[:12] if truncate else container.id,
        "Image": record.get("ImageName") or record.get("Image", ""),
        "Labels": ",".join(f"{k}={v}" for k, v in ((record.get("Config") or {}).get("Labels") or {}).items()),
        "LocalVolumes": "0",
        "Mounts": ",".join(m["Destination"] for m in mounts(record)),
        "Names": record.get("Name", ""),
        "Networks": (record.get("HostConfig") or {}).get("NetworkMode", ""),
        "Ports": _ports(container, state),
        "RunningFor": _since(created, now) + " ago",
        "Size": "0B",
        "State": state.Status,
        "Status": status_text(state, now),
    }


def _ports(container: Container, state: State) -> str:
    if state.Status not in ACTIVE:
        return ""
    from minirun.engine import networking

    return networking.ports_column(container.store, container)


PS_COLUMNS = (
    ("CONTAINER ID", "ID"),
    ("IMAGE", "Image"),
    ("COMMAND", "Command"),
    ("CREATED", "RunningFor"),
    ("STATUS", "Status"),
    ("PORTS", "Ports"),
    ("NAMES", "Names"),
)


def table(rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...]) -> str:
    """Docker's aligned table of `rows` (dicts keyed like `--format json`), header first."""
    return show_table([title for title, _ in columns], [[row[key] for _, key in columns] for row in rows])


def mounts(record: dict[str, Any]) -> list[dict[str, Any]]:
    """docker inspect's Mounts: the -v binds and --tmpfs mounts."""
    options = record.get("Options") or {}
    out: list[dict[str, Any]] = []
    for v in options.get("volumes") or []:
        out.append(
            {
                "Type": "bind",
                "Source": v["source"],
                "Destination": v["destination"],
                "Mode": "ro" if v.get("readonly") else "",
                "RW": not v.get("readonly"),
                "Propagation": v.get("propagation", "rprivate"),
            }
        )
    for t in options.get("tmpfs") or []:
        out.append(
            {
                "Type": "tmpfs",
                "Source": "",
                "Destination": t["destination"],
                "Mode": ",".join(t.get("options") or []),
                "RW": True,
                "Propagation": "",
            }
        )
    return out


def inspect_document(container: Container, state: State) -> dict[str, Any]:
    """What `docker inspect` shows for a container (the subset minirun has, same names)."""
    from minirun.engine.logs import LOG_NAME

    record = container.record
    host_config = record.get("HostConfig") or {}
    return {
        "Id": container.id,
        "Created": record.get("Created"),
        "Path": record.get("Path", ""),
        "Args": record.get("Args") or [],
        "State": {
            "Status": state.Status,
            "Running": state.Status in ACTIVE,
            "Paused": state.Status == PAUSED,
            "Restarting": state.Status == RESTARTING,
            "OOMKilled": bool(state.OOMKilled),
            "Dead": False,
            "Pid": state.Pid if state.Status in ACTIVE else 0,
            "ExitCode": state.ExitCode or 0,
            "Error": state.Error or "",
            "StartedAt": state.StartedAt or ZERO_TIME,
            "FinishedAt": state.FinishedAt or ZERO_TIME,
        },
        "Image": record.get("Image"),
        "ResolvConfPath": os.path.join(container.dir, "resolv.conf"),
        "HostnamePath": os.path.join(container.dir, "hostname"),
        "HostsPath": os.path.join(container.dir, "hosts"),
        "LogPath": os.path.join(container.dir, LOG_NAME),
        "Name": "/" + record.get("Name", ""),
        "RestartCount": state.RestartCount,
        "Driver": record.get("Driver", ""),
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": host_config,
        "GraphDriver": {"Name": record.get("Driver", ""), "Data": {"UpperDir": str(container.upper)}},
        "Mounts": mounts(record),
        "Config": {**(record.get("Config") or {}), "Hostname": _hostname(container, record)},
        "NetworkSettings": _network_settings(container, state),
    }


def _network_settings(container: Container, state: State) -> dict[str, Any]:
    from minirun.engine import networking

    return networking.network_settings(container.store, container, state.Status in ACTIVE)


def _hostname(container: Container, record: dict[str, Any]) -> str:
    configured = (record.get("Config") or {}).get("Hostname")
    return configured or container.id[:12]


def _go_value(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render(template: str, document: dict[str, Any]) -> str:
    """The subset of Go templates `docker inspect -f` is mostly used with: `{{.A.B}}` and `{{json .A}}`."""

    def field(m: re.Match[str]) -> str:
        value: Any = document
        for key in filter(None, m.group(2).split(".")):
            value = value.get(key) if isinstance(value, dict) else None
        return json.dumps(value) if m.group(1) else _go_value(value)

    return re.sub(r"\{\{\s*(json\s+)?\.([\w.]*)\s*\}\}", field, template)

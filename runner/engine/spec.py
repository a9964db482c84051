"""Image config + `run` flags → an OCI runtime spec (config.json). A pure function: no I/O, no clock.

What the engine has to find out first (the resolved user, the container's ID and files, the host's
devices for --privileged, where tini is) comes in a SpecContext, so every decision is made here and can
be tested without a kernel. Defaults follow Docker: its 14 capabilities, masked and read-only /proc paths,
/sys read-only, a tmpfs /dev, its seccomp profile; plus no_new_privs unless asked otherwise.
"""

from __future__ import annotations

import posixpath
from typing import Any

from minicache.errors import InvalidSpec
from minicache.record import Record
from minirun.engine import seccomp_profile
from minirun.engine.flags import Tmpfs, Ulimit, Volume
from minirun.engine.users import User
from minirun.runtime import caps as capabilities
from minirun.runtime.config import BUILTIN_INIT_ANNOTATION

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH = "/dev/init"
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# Docker's device cgroup allowlist: deny all, then the standard nodes, ptys and mknod of any char/block node.
DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
)
# Docker's limit. An overlay stacks at most 500 lower directories, and its mount options must fit one page.
MAX_LAYERS = 125
_BAD_IMAGE_HINT = "the image was stored by an older minibuild, which did not check this: rebuild or fix the image"
_TMPFS_DEFAULTS = ("nosuid", "nodev", "noexec")
_TMPFS_OPPOSITES = {"suid": "nosuid", "dev": "nodev", "exec": "noexec"}


class RunOptions(Record):
    """The user-facing choices of `minirun run` (already parsed and checked by minirun.engine.flags)."""

    command: list[str] = []
    entrypoint: str | None = None  # None: the image's; "": none at all
    env: list[str] = []  # KEY=VALUE, env files first, then -e, later ones win
    workdir: str | None = None
    user: str | None = None  # --user as given (NAME|UID[:GROUP|GID]); None: the image's User
    hostname: str | None = None
    tty: bool = False
    interactive: bool = False
    volumes: list[Volume] = []
    tmpfs: list[Tmpfs] = []
    read_only: bool = False
    cap_add: list[str] = []
    cap_drop: list[str] = []
    privileged: bool = False
    ulimits: list[Ulimit] = []
    init: bool = False
    network: str = "none"  # none (a private netns, loopback) | host | bridge | container:ID | NAME (the CLI: bridge)
    publish: list[str] = []  # -p values, as given
    publish_all: bool = False  # -P
    add_hosts: list[str] = []  # --add-host NAME:IP
    dns: list[str] = []
    dns_search: list[str] = []
    dns_options: list[str] = []
    ip: str | None = None  # --ip (user-defined networks)
    network_aliases: list[str] = []  # --network-alias
    seccomp: str | dict[str, Any] = "default"  # "default" | "unconfined" | a Docker-format profile
    no_new_privileges: bool = True
    resources: dict[str, Any] = {}  # OCI linux.resources from --memory, --cpus, --pids-limit, ...
    cgroup_parent: str | None = None  # the container's cgroup is /<cgroup_parent>/<id>; None: the default


class SpecContext(Record):
    """Facts the engine gathered for one container."""

    container_id: str
    user: User | None = None  # None: root
    files: dict[str, str] = {}  # container path → host file (hostname, hosts, resolv)
    host_hostname: str = "localhost"
    init_path: str | None = None  # a static init (tini) to bind-mount; None: the runtime's built-in one
    host_devices: list[dict[str, Any]] = []  # for --privileged
    netns_path: str | None = None  # join this network namespace (how bridge networking plugs in)
    resources: dict[str, Any] = {}  # OCI linux.resources from the cgroup flags
    console_size: tuple[int, int] | None = None
    cgroups_path: str | None = None
    arch: str | None = None  # Go-style; default: this machine's
    kernel_caps: tuple[str, ...] | None = None  # what --privileged grants; None: what we may grant


def image_settings(config: object, name: str, layers: int) -> dict[str, Any]:
    """The run settings (`config`) of an image config, with the types `build` relies on; InvalidSpec otherwise.

    minibuild refuses such images at pull and import, but a store can hold one from before that check.
    """
    if layers > MAX_LAYERS:
        raise InvalidSpec(
            f"image {name} has {layers} layers; minirun runs images of at most {MAX_LAYERS} layers",
            hint="squash the image into fewer layers",
        )
    settings = config.get("config") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not isinstance(settings, (dict, type(None))):
        raise InvalidSpec(f"image {name} has an invalid config: it is not a JSON object", hint=_BAD_IMAGE_HINT)
    settings = settings or {}
    for key in ("Env", "Cmd", "Entrypoint"):
        value = settings.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidSpec(
                f"image {name} has an invalid config: {key} is not a list of strings", hint=_BAD_IMAGE_HINT
            )
    for key in ("WorkingDir", "User", "StopSignal"):
        value = settings.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidSpec(f"image {name} has an invalid config: {key} is not a string", hint=_BAD_IMAGE_HINT)
    if not isinstance(settings.get("ExposedPorts") or {}, dict):
        raise InvalidSpec(f"image {name} has an invalid config: ExposedPorts is not an object", hint=_BAD_IMAGE_HINT)
    return settings


def _env_key(item: str) -> str:
    return item.split("=", 1)[0]


def merge_env(image_env: list[str], flags_env: list[str], extra: dict[str, str]) -> list[str]:
    """Image env, then the flags' (later wins, order of first appearance kept), then `extra` where unset."""
    merged: dict[str, str] = {}
    for item in [*image_env, *flags_env]:
        merged[_env_key(item)] = item
    for key, value in extra.items():
        merged.setdefault(key, f"{key}={value}")
    return list(merged.values())


def process_args(image: dict[str, Any], opts: RunOptions) -> list[str]:
    """Docker's rule: --entrypoint replaces the image's (and drops its Cmd); a command replaces Cmd."""
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entrypoint = list(image.get("Entrypoint") or [])
        cmd = list(opts.command) if opts.command else list(image.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidSpec("no command specified", hint="give a command after the image name or use --entrypoint")
    return args


def working_dir(image: dict[str, Any], opts: RunOptions) -> str:
    cwd = opts.workdir if opts.workdir is not None else (image.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        raise InvalidSpec(f"the working directory {cwd!r} is invalid: it needs to be an absolute path")
    return posixpath.normpath("/" + cwd.lstrip("/"))  # `/../..` stays `/`; symlinks are resolved inside later


def _normalized(names: list[str]) -> list[str]:
    try:
        return [capabilities.normalize(n) for n in names]
    except ValueError as e:
        raise InvalidSpec(str(e), hint="capabilities are names like NET_ADMIN or CAP_NET_ADMIN, or ALL") from None


def capability_set(opts: RunOptions, kernel_caps: tuple[str, ...]) -> list[str]:
    """The container's bounding set: Docker's defaults with --cap-add/--cap-drop, or everything for --privileged."""
    every = list(kernel_caps)
    adds, drops = _normalized(opts.cap_add), _normalized(opts.cap_drop)
    unavailable = [c for c in adds if c != "ALL" and c not in every]
    if unavailable:
        raise InvalidSpec(
            f"cannot add {', '.join(unavailable)}: this host does not give it to minirun",
            hint="check the capabilities of the process running minirun (CapBnd in /proc/self/status)",
        )
    if opts.privileged:
        return every
    current = every if "ALL" in adds else list(capabilities.DOCKER_DEFAULT)
    current = [] if "ALL" in drops else [c for c in current if c not in drops]
    for cap in adds:
        if cap != "ALL" and cap not in current:
            current.append(cap)
    return sorted((c for c in current if c in every), key=capabilities.NUMBERS.__getitem__)


def capabilities_for(opts: RunOptions, user: User, kernel_caps: tuple[str, ...]) -> dict[str, list[str]]:
    """Root gets the whole set (bounding, permitted, effective; inheritable empty, as Docker since CVE-2022-24769).

    Other users get only what --cap-add asked for (even with --privileged), in every set including ambient
    so it survives execve (Podman's rule); the bounding set stays whole so setuid binaries work as in Docker.
    """
    bounding = capability_set(opts, kernel_caps)
    if user.uid == 0:
        return {"bounding": bounding, "effective": bounding, "permitted": bounding, "inheritable": [], "ambient": []}
    wanted = set(_normalized(opts.cap_add))
    granted = bounding if "ALL" in wanted else [c for c in bounding if c in wanted]
    return {
        "bounding": bounding,
        "effective": granted,
        "permitted": granted,
        "inheritable": granted,
        "ambient": granted,
    }


def _tmpfs_options(user_options: tuple[str, ...]) -> list[str]:
    """Docker's tmpfs defaults (nosuid, nodev, noexec) unless the user says suid, dev or exec."""
    options = list(_TMPFS_DEFAULTS)
    for option in user_options:
        if option in _TMPFS_OPPOSITES:
            options.remove(_TMPFS_OPPOSITES[option])
        if option not in options:
            options.append(option)
    return options


def _default_mounts(opts: RunOptions) -> list[dict[str, Any]]:
    sys_mode = "rw" if opts.privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
    ]


def mounts_for(opts: RunOptions, ctx: SpecContext) -> list[dict[str, Any]]:
    """Default mounts, the per-container files, then the user's; a user mount replaces one on the same path.

    Sorted by path depth (stable), so /dev comes before /dev/pts and a bind under a tmpfs lands on it.
    """
    mounts = _default_mounts(opts)
    for dest, source in ctx.files.items():
        mounts.append({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
    if opts.init and ctx.init_path:
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": ctx.init_path, "options": ["bind", "ro"]})
    user: list[dict[str, Any]] = []
    for v in opts.volumes:
        options = ["rbind", v.propagation] + (["ro"] if v.readonly else [])
        user.append({"destination": v.destination, "type": "bind", "source": v.source, "options": options})
    for t in opts.tmpfs:
        user.append(
            {"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": _tmpfs_options(t.options)}
        )
    taken = {m["destination"] for m in user}
    if len(taken) != len(user):
        raise InvalidSpec("two volumes or tmpfs mounts have the same destination")
    merged = [m for m in mounts if m["destination"] not in taken] + user
    return sorted(merged, key=lambda m: len([p for p in m["destination"].split("/") if p]))


def _namespaces(opts: RunOptions, ctx: SpecContext) -> list[dict[str, Any]]:
    namespaces: list[dict[str, Any]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if ctx.netns_path:
        namespaces.append({"type": "network", "path": ctx.netns_path})
    elif opts.network != "host":
        namespaces.append({"type": "network"})
    return namespaces


def _seccomp(opts: RunOptions, bounding: list[str], arch: str | None) -> dict[str, Any] | None:
    if opts.privileged or opts.seccomp == "unconfined":
        return None
    profile = seccomp_profile.DEFAULT_PROFILE if opts.seccomp == "default" else opts.seccomp
    if not isinstance(profile, dict):
        raise InvalidSpec(
            f"invalid seccomp option {opts.seccomp!r}", hint="use seccomp=unconfined or seccomp=FILE.json"
        )
    return seccomp_profile.to_oci(profile, bounding, arch)


def build(image: dict[str, Any], opts: RunOptions, ctx: SpecContext) -> dict[str, Any]:
    """The OCI runtime spec for one container. `image` is the image config's `config` object."""
    if opts.network not in ("none", "host") and not ctx.netns_path:
        raise InvalidSpec(
            f"network mode {opts.network!r} needs the network namespace prepared by minirun.network",
            hint="attach the container first (minirun.engine.networking.attach)",
        )
    args = process_args(image, opts)
    if opts.init:
        args = [INIT_PATH, "--", *args] if ctx.init_path else args
    hostname = opts.hostname or (ctx.host_hostname if opts.network == "host" else ctx.container_id[:12])
    extra_env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": (ctx.user.home if ctx.user else "/root") or "/"}
    if opts.tty:
        extra_env["TERM"] = "xterm"
    user = ctx.user or User(0, 0)
    caps = capabilities_for(opts, user, ctx.kernel_caps or capabilities.available())
    process: dict[str, Any] = {
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": merge_env(list(image.get("Env") or []), opts.env, extra_env),
        "cwd": working_dir(image, opts),
        "capabilities": caps,
        "noNewPrivileges": opts.no_new_privileges,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    if opts.tty and ctx.console_size:
        process["consoleSize"] = {"height": ctx.console_size[0], "width": ctx.console_size[1]}
    if opts.ulimits:
        process["rlimits"] = [{"type": u.name, "soft": u.soft, "hard": u.hard} for u in opts.ulimits]
    resources = {"devices": [dict(r) for r in DEVICE_RULES], **opts.resources, **ctx.resources}
    if opts.privileged:
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    linux: dict[str, Any] = {
        "namespaces": _namespaces(opts, ctx),
        "resources": resources,
        "rootfsPropagation": "rprivate",
    }
    if ctx.cgroups_path:
        linux["cgroupsPath"] = ctx.cgroups_path
    if opts.privileged:
        linux["devices"] = list(ctx.host_devices)
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    seccomp = _seccomp(opts, caps["bounding"], ctx.arch)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    annotations = {}
    if opts.init and not ctx.init_path:
        annotations[BUILTIN_INIT_ANNOTATION] = "builtin"
    if image.get("StopSignal"):
        annotations["org.opencontainers.image.stopSignal"] = str(image["StopSignal"])
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts_for(opts, ctx),
        "linux": linux,
    }
    if annotations:
        spec["annotations"] = annotations
    return spec

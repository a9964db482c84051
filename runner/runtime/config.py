"""Read and check an OCI bundle's config.json, and pre-digest it into what the child process needs.

Everything that can fail on bad input fails here, in the parent, as `InvalidSpec`; the child only makes
system calls. (After pivot_root the child cannot import anything either: the host's files are gone.)
"""

from __future__ import annotations

import json
import os
import resource
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec
from minicache.record import Record
from minicache.syscalls import MS_PRIVATE, MS_REC
from minirun.runtime import caps as capabilities
from minirun.runtime import syscalls as sc
from minirun.runtime.mounts import PROPAGATION, Device, Mount, plan, plan_devices

if TYPE_CHECKING:
    from typing import Any

    from minirun.runtime.cgroup import CgroupHook

NAMESPACE_FLAGS = {
    "pid": sc.CLONE_NEWPID,
    "network": sc.CLONE_NEWNET,
    "mount": sc.CLONE_NEWNS,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "cgroup": sc.CLONE_NEWCGROUP,
    "user": sc.CLONE_NEWUSER,
    "time": 0x80,
}
BUILTIN_INIT_ANNOTATION = "org.minicontainer.init"  # value "builtin": the runtime's own reaper is PID 1


class ChildConfig(Record):
    """Plain data for the child; built by `prepare` in the parent."""

    rootfs: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    unshare_flags: int = 0
    join_namespaces: list[tuple[str, int]] = []
    pid_namespace: tuple[str | None, bool] = (None, False)  # (path to join, new one?)
    new_netns: bool = False
    hostname: str | None = None
    domainname: str | None = None
    root_propagation: int = MS_PRIVATE | MS_REC
    mounts: list[Mount] = []
    devices: list[Device] | None = None  # None: the spec gives the container no /dev of its own
    masked: list[str] = []
    readonly: list[str] = []
    root_readonly: bool = False
    sysctl: dict[str, str] = {}
    rlimits: list[tuple[int, int, int]] = []
    oom_score_adj: int | None = None
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = []
    umask: int = 0o022
    bounding: int = 0
    caps: dict[str, list[str]] = {}
    no_new_privs: bool = False
    seccomp: bytes | None = None
    terminal: bool = False
    console_size: tuple[int, int] = (0, 0)
    stdin_null: bool = False
    builtin_init: bool = False
    kill_with_parent: bool = True
    wait_for_go: bool = False  # stop after the namespaces exist until the parent says go (it has work to do)
    preserve_fds: int = 0
    cgroup: CgroupHook | None = None
    resources: dict[str, Any] = {}
    join_existing: bool = False  # exec: enter a running container (namespaces, cgroup); no filesystem set-up
    console_path: str | None = None  # exec with a terminal: the pty the spawned command opens
    inside_hooks: dict[str, list[dict[str, Any]]] = {}  # createContainer and startContainer: the child runs them
    hook_state: str = ""  # the state JSON those hooks read, from the parent's GO
    exec_fifo: str | None = None  # create: wait before execve until `start` opens this fifo (runc's exec fifo)
    sealed: bool = False  # exec into a container with CAP_SYS_PTRACE: run from a sealed copy (runtime.sealed)


def load(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise InvalidSpec(
            f"{path} does not exist", hint="a bundle is a directory with config.json and a rootfs"
        ) from None
    except ValueError as e:
        raise InvalidSpec(f"{path} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{path} must hold a JSON object")
    return spec


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidSpec(message)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _namespaces(spec: dict[str, Any], cfg: ChildConfig) -> None:
    seen = set()
    for ns in spec.get("linux", {}).get("namespaces") or ():
        kind, path = ns.get("type"), ns.get("path")
        _need(kind in NAMESPACE_FLAGS, f"unknown namespace type {kind!r}")
        _need(kind not in seen, f"namespace {kind} is listed twice")
        seen.add(kind)
        if kind in ("user", "time"):
            raise InvalidSpec(f"{kind} namespaces are not supported by this runtime")
        if path is not None:
            _need(isinstance(path, str) and os.path.exists(path), f"namespace path {path!r} ({kind}) does not exist")
        flag = NAMESPACE_FLAGS[kind]
        if kind == "pid":
            cfg.pid_namespace = (path, path is None)
        elif path is not None:
            cfg.join_namespaces.append((path, flag))
        else:
            cfg.unshare_flags |= flag
            cfg.new_netns = cfg.new_netns or kind == "network"
    _need("mount" in seen, "the spec has no mount namespace; this runtime always needs one")


def _rlimits(process: dict[str, Any]) -> list[tuple[int, int, int]]:
    out = []
    for limit in process.get("rlimits") or ():
        name = limit.get("type", "")
        number = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
        _need(isinstance(number, int), f"unknown rlimit type {name!r}")
        soft, hard = limit.get("soft"), limit.get("hard")
        _need(isinstance(soft, int) and isinstance(hard, int) and 0 <= soft <= hard, f"invalid {name} limits {limit}")
        out.append((number, *(resource.RLIM_INFINITY if v >= 2**63 else v for v in (soft, hard))))  # type: ignore[arg-type]
    return out


def prepare(
    spec: dict[str, Any],
    bundle: str | os.PathLike[str],
    *,
    stdin_open: bool = True,
    seccomp_cache: str | None = None,
    kill_with_parent: bool = True,
    preserve_fds: int = 0,
    cgroup: CgroupHook | None = None,
) -> ChildConfig:
    """Check `spec` and turn it into a ChildConfig (raises InvalidSpec with the first problem found)."""
    _need(str(spec.get("ociVersion", "")).startswith("1."), "ociVersion must be 1.x")
    process = spec.get("process")
    _need(isinstance(process, dict), "the spec has no process")
    root = spec.get("root") or {}
    root_path = os.path.join(bundle, root.get("path", "rootfs"))
    _need(os.path.isdir(root_path), f"root.path {root_path} is not a directory")
    linux = spec.get("linux") or {}
    _need(not linux.get("uidMappings") and not linux.get("gidMappings"), "user namespace mappings are not supported")
    cfg = ChildConfig(rootfs=os.path.realpath(root_path), args=[], env={}, cwd="/")
    _process(process, cfg)
    _namespaces(spec, cfg)
    cfg.hostname = spec.get("hostname") or None
    cfg.domainname = spec.get("domainname") or None
    if cfg.hostname or cfg.domainname:
        _need(
            bool(cfg.unshare_flags & sc.CLONE_NEWUTS or any(f == sc.CLONE_NEWUTS for _, f in cfg.join_namespaces)),
            "a hostname needs a UTS namespace",
        )
    propagation = linux.get("rootfsPropagation") or "rprivate"
    _need(propagation in PROPAGATION, f"unknown rootfsPropagation {propagation!r}")
    cfg.root_propagation = PROPAGATION[propagation]
    cfg.mounts = plan(spec.get("mounts") or [])
    if any(m.destination.rstrip("/") == "/dev" for m in cfg.mounts):
        cfg.devices = plan_devices(linux.get("devices"))
    cfg.masked = list(linux.get("maskedPaths") or [])
    cfg.readonly = list(linux.get("readonlyPaths") or [])
    cfg.root_readonly = bool(root.get("readonly"))
    for key in linux.get("sysctl") or {}:
        _need(key.replace(".", "").replace("_", "").replace("-", "").isalnum(), f"invalid sysctl name {key!r}")
    cfg.sysctl = {k: str(v) for k, v in (linux.get("sysctl") or {}).items()}
    if linux.get("seccomp"):
        from minirun.runtime import seccomp

        cfg.seccomp = seccomp.program(linux["seccomp"], seccomp_cache)
    cfg.stdin_null = not stdin_open
    cfg.builtin_init = (spec.get("annotations") or {}).get(BUILTIN_INIT_ANNOTATION) == "builtin"
    if cfg.builtin_init and cfg.bounding >> capabilities.NUMBERS["CAP_SYS_PTRACE"] & 1:
        raise InvalidSpec(
            "the built-in init cannot run in a container with CAP_SYS_PTRACE: it is a copy of the host's "
            "interpreter, which the container could then open and overwrite",
            hint="install tini (tini-static) for --init, or leave CAP_SYS_PTRACE out",
        )
    cfg.kill_with_parent = kill_with_parent
    cfg.preserve_fds = preserve_fds
    cfg.cgroup = cgroup
    cfg.resources = linux.get("resources") or {}
    hooks = spec.get("hooks") or {}
    cfg.inside_hooks = {k: list(hooks[k]) for k in ("createContainer", "startContainer") if hooks.get(k)}
    return cfg


def _process(process: dict[str, Any], cfg: ChildConfig) -> None:
    """The OCI `process` object into `cfg`: command, environment, user, capabilities, limits, terminal."""
    args = process.get("args")
    _need(_is_str_list(args) and bool(args), "process.args must be a non-empty list of strings")
    cwd = process.get("cwd", "/")
    _need(isinstance(cwd, str) and cwd.startswith("/"), f"process.cwd {cwd!r} must be an absolute path")
    env_list = process.get("env") or []
    _need(_is_str_list(env_list), "process.env must be a list of strings")
    cfg.args = list(args)
    cfg.cwd = cwd
    cfg.env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env_list)
    cfg.rlimits = _rlimits(process)
    cfg.oom_score_adj = process.get("oomScoreAdj")
    user = process.get("user") or {}
    cfg.uid, cfg.gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    cfg.additional_gids = [int(g) for g in user.get("additionalGids") or []]
    cfg.umask = int(user.get("umask", 0o022))
    caps = process.get("capabilities") or {}
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        names = caps.get(kind) or []
        _need(_is_str_list(names), f"process.capabilities.{kind} must be a list of names")
        unknown = [n for n in names if n not in capabilities.NUMBERS]
        _need(not unknown, f"unknown capabilities in process.capabilities.{kind}: {', '.join(unknown)}")
    cfg.bounding = capabilities.mask(caps.get("bounding"))
    _eff, permitted, _inh = sc.capget()
    wanted = cfg.bounding | capabilities.mask(caps.get("permitted")) | capabilities.mask(caps.get("ambient"))
    missing = capabilities.names_of(wanted & ~permitted)
    _need(not missing, f"the runtime does not hold {', '.join(missing)} itself and cannot grant it to the container")
    cfg.caps = {k: list(caps.get(k) or []) for k in ("effective", "permitted", "inheritable", "ambient")}
    cfg.no_new_privs = bool(process.get("noNewPrivileges"))
    cfg.terminal = bool(process.get("terminal"))
    size = process.get("consoleSize") or {}
    cfg.console_size = (int(size.get("height", 0)), int(size.get("width", 0)))


# The namespaces `exec` joins, in order: the mount namespace last, because entering it hides the host's
# /proc. Joining the PID namespace only moves the joining process's children into it.
_EXEC_NAMESPACES = (
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("network", "net"),
    ("cgroup", "cgroup"),
    ("pid", "pid"),
    ("mount", "mnt"),
)


def prepare_exec(
    spec: dict[str, Any],
    process: dict[str, Any],
    container_pid: int,
    *,
    stdin_open: bool = True,
    seccomp_cache: str | None = None,
    kill_with_parent: bool = True,
    cgroup: CgroupHook | None = None,
) -> ChildConfig:
    """A ChildConfig that runs `process` (an OCI process object) inside the running container `container_pid`.

    It joins each namespace the container's spec gives it (via /proc/PID/ns/*), its cgroup, and gets the
    spec's seccomp filter; no mount, no pivot_root: the container's own mount namespace already is its
    filesystem. The joining process then spawns the command into the PID namespace (minirun.runtime.child).
    """
    _need(isinstance(process, dict), "the exec process must be an object")
    linux = spec.get("linux") or {}
    cfg = ChildConfig(rootfs="/", args=[], env={}, cwd="/", join_existing=True)
    _process(process, cfg)
    own = {ns.get("type") for ns in linux.get("namespaces") or () if isinstance(ns, dict)}
    for kind, name in _EXEC_NAMESPACES:
        if kind in own or kind == "mount":
            cfg.join_namespaces.append((f"/proc/{container_pid}/ns/{name}", NAMESPACE_FLAGS[kind]))
    if linux.get("seccomp"):
        from minirun.runtime import seccomp

        cfg.seccomp = seccomp.program(linux["seccomp"], seccomp_cache)
    cfg.stdin_null = not stdin_open
    cfg.kill_with_parent = kill_with_parent
    cfg.cgroup = cgroup
    # Any process of the container may hold what its bounding set allows (and the exec'd one what it gets).
    bounding = capabilities.mask(((spec.get("process") or {}).get("capabilities") or {}).get("bounding"))
    cfg.sealed = bool((bounding | cfg.bounding) >> capabilities.NUMBERS["CAP_SYS_PTRACE"] & 1)
    return cfg


# The fields of a bundle this runtime reads; anything else is refused, so that nothing is silently ignored.
_TOP_FIELDS = frozenset(
    {"ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "annotations", "linux"}
)
_LINUX_FIELDS = frozenset(
    {
        "namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "rootfsPropagation", "resources",
        "seccomp", "sysctl", "maskedPaths", "readonlyPaths", "mountLabel",
    }
)  # fmt: skip
_PROCESS_FIELDS = frozenset(
    {
        "terminal", "consoleSize", "cwd", "env", "args", "rlimits", "apparmorProfile", "capabilities",
        "noNewPrivileges", "oomScoreAdj", "user", "selinuxLabel",
    }
)  # fmt: skip
SECCOMP_FIELDS = frozenset({"defaultAction", "defaultErrnoRet", "architectures", "syscalls", "flags"})  # no flags
_OTHER_PLATFORMS = frozenset({"solaris", "windows", "vm", "zos"})
_LABELS = ("process.apparmorProfile", "process.selinuxLabel", "linux.mountLabel")  # supported only when empty


def check_fields(spec: dict[str, Any]) -> None:
    """Refuse a field this runtime does not know or does not implement, naming it (InvalidSpec)."""
    for key in spec:
        if key in _OTHER_PLATFORMS:
            raise InvalidSpec(f"{key} is not supported by this runtime", hint="this runtime runs Linux containers")
        _need(key in _TOP_FIELDS, f"unknown field {key!r} in config.json")
    for section, known in (("linux", _LINUX_FIELDS), ("process", _PROCESS_FIELDS)):
        value = spec.get(section) or {}
        _need(isinstance(value, dict), f"{section} must be an object")
        for key in value:
            if key not in known:
                raise InvalidSpec(
                    f"{section}.{key} is not supported by this runtime",
                    hint=f"remove {section}.{key} from config.json",
                )
    for dotted in _LABELS:
        section, key = dotted.split(".")
        _need(not (spec.get(section) or {}).get(key), f"{dotted} is not supported by this runtime (no LSM labels)")
    seccomp = (spec.get("linux") or {}).get("seccomp") or {}
    _need(isinstance(seccomp, dict), "linux.seccomp must be an object")
    for key in seccomp:
        if key not in SECCOMP_FIELDS or (key == "flags" and seccomp[key]):
            raise InvalidSpec(
                f"linux.seccomp.{key} is not supported by this runtime", hint="remove it from config.json"
            )
    root = spec.get("root") or {}
    unknown = set(root) - {"path", "readonly"}
    _need(not unknown, f"root.{min(unknown, default='')} is not supported by this runtime")

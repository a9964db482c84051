"""The engine: image + options → container record → root filesystem → OCI spec → runtime → exit status.

`run` is a composition of reusable steps, each usable on its own by other commands (create, start, ...):

    create_container → prepare (rootfs + spec) → start → wait → record_exit → cleanup (unmount; --rm: remove)
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from minicache.errors import InvalidSpec, MiniError
from minicache.store import Store
from minirun import rootfs, spec, users
from minirun.containers import CREATED, EXITED, RUNNING, Container, ContainerStore, State, now
from minirun.flags import Tmpfs, Ulimit, Volume
from minirun.runtime import Process
from minirun.runtime import start as runtime_start
from minirun.runtime.signals import SignalForwarder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INIT_ENV = "MINICONTAINER_INIT"  # "builtin", or the path of a static init to use instead of tini
TINI_CANDIDATES = ("/usr/bin/tini-static", "/usr/local/bin/tini-static")
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_DEV_SKIP = frozenset({"pts", "shm", "mqueue", "console", "ptmx", "fd", "core"})


# -- facts about the host the spec needs ----------------------------------------------------------------------
def find_init() -> str | None:
    """A static init binary to bind-mount for --init (tini), or None for the runtime's built-in one."""
    wanted = os.environ.get(INIT_ENV)
    if wanted == "builtin":
        return None
    for path in (wanted,) if wanted else TINI_CANDIDATES:
        if path and os.access(path, os.X_OK):
            return path
    return None


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every character and block device under /dev, as OCI `linux.devices` entries (for --privileged)."""
    import stat

    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _DEV_SKIP]
        for name in filenames:
            if name in _DEV_SKIP:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(
                    {
                        "path": path,
                        "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev),
                        "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode),
                        "uid": st.st_uid,
                        "gid": st.st_gid,
                    }
                )
    return out


def resolv_conf(network: str) -> str:
    """The host's resolv.conf; without the host's network, loopback nameservers are unreachable: dropped."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    if network != "host":
        lines = [
            ln
            for ln in lines
            if not (ln.startswith("nameserver") and ln.split()[1:2] in (["127.0.0.1"], ["127.0.0.53"], ["::1"]))
        ]
    return "\n".join(lines) + "\n" if lines else ""


# -- (de)serialising the options -------------------------------------------------------------------------------
def options_to_json(opts: spec.RunOptions) -> dict[str, Any]:
    return opts.as_dict()


def options_from_json(data: dict[str, Any]) -> spec.RunOptions:
    data = dict(data)
    data["volumes"] = [Volume(**v) for v in data.get("volumes", [])]
    data["tmpfs"] = [Tmpfs(t["destination"], tuple(t.get("options", ()))) for t in data.get("tmpfs", [])]
    data["ulimits"] = [Ulimit(**u) for u in data.get("ulimits", [])]
    return spec.RunOptions(**data)


def _docker_views(image_ref: str, opts: spec.RunOptions) -> dict[str, Any]:
    """Docker-like Config/HostConfig views for `inspect`; `Options` is what the engine reads back."""
    return {
        "Config": {
            "Image": image_ref,
            "Cmd": opts.command or None,
            "Entrypoint": opts.entrypoint,
            "Env": opts.env,
            "WorkingDir": opts.workdir or "",
            "Hostname": opts.hostname or "",
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
        },
        "HostConfig": {
            "Binds": [f"{v.source}:{v.destination}" + (":ro" if v.readonly else "") for v in opts.volumes],
            "Tmpfs": {t.destination: ",".join(t.options) for t in opts.tmpfs},
            "ReadonlyRootfs": opts.read_only,
            "CapAdd": opts.cap_add,
            "CapDrop": opts.cap_drop,
            "Privileged": opts.privileged,
            "Ulimits": [u.as_dict() for u in opts.ulimits],
            "Init": opts.init,
            "NetworkMode": opts.network,
        },
        "Options": options_to_json(opts),
    }


# -- the steps --------------------------------------------------------------------------------------------------
def create_container(
    store: Store, image_ref: str, opts: spec.RunOptions, *, name: str | None = None, auto_remove: bool = False
) -> Container:
    """Resolve the image and write the container's record (nothing mounted, nothing started)."""
    image = store.images.resolve(image_ref)
    spec.process_args(store.images.config(image).get("config") or {}, opts)  # fail before anything is written
    record = {
        "Image": image.id,
        "ImageName": image_ref,
        "Driver": rootfs.choose_driver(),
        "AutoRemove": auto_remove,
        **_docker_views(image_ref, opts),
    }
    record["HostConfig"]["AutoRemove"] = auto_remove
    return ContainerStore(store).create(record, name=name, durable=not auto_remove)


def _write_files(container: Container, hostname: str, opts: spec.RunOptions, durable: bool) -> dict[str, str]:
    from minicache.atomic import atomic_write

    hosts = HOSTS
    if opts.network == "host":
        with contextlib.suppress(OSError):
            hosts = Path("/etc/hosts").read_text()
    files = {"/etc/hostname": f"{hostname}\n", "/etc/hosts": hosts, "/etc/resolv.conf": resolv_conf(opts.network)}
    out = {}
    for dest, content in files.items():
        path = container.dir / os.path.basename(dest)
        atomic_write(path, content.encode(), durable=durable)
        out[dest] = str(path)
    return out


def prepare(store: Store, container: Container, *, console_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Mount the root filesystem and write the OCI spec (config.json); returns the spec."""
    record = container.record
    durable = not record.get("AutoRemove")
    opts = options_from_json(record["Options"])
    image = store.images.get(record["Image"])
    image_config = store.images.config(image).get("config") or {}
    for volume in opts.volumes:
        if not os.path.lexists(volume.source):
            try:
                os.makedirs(volume.source)  # as Docker does for a missing -v source
            except OSError as e:
                raise InvalidSpec(f"cannot create the volume source {volume.source}: {e.strerror}") from None
    root = rootfs.mount(store, image, container, record.get("Driver", rootfs.OVERLAY), volatile=not durable)
    try:
        user = users.resolve(root, opts.user if opts.user is not None else image_config.get("User"))
        host_hostname = os.uname().nodename
        hostname = opts.hostname or (host_hostname if opts.network == "host" else container.id[:12])
        ctx = spec.SpecContext(
            container_id=container.id,
            user=user,
            files=_write_files(container, hostname, opts, durable),
            host_hostname=host_hostname,
            init_path=find_init() if opts.init else None,
            host_devices=host_devices() if opts.privileged else [],
            console_size=console_size,
        )
        oci = spec.build(image_config, opts, ctx)
        container.write_spec(oci, durable=durable)
    except BaseException:
        rootfs.unmount(container)
        raise
    return oci


def seccomp_cache(store: Store) -> Path:
    return store.root / "cache" / "seccomp"


def start(store: Store, container: Container, *, stdin_open: bool) -> Process:
    """Start the prepared bundle and record the container as running.

    The state is written while the child sets itself up (on another core), and the module cleanup will
    need is loaded then too: both are off the critical path of a short-lived container.
    """
    from minicache.process import boot_id, start_time

    durable = not container.record.get("AutoRemove")

    def meanwhile(pid: int) -> None:
        state = State(RUNNING, pid, start_time(pid), StartedAt=now(), BootId=boot_id())
        container.set_state(state, durable=durable)
        import shutil  # noqa: F401 - store.discard needs it at cleanup; loading it now costs nothing

    return runtime_start(
        container.dir, container.id, stdin_open=stdin_open, seccomp_cache=seccomp_cache(store), meanwhile=meanwhile
    )


def wait(proc: Process, *, tty: bool, interactive: bool) -> int:
    """Relay the terminal (if any) until the container closes it, then reap the process; its exit code."""
    if tty and proc.pty_master is not None:
        from minirun.runtime.tty import TerminalSession

        master, proc.pty_master = proc.pty_master, None
        with TerminalSession(master, stdin_open=interactive) as session:
            session.relay()
    return proc.wait()


def record_exit(container: Container, code: int, *, error: str | None = None, started: bool = True) -> None:
    durable = not container.record.get("AutoRemove")
    state = container.state()
    state.Status = EXITED if started else CREATED
    state.ExitCode = code
    state.FinishedAt = now() if started else None
    state.Error = error
    state.Pid = 0
    container.set_state(state, durable=durable)


def cleanup(store: Store, container: Container, *, remove: bool) -> None:
    """Unmount the root filesystem; with `remove`, delete the container (its directory and name)."""
    rootfs.unmount(container)
    if remove:
        ContainerStore(store).remove(container)


def run(
    store: Store,
    image_ref: str,
    opts: spec.RunOptions,
    *,
    name: str | None = None,
    remove: bool = False,
) -> int:
    """`minirun run`: create, start, wait for and (with `remove`) delete a container; its exit code."""
    container = create_container(store, image_ref, opts, name=name, auto_remove=remove)
    console_size = None
    if opts.tty:
        from minirun.runtime.tty import get_size

        console_size = get_size(0) or get_size(1)
    started = False
    try:
        with SignalForwarder(skip=(signal.SIGWINCH,) if opts.tty else ()) as forwarder:
            prepare(store, container, console_size=console_size)
            try:
                with container.lock():
                    proc = start(store, container, stdin_open=opts.interactive)
                started = True
                forwarder.target(proc.pid)
                try:
                    code = wait(proc, tty=opts.tty, interactive=opts.interactive)
                except BaseException:  # we cannot watch it any more: it must not outlive us, nor its root
                    proc.signal(signal.SIGKILL)
                    proc.wait()
                    raise
            except MiniError as e:
                if not remove:
                    record_exit(container, e.exit_code, error=str(e), started=started)
                raise
        if not remove:
            with container.lock():
                record_exit(container, code)
        return code
    finally:
        cleanup(store, container, remove=remove)

"""The engine's steps: image + options → container record → root filesystem → OCI spec → runtime → exit status.

A container's life is a composition of steps, each usable on its own by the commands:

    create_container → prepare (rootfs + spec) → start → wait → lifecycle.finish (cgroup, unmount, exit
    recorded) → lifecycle.delete

`run` in the foreground is `create_container` then `run_attached`; a detached container goes through the
same steps in its monitor's helper processes (`start_monitored`, minirun.engine.monitor). Every change of
the recorded state is minirun.engine.lifecycle's, so the state machine reads in one place. Networking plugs
in through minirun.engine.networking at one step each: attach in `prepare` (the namespace path goes into the
spec before the process exists), detach in `lifecycle.finish`, `lifecycle.delete` and `cleanup` (idempotent).
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

from minicache import events
from minicache.errors import InvalidSpec, MiniError, NotFound
from minicache.store import Store
from minirun.engine import networking, rootfs, spec, users
from minirun.engine.containers import ACTIVE, Container, ContainerStore, runtime
from minirun.engine.flags import RestartPolicy, Tmpfs, Ulimit, Volume, parse_signal
from minirun.runtime.operations import wait
from minirun.runtime.signals import SignalForwarder

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from minirun.runtime.operations import Process


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


def _resources_view(resources: dict[str, Any]) -> dict[str, Any]:
    """docker inspect's HostConfig resource fields from OCI linux.resources."""
    memory, cpu, pids = (resources.get(k) or {} for k in ("memory", "cpu", "pids"))
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    return {
        "Memory": memory.get("limit") or 0,
        "MemoryReservation": memory.get("reservation") or 0,
        "MemorySwap": memory.get("swap") or 0,
        "NanoCpus": quota * 1_000_000_000 // period if quota > 0 and period else 0,
        "CpuShares": cpu.get("shares") or 0,
        "CpuQuota": quota,
        "CpuPeriod": period,
        "CpusetCpus": cpu.get("cpus") or "",
        "CpusetMems": cpu.get("mems") or "",
        "PidsLimit": pids.get("limit") or None,
    }


def _docker_views(image_ref: str, opts: spec.RunOptions, args: list[str]) -> dict[str, Any]:
    """Docker-like Config/HostConfig views for `inspect`; `Options` is what the engine reads back."""
    return {
        "Path": args[0],
        "Args": args[1:],
        "Config": {
            "Image": image_ref,
            "Cmd": opts.command or None,
            "Entrypoint": opts.entrypoint,
            "Env": opts.env,
            "WorkingDir": opts.workdir or "",
            "Hostname": opts.hostname or "",
            "User": opts.user or "",
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
            "CgroupParent": opts.cgroup_parent or "",
            **_resources_view(opts.resources),
        },
        "Options": options_to_json(opts),
    }


# -- the steps --------------------------------------------------------------------------------------------------
def create_container(
    store: Store,
    image_ref: str,
    opts: spec.RunOptions,
    *,
    name: str | None = None,
    auto_remove: bool = False,
    restart: RestartPolicy | None = None,
    stop_signal: str | None = None,
    stop_timeout: int | None = None,
    labels: dict[str, str] | None = None,
) -> Container:
    """Resolve the image and write the container's record (nothing mounted, nothing started)."""
    restart = restart or RestartPolicy()
    if auto_remove and restart.Name != "no":
        raise InvalidSpec("conflicting options: --restart and --rm", hint="a container removed on exit cannot restart")
    image = store.images.resolve(image_ref)
    image_config = spec.image_settings(store.images.config(image), image_ref, len(image.layers))
    args = spec.process_args(image_config, opts)  # fail before anything is written
    spec.working_dir(image_config, opts)
    from minirun.cgroups.base import default_parent, parent_parts

    if opts.cgroup_parent is None:
        opts.cgroup_parent = default_parent()
    parent_parts(opts.cgroup_parent)  # a bad --cgroup-parent fails here, not at start with a container left
    record = {
        "Image": image.id,
        "ImageName": image_ref,
        "Driver": rootfs.choose_driver(),
        "AutoRemove": auto_remove,
        **_docker_views(image_ref, opts, args),
    }
    record["Config"]["StopSignal"] = stop_signal or _image_stop_signal(image_config) or "SIGTERM"
    record["Config"]["StopTimeout"] = stop_timeout
    record["Config"]["Labels"] = {**(image_config.get("Labels") or {}), **(labels or {})}
    record["HostConfig"]["AutoRemove"] = auto_remove
    record["HostConfig"]["RestartPolicy"] = restart.as_dict()
    container = ContainerStore(store).create(record, name=name, durable=not auto_remove)
    events.container(store, "create", container.id, container.record)
    return container


def _image_stop_signal(image_config: dict[str, Any]) -> str | None:
    """The image's StopSignal, checked now: one `stop` could not send would leave the container unstoppable
    but by `kill`, and `stop` would fail on it every time (Docker refuses it at create too)."""
    value = image_config.get("StopSignal")
    if value in (None, ""):
        return None
    try:
        parse_signal(value)  # a string: spec.image_settings checked the config's types
    except InvalidSpec as e:
        raise InvalidSpec(f"invalid StopSignal {value!r} in the image's config", hint=e.hint) from None
    return value


def _write_files(
    container: Container, hostname: str, opts: spec.RunOptions, durable: bool, wired: networking.Wired | None
) -> dict[str, str]:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf for the container. The network's attach already wrote
    a hosts file it keeps up to date in place (peers joining): that one is left alone."""
    from minicache.atomic import atomic_write

    files = {"/etc/hostname": f"{hostname}\n"}
    if wired is None or not wired.hosts:
        hosts = HOSTS
        if opts.network == "host":
            with contextlib.suppress(OSError), open("/etc/hosts") as f:
                hosts = f.read()
        files["/etc/hosts"] = hosts
    files["/etc/resolv.conf"] = wired.resolv_conf if wired is not None else resolv_conf(opts.network)
    out = {"/etc/hosts": os.path.join(container.dir, "hosts")}
    for dest, content in files.items():
        path = os.path.join(container.dir, os.path.basename(dest))
        atomic_write(path, content.encode(), mode=0o644, durable=durable)  # read by the container's users
        out[dest] = path
    return out


def network_mode(store: Store, container: Container, mode: str) -> str:
    """The saved `--network`, with `container:REF` → `container:<full ID>` of a running container other than
    this one (name or ID prefix)."""
    if not mode.startswith("container:"):
        return mode
    from minirun.engine.lifecycle import observe
    from minirun.errors import ContainerStateError

    other = ContainerStore(store).get(mode.partition(":")[2])
    if other.id == container.id:
        raise InvalidSpec("a container cannot join its own network namespace", hint="name another container")
    if observe(other, patience=0).Status not in ACTIVE:
        raise ContainerStateError(
            f"cannot join network of a non running container: {other.id}", hint=f"start {other.name} first"
        )
    return f"container:{other.id}"


def cgroups_path(container: Container, opts: spec.RunOptions) -> str:
    from minirun.cgroups.base import default_parent

    return f"/{(opts.cgroup_parent or default_parent()).strip('/')}/{container.id}"


def prepare(
    store: Store, container: Container, *, console_size: tuple[int, int] | None = None, new: bool = False
) -> dict[str, Any]:
    """Mount the root filesystem (unless it is mounted) and write the OCI spec (config.json); returns the spec.

    The spec is made again from the saved options each time, so a restarted container gets the same one.
    `new`: the container was just created, so nothing can be mounted yet (saves reading mountinfo).
    """
    from minicache.overlay import is_mounted

    record = container.record
    durable = not record.get("AutoRemove")
    opts = options_from_json(record["Options"])
    image = store.images.get(record["Image"])
    image_config = spec.image_settings(
        store.images.config(image), record.get("ImageName") or image.id, len(image.layers)
    )
    for volume in opts.volumes:
        if not os.path.lexists(volume.source):
            try:
                os.makedirs(volume.source)  # as Docker does for a missing -v source
            except OSError as e:
                raise InvalidSpec(f"cannot create the volume source {volume.source}: {e.strerror}") from None
    driver = record.get("Driver", rootfs.OVERLAY)
    if new or driver == rootfs.COPY or not is_mounted(container.rootfs):
        root = rootfs.mount(store, image, container, driver, volatile=not durable)
    else:
        root = container.rootfs
    wired = None
    try:
        user = users.resolve(root, opts.user if opts.user is not None else image_config.get("User"))
        host_hostname = os.uname().nodename
        hostname = opts.hostname or (host_hostname if opts.network == "host" else container.id[:12])
        mode = network_mode(store, container, opts.network)
        wired = networking.attach(store, container, opts, hostname, image_config, mode)
        ctx = spec.SpecContext(
            container_id=container.id,
            user=user,
            files=_write_files(container, hostname, opts, durable, wired),
            netns_path=wired.netns_path if wired is not None else None,
            host_hostname=host_hostname,
            init_path=find_init() if opts.init else None,
            host_devices=host_devices() if opts.privileged else [],
            console_size=console_size,
            cgroups_path=cgroups_path(container, opts),
        )
        oci = spec.build(image_config, opts, ctx)
        container.write_spec(oci, durable=durable)
    except BaseException:
        if wired is not None:
            networking.detach(store, container)
        rootfs.unmount(container)
        raise
    return oci


def start(
    store: Store,
    container: Container,
    *,
    stdin_open: bool,
    kill_with_parent: bool = True,
    monitor_pid: int | None = None,
    restarted: bool = False,
) -> Process:
    """Start the prepared bundle and record the container as running (call it holding the container's lock).

    The runtime's `run` (create + start, in-process) with the container's ID and folder as the bundle; its
    state folder goes under the store's runtime root. `monitor_pid` is the process that will reap the
    container (default: this one). The state is written while the child sets itself up (on another core), and
    the state machine that cleanup will need is loaded then too: both are off the critical path of a
    short-lived container.
    """
    durable = not container.record.get("AutoRemove")
    monitor = monitor_pid or os.getpid()

    def meanwhile(pid: int) -> None:
        from minirun.engine import lifecycle

        lifecycle.record_start(container, pid, monitor, restarted=restarted, durable=durable)

    ours = runtime(store)
    ours.delete(container.id, force=True)  # what a start killed half-way left (the record never said it ran)
    return ours.run(
        container.id,
        container.dir,
        stdin_open=stdin_open,
        seccomp_cache=store.seccomp_dir,
        kill_with_parent=kill_with_parent,
        meanwhile=meanwhile,
    )


def start_monitored(
    store: Store,
    container: Container,
    *,
    restarted: bool,
    monitor_pid: int,
    stdio: Callable[[bool, bool], tuple[list[str], list[int], list[int]]],
) -> tuple[Process, list[str], list[int]] | None:
    """Prepare and start `container` for its monitor (under its lock): the process, its stream names and the
    monitor's ends of them; None if there is nothing to start. `stdio(tty, interactive)` puts the
    container's stdio in place: (stream names, the monitor's ends, ends to close once started)."""
    from minirun.engine import lifecycle

    with container.lock():
        state = lifecycle.settle(store, container)
        if not lifecycle.startable(state, restarted):
            return None
        opts = options_from_json(container.record["Options"])
        streams, ours, theirs = stdio(opts.tty, opts.interactive)
        try:
            prepare(store, container, console_size=(24, 80) if opts.tty else None)
            proc = start(
                store,
                container,
                stdin_open=opts.interactive,
                kill_with_parent=False,
                monitor_pid=monitor_pid,
                restarted=restarted,
            )
        except BaseException as err:
            for fd in ours:
                os.close(fd)
            cleanup(store, container, remove=False)  # network detached, root unmounted
            if isinstance(err, MiniError):
                lifecycle.record_exit(container, err.exit_code, error=str(err), started=restarted)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
    if proc.pty_master is not None:
        return proc, ["stdout"], [proc.pty_master]
    return proc, streams, ours


def cleanup(store: Store, container: Container, *, remove: bool) -> None:
    """Delete the container in the runtime (what is left of its processes, its cgroup), detach the network,
    unmount the root filesystem; with `remove`, delete the container (directory, name)."""
    runtime(store).delete(container.id, force=True)
    networking.detach(store, container)
    rootfs.unmount(container)
    if remove:
        with contextlib.suppress(NotFound):
            ContainerStore(store).remove(container)


def run_attached(store: Store, container: Container, *, remove: bool = False, stdin_open: bool | None = None) -> int:
    """Run a created (or stopped) container in the foreground of this process: its exit code.

    This process is the container's monitor: it relays the terminal and signals, reaps the process and
    records the exit. If it dies, so does the container (PDEATHSIG) and the next command sees the truth.
    """
    opts = options_from_json(container.record["Options"])
    interactive = opts.interactive if stdin_open is None else stdin_open
    console_size = None
    if opts.tty:
        from minirun.runtime.tty import get_size

        console_size = get_size(0) or get_size(1)
    started = owned = False  # owned: this call prepared it, so it cleans up (not someone else's run)
    proc: Process | None = None
    try:
        with SignalForwarder(skip=(signal.SIGWINCH,) if opts.tty else ()) as forwarder:
            try:
                with container.lock():
                    if container.state().Status in ACTIVE:
                        from minirun.errors import ContainerStateError

                        raise ContainerStateError(f"container {container.name} is already running")
                    owned = True
                    prepare(store, container, console_size=console_size, new=remove)
                    proc = start(store, container, stdin_open=interactive)
                started = True
                forwarder.target(proc.pid)
                try:
                    code = wait(proc, stdin_open=interactive)
                except BaseException:  # we cannot watch it any more: it must not outlive us, nor its root
                    proc.signal(signal.SIGKILL)
                    proc.wait()
                    raise
            except MiniError as e:
                if not remove:
                    from minirun.engine import lifecycle

                    with contextlib.suppress(NotFound):
                        lifecycle.record_exit(container, e.exit_code, error=str(e), started=started)
                raise
        if not remove:
            from minirun.engine import lifecycle

            try:
                with container.lock():
                    lifecycle.finish(container, code, oom=proc.oom_killed)
                owned = False  # finished: from now on a `start` elsewhere may own it
            except NotFound:  # removed (rm -f) while it ran
                pass
        else:  # nothing is recorded for a container about to go: the event log still hears of the exit
            events.container(store, "die", container.id, container.record, exitCode=code)
        return code
    finally:
        if owned or remove:
            cleanup(store, container, remove=remove)


def run(
    store: Store,
    image_ref: str,
    opts: spec.RunOptions,
    *,
    name: str | None = None,
    remove: bool = False,
    restart: RestartPolicy | None = None,
) -> int:
    """`minirun run`: create, start, wait for and (with `remove`) delete a container; its exit code."""
    container = create_container(store, image_ref, opts, name=name, auto_remove=remove, restart=restart)
    return run_attached(store, container, remove=remove)


def exec_process(
    store: Store,
    container: Container,
    command: list[str],
    *,
    env: list[str] = (),  # type: ignore[assignment]
    user: str | None = None,
    workdir: str | None = None,
    tty: bool = False,
    interactive: bool = False,
    detach: bool = False,
    console_size: tuple[int, int] | None = None,
) -> Process:
    """Start `command` inside the running container (`docker exec`); returns once it has exec'ed.

    It joins every namespace and the cgroup of the container's init and gets the spec's seccomp filter,
    capabilities (recomputed for another `user`, as for the container's own process), no_new_privs,
    rlimits and environment (plus `env`); `workdir` defaults to the container's.
    """
    from minirun.engine import lifecycle
    from minirun.engine.containers import PAUSED
    from minirun.errors import ContainerStateError

    state = lifecycle.observe(container, patience=0)
    if state.Status == PAUSED:
        raise ContainerStateError(
            f"container {container.name} is paused", hint="unpause the container before exec (minirun unpause)"
        )
    if state.Status not in ACTIVE:
        raise ContainerStateError(f"container {container.name} is not running", hint="start it first")
    oci = container.spec()
    opts = options_from_json(container.record["Options"])
    process = dict(oci["process"])
    process["args"] = list(command)
    process["terminal"] = tty
    if tty and console_size:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    else:
        process.pop("consoleSize", None)
    extra: dict[str, str] = {}
    if user is not None:
        who = users.resolve(container.rootfs, user)
        process["user"] = {"uid": who.uid, "gid": who.gid}
        if who.additional_gids:
            process["user"]["additionalGids"] = list(who.additional_gids)
        process["capabilities"] = spec.capabilities_for(opts, who, tuple(process["capabilities"]["bounding"]))
        extra["HOME"] = who.home or "/"
    process["env"] = spec.merge_env(list(process.get("env") or []), [*env, *(f"{k}={v}" for k, v in extra.items())], {})
    if tty and not any(e.startswith("TERM=") for e in process["env"]):
        process["env"].append("TERM=xterm")
    if workdir is not None:
        process["cwd"] = workdir
    return runtime(store).exec(
        container.id, process, detach=detach, relay=True, stdin_open=interactive, seccomp_cache=store.seccomp_dir
    )

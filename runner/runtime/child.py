"""The container's init process, from fork to execve.

Order (each step needs the one before): join the cgroup → join/unshare namespaces → handshake with the
parent → mounts (propagation cut first) → pivot_root, old root detached → terminal → close every
inherited fd → sysctl → masked and read-only paths → working directory (created) → read-only root →
hostname → rlimits → bounding set → user and groups (capabilities kept) → working directory (entered,
checked to be under the root) → capabilities (ambient last) → no_new_privs → seccomp → execve.

Joining a running container (`exec`) is the same process without the filesystem steps, made not
dumpable first; it joins the PID namespace for its children only and spawns the command there instead
of exec'ing it, then stands in for it (`_spawn_and_wait`).

Nothing here may import a module: after pivot_root the host's files are out of reach. Any failure is sent
to the parent as one message with the exit code Docker would use (125 setup, 126 cannot invoke, 127 not
found), then the process exits with that code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import time
from typing import NoReturn

from minicache.syscalls import MS_BIND
from minirun.runtime import caps, init, mounts, signals, tty
from minirun.runtime import syscalls as sc
from minirun.runtime.channel import CREATED, ERROR, GO, PTY, READY, SPAWNED, Channel, read_report
from minirun.runtime.config import ChildConfig

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class ChildError(Exception):
    def __init__(self, code: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


_CWD_HINT = "give a working directory (-w or the image's WORKDIR) that is a directory inside the container"


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        where = f" ({err.filename})" if err.filename else ""
        return f"{os.strerror(err.errno)}{where}"
    return str(err) if isinstance(err, RuntimeError) else f"{type(err).__name__}: {err}"


def main(cfg: ChildConfig, chan: Channel) -> NoReturn:
    """Set the container up and exec its process (or, joining a running container, spawn it); never returns."""
    stage = ["starting"]
    code = 125
    parent = os.getppid()
    try:
        if cfg.join_existing:
            _hide_host()
        _setup(cfg, chan, stage)
        if cfg.join_existing:
            _spawn_and_wait(cfg, chan, parent)
        _exec(cfg)
    except ChildError as e:
        code = e.code
        _report(chan, code, str(e), e.hint)
    except BaseException as e:
        _report(chan, 125, f"{stage[0]}: {_describe(e)}")
    os._exit(code)


def _report(chan: Channel, code: int, message: str, hint: str | None = None) -> None:
    """Tell the parent; once it is gone (after `create`, the exec fifo), the container's stderr is told."""
    try:
        if hint:
            chan.send(ERROR, msg=message, code=code, hint=hint)
        else:
            chan.send(ERROR, msg=message, code=code)
    except OSError:
        with contextlib.suppress(OSError):
            os.write(2, f"minirun-runtime: {message}\n".encode())


def _loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifr)[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
    finally:
        s.close()


def _hide_host() -> None:
    """Joining a running container: nothing of the host may show through this process or its children.

    Not dumpable before the first namespace is joined, so no process of the container can read its
    /proc/PID/{environ,mem,exe,fd} or ptrace it (without CAP_SYS_PTRACE); the environment block and
    the command line, which forked children share until they exec, carry nothing of the host's.
    """
    sc.prctl(sc.PR_SET_DUMPABLE, 0)
    sc.clear_environment_block()
    sc.set_process_title("minirun-exec")


def _setup(cfg: ChildConfig, chan: Channel, stage: list[str]) -> None:
    """Everything between fork and exec, in the order the kernel's rules need: namespaces, then the root
    filesystem and terminal, then limits, user and capabilities, the seccomp filter last but for the init."""
    _prepare_process(cfg)
    fifo = -1
    if cfg.exec_fifo is not None:  # opened while the host's files are in reach; reopened by /proc at the end
        stage[0] = "opening the exec fifo"
        fifo = os.open(cfg.exec_fifo, os.O_PATH | os.O_CLOEXEC)
    _enter_namespaces(cfg, stage)
    _wait_for_go(cfg, chan)
    if not cfg.join_existing:
        _filesystem(cfg, stage)
    if cfg.terminal:
        _open_terminal(cfg, chan, stage)
    stage[0] = "closing file descriptors"
    close_inherited(cfg.preserve_fds, chan.fileno(), fifo)
    if not cfg.join_existing:
        _finish_filesystem(cfg, stage)
    for number, soft, hard in cfg.rlimits:
        stage[0] = f"setting rlimit {number}"
        resource.setrlimit(number, (soft, hard))
    if cfg.seccomp is not None and not cfg.no_new_privs:
        stage[0] = "loading the seccomp filter"  # without no_new_privs it needs CAP_SYS_ADMIN: load it now
        sc.seccomp_load_bpf(cfg.seccomp)
    _become_user(cfg, stage)
    enter_cwd(cfg.cwd)
    stage[0] = "setting capabilities"
    caps.apply(cfg.caps)
    if cfg.no_new_privs:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if cfg.seccomp is not None:
            stage[0] = "loading the seccomp filter"
            sc.seccomp_load_bpf(cfg.seccomp)
    stage[0] = "closing file descriptors"
    sc.close_range(3 + cfg.preserve_fds, 0xFFFFFFFF, sc.CLOSE_RANGE_CLOEXEC)
    if fifo >= 0:
        _look_up(cfg)  # a missing command fails `create`, not a later `start` nobody watches
        stage[0] = "waiting for start"
        _wait_for_start(chan, fifo)
        _run_hooks(cfg, "startContainer", stage)
    if cfg.builtin_init:
        init.run(lambda: _exec_or_report(cfg, chan), on_forked=lambda: _init_closes_fds(chan))


def _prepare_process(cfg: ChildConfig) -> None:
    """Process attributes set while this is still the host's process: dumpability, signals, stdin, OOM score."""
    if cfg.builtin_init:
        # This process stays the container's PID 1, a copy of the host's interpreter and of the caller's
        # environment: the container's processes (same user, same capabilities) must not open its
        # exe, environ or mem.
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        sc.clear_environment_block()
    signals.reset_in_child()
    if cfg.kill_with_parent:
        # A process joining a container passes its parent's death on to the command it spawns (_spawn_and_wait).
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM if cfg.join_existing else signal.SIGKILL)
    os.umask(0)
    if cfg.stdin_null and not cfg.terminal:  # the host's /dev/null: nothing the container could have replaced
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    if cfg.oom_score_adj is not None:  # the host's /proc: a joining process is not in the container's PID namespace
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(cfg.oom_score_adj))


def _enter_namespaces(cfg: ChildConfig, stage: list[str]) -> None:
    """Join the cgroup and the namespaces to share, create the new ones, and bring up a new netns's loopback."""
    if cfg.cgroup is not None:
        stage[0] = "joining the cgroup"
        cfg.cgroup.join()
    for path, flag in cfg.join_namespaces:
        stage[0] = f"joining namespace {path}"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, flag)
        finally:
            os.close(fd)
    stage[0] = "creating namespaces"
    if cfg.unshare_flags:
        sc.unshare(cfg.unshare_flags)
    os.setsid()
    if cfg.new_netns:
        stage[0] = "bringing up loopback"
        _loopback_up()


def _wait_for_go(cfg: ChildConfig, chan: Channel) -> None:
    """Once the namespaces exist, wait while the parent sets up what needs this PID; exit if the parent is gone."""
    if cfg.wait_for_go:
        chan.send(READY)
        message, _ = chan.recv()
        if message is None or message.get("t") != GO:
            os._exit(125)  # the parent is gone or gave up
        cfg.hook_state = str(message.get("state") or "")
    elif cfg.kill_with_parent and chan.peer_closed():
        os._exit(125)  # the parent died before PR_SET_PDEATHSIG was in place


def _open_terminal(cfg: ChildConfig, chan: Channel, stage: list[str]) -> None:
    """The container's pseudo-terminal: the slave becomes this process's (or the spawned command's) terminal,
    /dev/console in a new root, and the master goes to the parent."""
    stage[0] = "opening the container's terminal"
    master, slave, path = tty.open_pty(cfg.uid, cfg.gid, *cfg.console_size)
    if cfg.join_existing:  # the spawned command makes it its controlling terminal (_spawn)
        cfg.console_path = path
        for fd in (0, 1, 2):
            os.dup2(slave, fd, inheritable=True)
        os.close(slave)
    else:
        tty.make_controlling(slave)
    if cfg.devices is not None and not cfg.join_existing:
        mounts.mount_one("/", mounts.Mount("/dev/console", "bind", path, MS_BIND, "", source_is_dir=False))
    chan.send(PTY, fds=[master])
    os.close(master)


def _become_user(cfg: ChildConfig, stage: list[str]) -> None:
    """Drop the bounding set, then switch to the container's user, keeping the capabilities to apply next."""
    stage[0] = "dropping capabilities from the bounding set"
    caps.drop_bounding(cfg.bounding)
    stage[0] = f"switching to user {cfg.uid}:{cfg.gid}"
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(cfg.additional_gids)
    os.setresgid(cfg.gid, cfg.gid, cfg.gid)
    os.setresuid(cfg.uid, cfg.uid, cfg.uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if cfg.join_existing or cfg.builtin_init:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)  # a credential change resets it to fs.suid_dumpable
    if cfg.kill_with_parent and cfg.uid != 0:
        # a credential change cleared it
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM if cfg.join_existing else signal.SIGKILL)
    os.umask(cfg.umask)


def close_inherited(preserve_fds: int, *keep: int) -> None:
    """Close every descriptor above stdio and the preserved ones, except `keep` (the channel to the parent,
    the exec fifo; negative ones are ignored).

    O_CLOEXEC only helps at execve; the working directory is resolved before that, and a directory
    descriptor of the host's left open would be reachable as /proc/self/fd/N from inside the container.
    """
    first = 3 + preserve_fds
    for fd in sorted(k for k in keep if k >= first):
        if fd > first:
            sc.close_range(first, fd - 1)
        first = fd + 1
    sc.close_range(first)


def _wait_for_start(chan: Channel, fifo: int) -> None:
    """Tell the parent the container is created, then block until `start` opens the exec fifo for reading.

    The fifo is reopened through /proc/self/fd (its path is outside the new root); the byte written tells
    `start` the process goes on to exec; the descriptor closes at execve.
    """
    chan.send(CREATED)
    chan.close()
    writer = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(fifo)
    os.write(writer, b"0")


def enter_cwd(cwd: str) -> None:
    """chdir into the working directory, then check it lies under this process's root (the container's).

    A magic link (/proc/self/fd/N) can point anywhere: the kernel then reports the directory as unreachable
    from the root, which glibc turns into ENOENT, and the container's process must never start there.
    """
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ChildError(126, f"cannot enter working directory {cwd}: {os.strerror(e.errno or 0)}", _CWD_HINT) from None
    try:
        where = os.getcwd()
        here, there = os.stat("."), os.stat(where)
        inside = where.startswith("/") and (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    except OSError:
        inside = False
    if not inside:
        raise ChildError(126, f"working directory {cwd} is outside the container's root filesystem: refused", _CWD_HINT)


def _init_closes_fds(chan: Channel) -> None:
    """The built-in init never execs, so CLOEXEC does not close what it inherited: close it all."""
    chan.close()
    sc.close_range(3, 0xFFFFFFFF, 0)


def _filesystem(cfg: ChildConfig, stage: list[str]) -> None:
    """The container's mounts, /dev and pivot_root into its root."""
    stage[0] = "preparing the root filesystem"
    mounts.prepare_root(cfg.rootfs, cfg.root_propagation)
    with mounts.Root(cfg.rootfs) as root:  # opened on the bind made just above: the mounts go onto it
        for m in cfg.mounts:
            stage[0] = f"mounting {m.fstype} on {m.destination}"
            mounts.mount_one(root, m)
        if cfg.devices is not None:
            stage[0] = "creating device nodes"
            mounts.create_devices(root, cfg.devices)
            mounts.create_dev_links(root)
    _run_hooks(cfg, "createContainer", stage)  # in the container's mount namespace, before pivot_root
    stage[0] = "pivot_root"
    mounts.pivot(cfg.rootfs)


def _finish_filesystem(cfg: ChildConfig, stage: list[str]) -> None:
    """After pivot_root: sysctls, masked and read-only paths, the working directory, hostname."""
    for key, value in cfg.sysctl.items():
        stage[0] = f"setting sysctl {key}"
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    stage[0] = "masking paths"
    mounts.mask(cfg.masked)
    stage[0] = "making paths read-only"
    mounts.make_readonly(cfg.readonly)
    try:
        _make_cwd(cfg.cwd, cfg.uid, cfg.gid)
    except OSError as e:
        reason = os.strerror(e.errno or 0)
        raise ChildError(126, f"cannot create working directory {cfg.cwd}: {reason}", _CWD_HINT) from None
    if cfg.root_readonly:
        stage[0] = "making the root read-only"
        mounts.remount_root_readonly()
    if cfg.hostname:
        stage[0] = "setting the hostname"
        sc.sethostname(cfg.hostname)
    if cfg.domainname:
        sc.setdomainname(cfg.domainname)


def _run_hooks(cfg: ChildConfig, kind: str, stage: list[str]) -> None:
    """Run the spec's `kind` hooks from here, with the state on stdin, each within its timeout."""
    for hook in cfg.inside_hooks.get(kind) or ():
        path = hook["path"]
        stage[0] = f"running the {kind} hook {path}"
        code = _run_hook(path, hook.get("args") or [path], hook.get("env") or [], hook.get("timeout"), cfg.hook_state)
        if code is None:
            raise ChildError(125, f"{kind} hook {path} timed out after {hook.get('timeout')}s")
        if code != 0:
            raise ChildError(125, f"{kind} hook {path} exited with status {code}")


def _run_hook(path: str, args: list[str], env: list[str], timeout: int | None, state: str) -> int | None:
    """fork and exec one hook; its exit code, or None when it outlived `timeout` (then it is killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(read_end, 0)
            os.execve(path, args, dict(e.split("=", 1) if "=" in e else (e, "") for e in env))
        finally:
            os._exit(127)
    os.close(read_end)
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a hook need not read its stdin
    with contextlib.suppress(OSError):
        os.write(write_end, state.encode())
    signal.signal(signal.SIGPIPE, old)
    os.close(write_end)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def _make_cwd(cwd: str, uid: int, gid: int) -> None:
    """Create the working directory (and missing parents) inside the container, owned by the user like Docker."""
    missing = []
    path = os.path.realpath(cwd)  # after pivot_root every symlink resolves inside the container
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
        os.chown(path, uid, gid)


def _candidates(name: str, env_path: str | None) -> list[str]:
    if "/" in name:
        return [name]
    dirs = env_path if env_path is not None else "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return [os.path.join(d or ".", name) for d in dirs.split(":")]


def _exec(cfg: ChildConfig) -> NoReturn:
    """execve the process; look the command up in the container's PATH the way execvp does."""
    name = cfg.args[0]
    denied: OSError | None = None
    last: OSError | None = None
    for path in _candidates(name, cfg.env.get("PATH")):
        try:
            os.execve(path, cfg.args, cfg.env)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                last = last or e
                continue
            if e.errno == errno.EACCES:
                denied = e
                continue
            raise ChildError(126, f'exec: "{name}": {os.strerror(e.errno or 0)}') from None
    if denied is not None:
        raise ChildError(126, f'exec: "{name}": permission denied')
    if "/" in name:
        raise ChildError(127, f'exec: "{name}": no such file or directory')
    raise ChildError(127, f'exec: "{name}": executable file not found in $PATH')


def _look_up(cfg: ChildConfig) -> None:
    """Raise the error `_exec` would for a command that is missing or that this user may not execute."""
    name = cfg.args[0]
    denied = False
    for path in _candidates(name, cfg.env.get("PATH")):
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return
            denied = True
    if denied:
        raise ChildError(126, f'exec: "{name}": permission denied')
    if "/" in name:
        raise ChildError(127, f'exec: "{name}": no such file or directory')
    raise ChildError(127, f'exec: "{name}": executable file not found in $PATH')


def _fork_exec(cfg: ChildConfig, chan: Channel) -> int:
    """fork and exec the command (no shared memory with this process, which lives outside the container's
    PID namespace); an exec error comes back over a close-on-exec pipe. Its PID."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            chan.close()
            os.close(read_end)
            os.setsid()
            if cfg.console_path:
                fd = os.open(cfg.console_path, os.O_RDWR)  # a session leader's first terminal: its controlling one
                for target in (0, 1, 2):
                    os.dup2(fd, target)
                if fd > 2:
                    os.close(fd)
            _exec(cfg)
        except ChildError as e:
            code = e.code
            with contextlib.suppress(OSError):
                os.write(write_end, json.dumps({"code": e.code, "msg": str(e)}).encode())
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(write_end, json.dumps({"code": 125, "msg": f"exec: {_describe(e)}"}).encode())
        os._exit(code)
    os.close(write_end)
    failure = read_report(read_end)
    if failure is not None:
        os.waitpid(pid, 0)
        raise ChildError(int(failure["code"]), str(failure["msg"]))
    return pid


def _spawn(cfg: ChildConfig) -> int:
    """posix_spawn the command the way `_exec` execs it; its PID.

    glibc's posix_spawn is a vfork: the new process, the only one the container can see, does nothing
    but start a session (taking the terminal, if any, as its controlling one) and execve, and it reports
    an execve error to this process.
    """
    actions: list[tuple] = []
    if cfg.console_path:
        actions = [(os.POSIX_SPAWN_OPEN, 0, cfg.console_path, os.O_RDWR, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)]
    name = cfg.args[0]
    denied = False
    for path in _candidates(name, cfg.env.get("PATH")):
        try:
            return os.posix_spawn(path, cfg.args, cfg.env, file_actions=actions, setsid=True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if e.errno == errno.EACCES:
                denied = True
                continue
            raise ChildError(126, f'exec: "{name}": {os.strerror(e.errno or 0)}') from None
    if denied:
        raise ChildError(126, f'exec: "{name}": permission denied')
    if "/" in name:
        raise ChildError(127, f'exec: "{name}": no such file or directory')
    raise ChildError(127, f'exec: "{name}": executable file not found in $PATH')


def _spawn_and_wait(cfg: ChildConfig, chan: Channel, parent: int) -> NoReturn:
    """Joining a running container: spawn the command into its PID namespace, then stand in for it.

    This process joined every namespace but the PID one (setns only moves its children there), so the
    container never sees it. It stays the command's parent, passes on the signals it gets and exits with
    the command's status (128+N for signal N), as the command itself would have.
    """
    command = _fork_exec(cfg, chan) if cfg.sealed else _spawn(cfg)

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM and cfg.kill_with_parent and os.getppid() != parent:
            signum = signal.SIGKILL  # our parent died (PR_SET_PDEATHSIG): so does the command
        with contextlib.suppress(ProcessLookupError):
            os.kill(command, signum)

    for signum in range(1, signal.NSIG):
        if signum not in init.NOT_FORWARDED:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, forward)
    if cfg.kill_with_parent and os.getppid() != parent:
        forward(signal.SIGTERM, None)
    for fd in (0, 1, 2):  # the command's copies are the ones that count (end of output, the terminal's hangup)
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        chan.send(SPAWNED, pid=command)  # the parent reaps it if this process is killed first (a subreaper)
    chan.close()  # the parent reads end-of-file: started
    while True:
        pid, status = os.waitpid(command, 0)
        if pid == command:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def _exec_or_report(cfg: ChildConfig, chan: Channel) -> NoReturn:
    code = 125
    try:
        _exec(cfg)
    except ChildError as e:
        code = e.code
        _report(chan, code, str(e))
    except BaseException as e:
        _report(chan, 125, f"exec: {_describe(e)}")
    os._exit(code)

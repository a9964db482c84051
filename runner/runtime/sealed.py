"""Joining a container that holds CAP_SYS_PTRACE: the joining process runs from a sealed copy of the interpreter.

CAP_SYS_PTRACE lets the container's processes past "not dumpable": they may open /proc/PID/exe of the
process that joins them, read and write its memory, and ptrace it. The host's interpreter as that exe
could then be overwritten (CVE-2019-5736); a vfork shared with a process outside the container's PID
namespace could be taken over. So, like runc copying itself into a sealed memfd, the process forked to
join such a container first re-executes the interpreter from a memfd that no one can write (sealed),
with an empty environment, the channel and the prepared configuration as its only descriptors; that fresh
process then joins, hardens itself and forks (no vfork) the command, which only execs.

    fork ─▶ reexec(cfg, chan): not dumpable, cgroup joined, execve(memfd) ─▶ main(): child.main(cfg, chan)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from typing import TYPE_CHECKING

from minirun.runtime import syscalls as sc

if TYPE_CHECKING:
    from typing import NoReturn

    from minirun.runtime.channel import Channel
    from minirun.runtime.config import ChildConfig

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
ENTRY = "from minirun.runtime.sealed import main; main()"


def _sealed_copy(path: str, name: str) -> int:
    """A memfd holding the bytes of `path`, sealed against every change."""
    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        while os.sendfile(fd, src, None, 1 << 22):
            pass
    finally:
        os.close(src)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    return fd


def _config_fd(cfg: ChildConfig) -> int:
    data = cfg.as_dict()
    data["seccomp"] = cfg.seccomp.hex() if cfg.seccomp is not None else None
    fd = os.memfd_create("minirun-exec-config", os.MFD_ALLOW_SEALING)  # inherited across the execve
    os.write(fd, json.dumps(data).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    return fd


def reexec(cfg: ChildConfig, chan: Channel) -> NoReturn:
    """In the forked child: join the cgroup (the only step that needs the host's view) and re-execute."""
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if cfg.cgroup is not None:
            cfg.cgroup.join()
            cfg.cgroup = None
        exe = _sealed_copy("/proc/self/exe", "minirun-exec")
        config = _config_fd(cfg)
        os.set_inheritable(chan.fileno(), True)
        # argv[0] names the interpreter's usual path, so it finds its library and site-packages as before.
        os.execve(exe, [sys.executable, "-I", "-c", ENTRY, str(chan.fileno()), str(config)], {})
    except BaseException as e:
        from minirun.runtime.channel import ERROR

        with contextlib.suppress(OSError):
            chan.send(ERROR, msg=f"re-executing a sealed copy of the interpreter: {e}", code=125)
    os._exit(125)


def main() -> NoReturn:
    """The re-executed interpreter: read the configuration and carry on as the joining process."""
    from minirun.runtime import child
    from minirun.runtime.channel import Channel
    from minirun.runtime.config import ChildConfig

    chan_fd, config_fd = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(chan_fd, False)
    with os.fdopen(config_fd, "rb") as f:
        data = json.loads(f.read())
    seccomp = data.pop("seccomp")
    cfg = ChildConfig(**data)
    cfg.seccomp = bytes.fromhex(seccomp) if seccomp is not None else None
    child.main(cfg, Channel(socket.socket(fileno=chan_fd)))

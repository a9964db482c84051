"""`minirun run` on the real kernel: namespaces, PID 1, hostname, mounts, masked paths, capabilities, seccomp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kits.runkit import (
    assert_nothing_left,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
    status_fields,
)
from minirun.runtime import caps

pytestmark = pytest.mark.root

DEFAULT_CAPS = caps.mask(list(caps.DOCKER_DEFAULT))


def sections(output: str) -> dict[str, str]:
    """Split `== name ==` delimited output."""
    out: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("== ") and line.endswith(" =="):
            current = line[3:-3]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


PROBE = """
echo "== ns =="; for n in cgroup ipc mnt net pid uts; do echo "$n $(readlink /proc/self/ns/$n)"; done
echo "== pid =="; echo $$
echo "== ps =="; ps -o pid,comm
echo "== hostname =="; hostname; cat /etc/hostname
echo "== mountinfo =="; cat /proc/self/mountinfo
echo "== status =="; cat /proc/self/status
echo "== ls-root =="; ls -a /
echo "== net =="; cat /proc/net/dev
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> tuple[dict[str, str], Path]:
    """One container run, shared by the tests below (each asserts one property of it)."""
    from kits.storekit import add_rootfs_image
    from minicache.store import Store

    root = tmp_path_factory.mktemp("isolation") / "store"
    add_rootfs_image(Store(root), busybox_rootfs, "busybox-test:latest")
    result = minirun(root, "run", "--rm", "busybox-test", "sh", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(root)
    return sections(result.stdout), root


def test_namespaces_differ_from_the_hosts(probe: tuple[dict[str, str], Path]) -> None:
    inside = dict(line.split(" ", 1) for line in probe[0]["ns"].splitlines())
    for name, link in inside.items():
        assert link != os.readlink(f"/proc/self/ns/{name}"), name
        assert link.startswith(f"{name}:[")


def test_command_is_pid_1_and_sees_only_its_processes(probe: tuple[dict[str, str], Path]) -> None:
    out = probe[0]
    assert out["pid"].strip() == "1"
    rows = [line.split() for line in out["ps"].splitlines()[1:]]
    assert (rows[0][0], rows[0][1]) == ("1", "sh")
    assert [r[1] for r in rows] == ["sh", "ps"]  # nothing else is visible


def test_hostname_is_the_short_id(probe: tuple[dict[str, str], Path]) -> None:
    names = probe[0]["hostname"].split()
    assert names[0] == names[1] and len(names[0]) == 12
    assert names[0] != os.uname().nodename


def test_mounts_show_no_host_path_and_no_old_root(probe: tuple[dict[str, str], Path]) -> None:
    out, store_root = probe
    mountpoints = [line.split()[4] for line in out["mountinfo"].splitlines()]
    assert mountpoints[0] == "/"
    for needed in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hosts"):
        assert needed in mountpoints
    host_paths = [p for p in mountpoints if p.startswith(("/work", "/tmp/pytest", str(store_root)))]
    assert host_paths == []
    assert len(mountpoints) == len(set(mountpoints))  # the old root is gone, not stacked somewhere
    assert sorted(out["ls-root"].split()) == sorted(
        [".", "..", "bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "var"]
    )
    assert "lo:" in out["net"] and len([ln for ln in out["net"].splitlines() if ":" in ln]) == 1


def test_capabilities_nnp_and_seccomp(probe: tuple[dict[str, str], Path]) -> None:
    status = status_fields(probe[0]["status"])
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == DEFAULT_CAPS, field
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"


def test_masked_and_read_only_paths(store_root: Path, busybox_image: str) -> None:
    script = """
    for p in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts; do
        [ -e $p ] || continue; echo "$p:$(wc -c < $p)"; done
    for d in /proc/acpi /sys/firmware; do [ -d $d ] && echo "$d:$(ls $d | wc -l)"; done
    echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable
    touch /sys/x 2>/dev/null && echo sysfs-writable
    mkdir /sys/fs/cgroup/x 2>/dev/null && echo cgroupfs-writable
    echo done
    """
    result = minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[-1] == "done"
    for line in lines[:-1]:
        path, _, size = line.partition(":")
        assert size == "0", f"{path} is not masked"
    assert "sys-writable" not in lines and "sysfs-writable" not in lines and "cgroupfs-writable" not in lines
    assert_nothing_left(store_root)


def test_root_cannot_unshare_or_mount(store_root: Path, busybox_image: str) -> None:
    script = """
    unshare -m true 2>&1; echo "unshare=$?"
    mkdir -p /mnt; mount -t tmpfs none /mnt 2>&1; echo "mount=$?"
    """
    result = minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", script)
    assert "unshare: unshare(0x20000): Operation not permitted" in result.stdout  # EPERM
    assert "mount: permission denied" in result.stdout and "mount=1" in result.stdout  # busybox's words for EPERM
    # With CAP_SYS_ADMIN the filter lets mount through (the caps-conditional part of the profile).
    admin = minirun(store_root, "run", "--rm", "--cap-add", "SYS_ADMIN", busybox_image, "sh", "-c", script)
    assert "mount=0" in admin.stdout and "unshare=0" in admin.stdout, admin.stdout


def test_seccomp_unconfined_and_no_new_privileges_off(store_root: Path, busybox_image: str) -> None:
    result = minirun(
        store_root,
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "no-new-privileges=false",
        busybox_image,
        "cat",
        "/proc/self/status",
    )
    status = status_fields(result.stdout)
    assert status["Seccomp"] == "0" and status["NoNewPrivs"] == "0"


def test_seccomp_without_no_new_privs_still_loads(store_root: Path, busybox_image: str) -> None:
    """Without no_new_privs the filter is loaded while the init still has CAP_SYS_ADMIN (as runc does)."""
    result = minirun(
        store_root,
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=false",
        "-u",
        "1000",
        busybox_image,
        "cat",
        "/proc/self/status",
    )
    status = status_fields(result.stdout)
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "0" and int(status["CapEff"], 16) == 0


@pytest.mark.parametrize(
    ("flags", "eff", "amb"),
    [
        (
            ["--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN"],
            (DEFAULT_CAPS | 1 << caps.NUMBERS["CAP_NET_ADMIN"]) & ~(1 << caps.NUMBERS["CAP_CHOWN"]),
            0,
        ),
        (["--cap-drop", "ALL"], 0, 0),
        (["-u", "1000"], 0, 0),
        (
            ["-u", "user", "--cap-add", "NET_BIND_SERVICE"],
            1 << caps.NUMBERS["CAP_NET_BIND_SERVICE"],
            1 << caps.NUMBERS["CAP_NET_BIND_SERVICE"],
        ),
    ],
)
def test_capability_flags(store_root: Path, busybox_image: str, flags: list[str], eff: int, amb: int) -> None:
    result = minirun(store_root, "run", "--rm", *flags, busybox_image, "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    status = status_fields(result.stdout)
    assert int(status["CapEff"], 16) == eff
    assert int(status["CapPrm"], 16) == eff
    assert int(status["CapAmb"], 16) == amb
    assert int(status["CapInh"], 16) == amb


def test_privileged(store_root: Path, busybox_image: str) -> None:
    script = "cat /proc/self/status; echo '== dev =='; ls /dev; mkdir -p /mnt; mount -t tmpfs t /mnt && echo mounted"
    result = minirun(store_root, "run", "--rm", "--privileged", busybox_image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    status = status_fields(result.stdout)
    assert int(status["CapEff"], 16) == caps.mask(list(caps.available()))
    assert status["Seccomp"] == "0"
    assert "mounted" in result.stdout
    devices = result.stdout.split("== dev ==")[1].split()
    assert len(devices) > 20  # the host's devices, not only the standard six
    assert_nothing_left(store_root)


def test_no_host_fd_reaches_the_container(store_root: Path, busybox_image: str) -> None:
    leak = os.open("/etc/hostname", os.O_RDONLY)  # inheritable on purpose: minirun must not pass it on
    os.set_inheritable(leak, True)
    try:
        result = minirun(store_root, "run", "--rm", busybox_image, "ls", "/proc/self/fd")
    finally:
        os.close(leak)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


SYSCALL_PROBE = r"""
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
# Arguments the kernel itself would reject (NULL pointers, CLONE_NEWNS|CLONE_FS): any EPERM/ENOSYS
# below comes from the filter, which runs before the kernel looks at them.
print("clone3", call(435, 0, 0))
print("clone_ns", call(56, 0x20000 | 0x200 | 17, 0, 0, 0, 0))
print("keyctl", call(250, 0, 0, 0, 0, 0))
print("add_key", call(248, 0, 0, 0, 0, 0))
print("kexec_load", call(246, 0, 0, 0, 0))
print("open_by_handle_at", call(304, 0, 0, 0))
print("personality", call(135, 0xffffffff))
print("getpid", call(39))
"""


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs the host's python3 to probe syscalls")
def test_default_seccomp_profile_behaviour(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    """Docker's profile: clone3 → ENOSYS (libc falls back), namespace clone → EPERM, keyring/kexec/... → EPERM.

    The host's python3 is bind-mounted into the busybox container to make the raw system calls.
    """
    probe = tmp_path / "probe.py"
    probe.write_text(SYSCALL_PROBE)
    mounts = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro", "-v", f"{probe}:/p.py:ro"]

    def run(*flags: str) -> dict[str, str]:
        result = minirun(store_root, "run", "--rm", *flags, *mounts, busybox_image, "/usr/bin/python3", "-I", "/p.py")
        assert result.returncode == 0, result.stderr
        return dict(line.split() for line in result.stdout.splitlines())

    default, unconfined = run(), run("--security-opt", "seccomp=unconfined")
    admin = run("--cap-add", "SYS_ADMIN")
    assert default["clone3"] == "ENOSYS" and unconfined["clone3"] == admin["clone3"] == "EINVAL"
    assert default["clone_ns"] == "EPERM" and unconfined["clone_ns"] == admin["clone_ns"] == "EINVAL"
    for name in ("keyctl", "add_key", "kexec_load", "open_by_handle_at"):
        assert default[name] == "EPERM" and unconfined[name] != "EPERM", name
    assert default["personality"] == default["getpid"] == "ok"

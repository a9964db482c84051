"""The VM lane: boot Debian's own kernel with virtme-ng and run the `vm` tests on pure cgroup v2 inside it.

This machine is a v1/v2 hybrid (every controller on v1), so a real cgroup v2 with its controllers exists only
in a VM. `python tests/kits/vmkit.py` (what `make test-vm` runs) boots the newest /boot/vmlinuz-* under QEMU's
software emulation (nested KVM does not work here) with the host's filesystem shared read-only, and runs
tests/kits/vmguest.sh in it: one boot for the whole lane. The guest has no systemd and all controllers at its
root; it mounts a tmpfs on /tmp (the tests' stores and bundles live there: overlayfs cannot use the shared
9p root as an upper layer), loads the loop driver for the block I/O flags, and runs `pytest -m vm` on LANE
with this worktree's venv. The guest's exit status is the lane's.

A host that cannot boot the VM (no QEMU, no kernel image, no virtme-ng) skips the lane with the reason and
exit status 0: nothing else in the suite depends on it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

KITS = Path(__file__).resolve().parent
WORKTREE = KITS.parent.parent
# The files the lane runs (their `vm` tests only). Each must skip cleanly outside a pure-v2 kernel.
LANE = [
    "tests/runner/cgroups/test_cgroup_v2_kernel.py",
    "tests/runner/cgroups/test_cgroup_containers.py",
    "tests/runner/cgroups/test_cgroup_vm_run.py",
    "tests/runner/cgroups/test_cgroup_vm_runc.py",
]
GUEST_MEMORY = "3G"
BOOT_TIMEOUT = 1500  # the whole lane, boot included (CI's budget is 30 minutes for everything)


def kernel_image() -> Path | None:
    """The newest Debian kernel in /boot (linux-image-amd64 installs it), or None."""

    def version(image: Path) -> list[int]:
        release = image.name.removeprefix("vmlinuz-").replace("-", ".")
        return [int(part) if part.isdigit() else 0 for part in release.split(".")]

    images = sorted(Path("/boot").glob("vmlinuz-*"), key=version)
    return images[-1] if images else None


def preflight() -> str | None:
    """Why the VM cannot boot here, or None if it can."""
    venv_bin = Path(sys.executable).parent
    if os.geteuid() != 0:
        return "the VM lane needs root (the guest runs as the host's user, and the tests need root in it)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if not (venv_bin / "vng").exists() and not shutil.which("vng"):
        return "virtme-ng is not installed in the venv (pip install virtme-ng: it is in the test extras)"
    image = kernel_image()
    if image is None:
        return "no kernel image in /boot (apt-get install linux-image-amd64)"
    if not os.access(image, os.R_OK):
        return f"{image} is not readable"
    if not Path("/lib/modules", image.name.removeprefix("vmlinuz-")).is_dir():
        return f"no modules for {image.name} in /lib/modules"
    return None


def vng_command(image: Path, guest_argv: list[str], disk: Path) -> list[str]:
    return [
        "vng",
        "--disk",
        str(disk),
        "--disable-kvm",
        "--run",
        str(image),
        "--cpus",
        "2",
        "--memory",
        GUEST_MEMORY,
        "--cwd",
        "/",
        "--exec",
        shlex.join(guest_argv),
    ]


def _copied_dirs() -> list[Path]:
    """What the guest's Python reads, as top directories: the worktree (its venv too, where `make venv` puts it),
    the venv if elsewhere, and the base interpreter's standard library."""
    dirs = [WORKTREE, Path(sys.prefix), Path(sysconfig.get_paths()["stdlib"])]
    top: list[Path] = []
    for d in dirs:
        if not any(d == t or d.is_relative_to(t) for t in top):
            top.append(d.resolve())
    return top


# Not needed in the guest: version control, pip, ruff, the static libpython, the standard library's tests and
# GUI, and the optimised bytecode variants (paths relative to a copied directory; globs as in pathlib).
EXCLUDES = [
    ".git",
    "**/site-packages/pip",
    "**/bin/ruff",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "site-packages",  # the base interpreter's own (a venv never reads it); the venv's is deeper
    "config-*",
    "**/*.opt-1.pyc",
    "**/*.opt-2.pyc",
]


def pack(image: Path, dirs: list[Path], scratch: Path) -> None:
    """An ext4 image of `dirs` at their own absolute paths, built from hard links (no data copied here): the
    guest mounts it from a virtio disk and reads only what Python imports."""
    stage = scratch / "stage"
    for d in dirs:
        target = stage / d.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["cp", "-al", str(d), str(target)], check=False).returncode != 0:  # another filesystem
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["cp", "-a", str(d), str(target)], check=True)
        for pattern in EXCLUDES:
            for found in list(target.glob(pattern)):
                if found.is_dir() and not found.is_symlink():
                    shutil.rmtree(found)
                elif found.exists() or found.is_symlink():
                    found.unlink()
    size = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file() and not f.is_symlink())
    megabytes = size * 3 // 2 // (1 << 20) + 128  # room for ext4's metadata and for bytecode the tests write
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "mclane", "-d", str(stage), str(image), f"{megabytes}M"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def host(pytest_args: list[str]) -> int:
    """Boot the VM and run the lane in it; the exit status of pytest inside, 0 with the reason if skipped.

    Python over the guest's 9p root is too slow under emulation (every import is many emulated round trips), so
    the guest mounts the worktree, the venv and the standard library from a disk image, at the same paths.
    """
    reason = preflight()
    if reason is not None:
        print(f"VM lane SKIPPED: {reason}", flush=True)
        return 0
    image = kernel_image()
    assert image is not None
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}  # vng runs virtme-run from PATH
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mc-vm-lane-") as scratch:
        image_file = Path(scratch) / "lane.img"
        dirs = _copied_dirs()
        pack(image_file, dirs, Path(scratch))
        guest_argv = [
            "sh",
            str(KITS / "vmguest.sh"),
            ":".join(map(str, dirs)),
            str(WORKTREE),
            sys.executable,
            *LANE,
            *pytest_args,
        ]
        print(f"VM lane: booting {image.name} (software emulation) for {len(LANE)} files", flush=True)
        # Through a pipe: QEMU truncates a regular file given as its standard output or error. In a session of
        # its own, so the watchdog and an interrupt end vng, virtme-run and QEMU together, by that group's ID.
        proc = subprocess.Popen(
            vng_command(image, guest_argv, image_file),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        timed_out = threading.Event()

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(BOOT_TIMEOUT, lambda: (timed_out.set(), stop()))
        watchdog.start()
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            for line in proc.stdout:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            signal.signal(signal.SIGTERM, previous)
            if proc.poll() is None:
                stop()
                proc.wait()
    if timed_out.is_set():
        print(f"VM lane FAILED: not done after {BOOT_TIMEOUT}s", flush=True)
        return 1
    print(f"VM lane: exit status {returncode} after {time.monotonic() - started:.0f}s", flush=True)
    return returncode


if __name__ == "__main__":
    sys.exit(host(sys.argv[1:]))

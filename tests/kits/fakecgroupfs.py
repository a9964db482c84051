"""A fake cgroup2 filesystem: a tmp dir laid out like /sys/fs/cgroup, for the v2 driver's tests.

This machine runs a v1/v2 hybrid whose v2 hierarchy has no controllers, so the v2 controller files
(memory.max, cpu.max, pids.max, ...) cannot be shown by its kernel. This fake stands in for the kernel's
part only: new directories get the interface files their parent's cgroup.subtree_control grants, a
directory with processes cannot be removed, and a small "kernel" thread honours cgroup.freeze and
cgroup.kill. Everything else is the real driver writing real files.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

from minirun.cgroups.v2 import V2Cgroup

ALL_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")

CORE_FILES = {
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
    "cgroup.type": "domain\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
CONTROLLER_FILES = {
    "memory": {
        "memory.current": "0\n",
        "memory.max": "max\n",
        "memory.high": "max\n",
        "memory.low": "0\n",
        "memory.swap.max": "max\n",
        "memory.swap.current": "0\n",
        "memory.stat": "anon 0\nfile 0\ninactive_file 0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "cpu": {"cpu.weight": "100\n", "cpu.max": "max 100000\n"},
    "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cpuset.cpus.effective": "0-1\n"},
    "io": {"io.stat": "", "io.max": "", "io.weight": "default 100\n"},
    "pids": {"pids.current": "0\n", "pids.max": "max\n", "pids.events": "max 0\n"},
    "hugetlb": {"hugetlb.2MB.max": "max\n"},
}


class FakeCgroupfs:
    """A fake cgroup2 mount at `root`; `controllers` are the kernel's, `enabled` what the root's
    cgroup.subtree_control grants at the start."""

    def __init__(
        self,
        root: Path,
        *,
        enabled: tuple[str, ...] = ("cpuset", "cpu", "io", "memory", "pids"),
        controllers: tuple[str, ...] = ALL_CONTROLLERS,
        swap: bool = True,
        kill_file: bool = True,
    ) -> None:
        self.root = root
        self.swap = swap
        self.kill_file = kill_file
        self._write(root, CORE_FILES)
        (root / "cgroup.controllers").write_text(" ".join(controllers) + "\n")
        (root / "cgroup.subtree_control").write_text(" ".join(enabled) + "\n")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _write(directory: Path, files: dict[str, str]) -> None:
        for name, content in files.items():
            (directory / name).write_text(content)

    def enabled_in(self, directory: Path) -> list[str]:
        text = (directory / "cgroup.subtree_control").read_text()
        return [c.lstrip("+") for c in text.split()]

    # -- what the kernel does on mkdir and rmdir -------------------------------------------------------------
    def populate(self, directory: Path) -> None:
        granted = self.enabled_in(directory.parent)
        files = dict(CORE_FILES)
        if not self.kill_file:
            del files["cgroup.kill"]
        for controller in granted:
            files.update(CONTROLLER_FILES.get(controller, {}))
        if not self.swap:
            files.pop("memory.swap.max", None)
            files.pop("memory.swap.current", None)
        self._write(directory, files)
        (directory / "cgroup.controllers").write_text(" ".join(granted) + "\n")

    def remove(self, directory: Path) -> None:
        if not directory.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(directory))
        if (directory / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, "Device or resource busy", str(directory))
        for entry in directory.iterdir():
            if entry.is_dir():
                raise OSError(errno.EBUSY, "Device or resource busy", str(directory))
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()

    # -- what the kernel does on cgroup.freeze and cgroup.kill (a thread polling every millisecond) -----------
    def start_kernel(self, *, freeze_delay: float = 0.0, freezes: bool = True) -> None:
        """Honour cgroup.freeze (after `freeze_delay` seconds, never if not `freezes`) and cgroup.kill."""

        def run() -> None:
            pending: dict[Path, float] = {}
            while not self._stop.wait(0.001):
                for events in list(self.root.rglob("cgroup.events")):
                    directory = events.parent
                    try:
                        want = (directory / "cgroup.freeze").read_text().strip() == "1"
                        frozen = "frozen 1" in events.read_text()
                        if want != frozen and freezes:
                            pending.setdefault(directory, time.monotonic() + (freeze_delay if want else 0))
                            if time.monotonic() >= pending[directory]:
                                events.write_text(f"populated 0\nfrozen {int(want)}\n")
                                del pending[directory]
                        kill = directory / "cgroup.kill"
                        if kill.exists() and kill.read_text().strip() == "1":  # the whole subtree dies
                            for procs in directory.rglob("cgroup.procs"):
                                for pid in procs.read_text().split():
                                    os.kill(int(pid), signal.SIGKILL)
                                procs.write_text("")
                            kill.write_text("")
                    except FileNotFoundError:
                        continue

        self._thread = threading.Thread(target=run, name="fake-cgroup-kernel", daemon=True)
        self._thread.start()

    def stop_kernel(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class FakeV2Cgroup(V2Cgroup):
    """The real v2 driver with the fake filesystem's kernel behaviour for mkdir and rmdir."""

    def __init__(self, container_id: str, parent: str, fs: FakeCgroupfs) -> None:
        super().__init__(container_id, parent, mount=fs.root)
        self.fs = fs

    def _mkdir(self, path: Path) -> bool:
        made = super()._mkdir(path)
        if made:
            self.fs.populate(Path(path))
        return made

    def _rmdir(self, path: Path) -> None:
        self.fs.remove(Path(path))

    def _attach_device_filter(self, rules: tuple[tuple[bool, str], ...]) -> None:
        """A plain directory takes no eBPF program: note the rules (test_cgroup_v2_kernel attaches for real)."""
        self.device_rules = rules

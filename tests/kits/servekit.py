"""`minirun serve` for tests: a real server process on its own socket, and the real docker CLI pointed at it."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from kits.runkit import MINIRUN, container_ids, minirun, wait_until


def docker_cli() -> str | None:
    """Debian's docker CLI (docker.io), else any `docker` on PATH."""
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `minirun --root STORE serve`; stopped (by PID) with stop()."""

    def __init__(self, store_root: Path, sock: Path, *extra: str) -> None:
        self.store_root = store_root
        self.sock = sock
        self.proc = subprocess.Popen(
            [MINIRUN, "--root", str(store_root), "serve", "--socket", str(sock), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stderr.readline()  # "minirun serve: listening on ..." once every listener answers
        if "listening" not in line:
            rest = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise AssertionError(f"minirun serve did not start: {line}{rest}")

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def docker(
        self, *args: str, timeout: float = 60, env: dict | None = None, host: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cli = docker_cli()
        assert cli, "no docker CLI"
        config = self.store_root.parent / "docker-config"
        config.mkdir(exist_ok=True)
        return subprocess.run(
            [cli, "-H", host or self.url, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "DOCKER_CONFIG": str(config), **(env or {})},
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self.proc.stderr.close()


def remove_all(store_root: Path) -> None:
    """`minirun rm -f` every container of the store (teardown)."""
    if (store_root / "containers").is_dir():
        for cid in container_ids(store_root):
            with contextlib.suppress(Exception):
                minirun(store_root, "rm", "-f", cid, timeout=30)


# Through the API and a browser a change shows later, and a browser is polled less often.
wait_for = functools.partial(wait_until, timeout=15.0, interval=0.1)

#!/usr/bin/env python3
"""`minirun serve` beside `podman system service` (Docker-compatible API), in the same run.

    .venv/bin/python bench/serve.py [--containers 100] [--running 20] [--runs 20] [--window 10]

Both servers listen on their own Unix socket; podman gets a throwaway --root/--runroot under the same
temp dir and is stopped by PID. Figures:
  list     GET /containers/json?all=1 with N created containers (median of --runs, after 3 warm-up requests)
  stats    CPU used by the server process while M running containers have a `stats` stream each
           (Docker's /containers/ID/stats?stream=1, one reading a second), over --window seconds,
           in percent of one core
  rss      the server's RSS after the stats window (VmRSS)
  start-up from starting the server to its first answer to GET /_ping
Our server is the `minirun` console script of a plain (non-editable) install of this checkout, as
users run it. Everything lives under one temp dir (and one cgroup parent), removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import benchkit  # noqa: E402
from benchkit import check  # noqa: E402
from kits.runkit import reap_exited  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def get(sock: str, path: str) -> bytes:
    conn = UnixConnection(sock)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path} on {sock}: {response.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def wait_answer(sock: str, proc: subprocess.Popen, timeout: float = 30) -> float:
    """Seconds until the server at `sock` answers /_ping (polled every millisecond)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            get(sock, "/_ping")
            return time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            time.sleep(0.001)
    raise SystemExit(f"no answer on {sock} within {timeout} s")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stats_load(sock: str, ids: list[str], pid: int, window: float) -> float:
    """Percent of one core the server at `pid` used while every container in `ids` had a stats stream."""
    stop_reading = threading.Event()
    errors: list[str] = []

    def read(container_id: str) -> None:
        conn = UnixConnection(sock, timeout=window + 30)
        try:
            conn.request("GET", f"/containers/{container_id}/stats?stream=1")
            response = conn.getresponse()
            while not stop_reading.is_set():
                if not response.readline():
                    break
        except (OSError, http.client.HTTPException) as e:
            if not stop_reading.is_set():
                errors.append(str(e))
        finally:
            conn.close()

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in ids]
    for r in readers:
        r.start()
    time.sleep(3)  # every stream has started and sent its first reading
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - start
    stop_reading.set()
    for r in readers:
        r.join(timeout=5)
    if errors:
        raise SystemExit(f"stats streams failed: {errors[:3]}")
    return used / elapsed * 100


def median_get(sock: str, path: str, runs: int) -> list[float]:
    for _ in range(3):
        get(sock, path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        get(sock, path)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100, help="created containers listed (default 100)")
    parser.add_argument("--running", type=int, default=20, help="running containers with a stats stream (20)")
    parser.add_argument("--runs", type=int, default=20, help="list requests timed per side (default 20)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of stats streaming measured")
    args = parser.parse_args()
    work, env = benchkit.detached_workspace("bench/serve.py", "minirun-bench-serve-")
    store = work / "store"
    minirun = benchkit.installed_minirun(work)
    ours = [minirun, "--root", str(store)]
    podman = benchkit.podman(work / "podman-root", work / "podman-run")
    our_sock, peer_sock = str(work / "minirun.sock"), str(work / "podman.sock")
    servers: list[subprocess.Popen] = []
    results: dict[str, dict[str, float]] = {"minirun": {}, "podman": {}}
    try:
        benchkit.busybox_images(work, store, podman, env)
        peer_run = [*benchkit.PODMAN_ULIMITS, "--network", "none", "--cgroup-parent", f"/{work.name}"]

        # start-up to first answer (an empty store on both sides)
        for name, cmd, sock in (
            ("minirun", [*ours, "serve", "--socket", our_sock], our_sock),
            ("podman", [*podman, "system", "service", "--time=0", f"unix://{peer_sock}"], peer_sock),
        ):
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            servers.append(proc)
            results[name]["start-up"] = wait_answer(sock, proc)
            results[name]["start-up cpu"] = cpu_seconds(proc.pid)
        our_server, peer_server = servers

        print(f"creating {args.containers} containers on each side ...", file=sys.stderr)
        for _ in range(args.containers):
            check([*ours, "create", "--network", "none", "bench/busybox", "true"], env)
            check([*podman, "create", *peer_run, "localhost/bench-busybox:latest", "true"], env)
        for name, sock, proc in (("minirun", our_sock, our_server), ("podman", peer_sock, peer_server)):
            before = cpu_seconds(proc.pid)
            times = median_get(sock, "/v1.41/containers/json?all=1", args.runs)
            results[name]["list"] = statistics.median(times)
            results[name]["list cpu"] = (cpu_seconds(proc.pid) - before) / (args.runs + 3)

        print(f"starting {args.running} containers on each side ...", file=sys.stderr)
        our_ids, peer_ids = [], []
        for _ in range(args.running):
            our_ids.append(check([*ours, "run", "-d", "--network", "none", "bench/busybox", "sleep", "3600"], env))
            peer_ids.append(
                check([*podman, "run", "-d", *peer_run, "localhost/bench-busybox:latest", "sleep", "3600"], env)
            )
        for name, sock, ids, proc in (
            ("minirun", our_sock, our_ids, our_server),
            ("podman", peer_sock, peer_ids, peer_server),
        ):
            results[name]["stats"] = stats_load(sock, ids, proc.pid, args.window)
            results[name]["rss"] = rss_mib(proc.pid)
    finally:
        for proc in servers:
            stop(proc)
        subprocess.run([*podman, "rm", "-a", "-f", "-t", "0"], capture_output=True, env=env)
        if (store / "containers").is_dir():
            ids = [n for n in os.listdir(store / "containers") if len(n) == 64]
            if ids:
                subprocess.run([*ours, "rm", "-f", *ids], capture_output=True, env=env)
        time.sleep(0.5)
        reap_exited()
        benchkit.remove_workspace(work)

    ours_r, peer_r = results["minirun"], results["podman"]
    print("minirun serve beside podman system service (Docker-compatible API on a Unix socket)")
    print(f"  GET /containers/json?all=1, {args.containers} containers, median of {args.runs}")
    print(f"    wall        minirun {ours_r['list'] * 1000:7.1f} ms   podman {peer_r['list'] * 1000:7.1f} ms   "
          f"ratio {ours_r['list'] / peer_r['list']:.2f}x")  # fmt: skip
    print(f"    server CPU  minirun {ours_r['list cpu'] * 1000:7.1f} ms   podman {peer_r['list cpu'] * 1000:7.1f} ms   "
          f"ratio {ours_r['list cpu'] / peer_r['list cpu']:.2f}x  (per request)")  # fmt: skip
    print(f"  stats streams for {args.running} running containers, 1 Hz, over {args.window:g} s (CPU of one core)")
    print(f"    minirun {ours_r['stats']:6.2f} %    podman {peer_r['stats']:6.2f} %")
    print("  server RSS after the stats window")
    print(f"    minirun {ours_r['rss']:6.1f} MiB  podman {peer_r['rss']:6.1f} MiB")
    print("  start-up to the first answer (GET /_ping)")
    print(f"    wall        minirun {ours_r['start-up'] * 1000:7.1f} ms   podman {peer_r['start-up'] * 1000:7.1f} ms")
    print(f"    server CPU  minirun {ours_r['start-up cpu'] * 1000:7.1f} ms   "
          f"podman {peer_r['start-up cpu'] * 1000:7.1f} ms")  # fmt: skip
    print(f"  (load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Concurrency: separate `minirun` processes creating, starting, stopping and removing containers at once.

While they work, a reader keeps parsing every container.json / state.json of the store: a torn (half
written) record would fail to parse. Names are races too: of several processes asking for one name,
exactly one gets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from kits.lifecyclekit import assert_ps_truthful, ps_json, run_d, status
from kits.runkit import MINIRUN, assert_nothing_left, minirun

pytestmark = pytest.mark.root

IMAGE = "busybox-test"
WORKERS = 10


class RecordReader(threading.Thread):
    """Parse every container record of the store in a loop until stopped; collect what failed to parse."""

    def __init__(self, store_root: Path) -> None:
        super().__init__(daemon=True)
        self.cdir = store_root / "containers"
        self.done = threading.Event()
        self.torn: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.done.is_set():
            for cid in os.listdir(self.cdir) if self.cdir.is_dir() else ():
                for name in ("container.json", "state.json", "config.json"):
                    try:
                        text = (self.cdir / cid / name).read_bytes()
                    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                        continue
                    try:
                        json.loads(text)
                        self.reads += 1
                    except ValueError:
                        self.torn.append(f"{cid}/{name}: {text[:80]!r}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def worker_script(store_root: Path, name: str) -> list[str]:
    """One worker's lifecycle, as a shell running the CLI command after command (exits at the first error)."""
    m = f"{MINIRUN} --root {store_root}"
    loop = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
    steps = [
        f'{m} create --name {name} {IMAGE} sh -c "{loop}" >/dev/null',
        f"{m} start {name} >/dev/null",
        f'test "$({m} exec {name} echo hi)" = hi',
        f"{m} stop -t 5 {name} >/dev/null",
        f"{m} start {name} >/dev/null",
        f"{m} rm -f {name} >/dev/null",
    ]
    return ["sh", "-ec", "\n".join(steps)]


def test_ten_containers_through_their_lifecycle_in_parallel(store_root: Path, busybox_image: str) -> None:
    reader = RecordReader(store_root)
    reader.start()
    try:
        procs = [
            subprocess.Popen(worker_script(store_root, f"par{i}"), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(WORKERS)
        ]
        # ps from yet another process meanwhile: never fails, every row a known state (whether a row is
        # the truth cannot be checked here: the container moves on between ps and the check)
        for _ in range(5):
            assert {row["State"] for row in ps_json(store_root)} <= {"created", "running", "exited"}
        errors = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    finally:
        reader.stop()
    assert all(code == 0 for code, _ in errors), errors
    assert reader.torn == [], reader.torn
    assert reader.reads > 0
    assert minirun(store_root, "ps", "-aq").stdout == ""
    assert_nothing_left(store_root)


def test_ten_detached_containers_stopped_and_removed_in_parallel(store_root: Path, busybox_image: str) -> None:
    loop = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
    ids = [run_d(store_root, "--name", f"s{i:02d}", IMAGE, "sh", "-c", loop) for i in range(WORKERS)]
    assert [r["State"] for r in ps_json(store_root)] == ["running"] * WORKERS
    reader = RecordReader(store_root)
    reader.start()
    try:
        stops = [subprocess.Popen([MINIRUN, "--root", str(store_root), "stop", cid]) for cid in ids]
        assert [p.wait(timeout=60) for p in stops] == [0] * WORKERS
        assert all(r["Status"].startswith("Exited (0)") for r in assert_ps_truthful(store_root))
        removals = [subprocess.Popen([MINIRUN, "--root", str(store_root), "rm", cid]) for cid in ids]
        assert [p.wait(timeout=60) for p in removals] == [0] * WORKERS
    finally:
        reader.stop()
    assert reader.torn == []
    assert_nothing_left(store_root)


def race(store_root: Path, n: int, *args: str) -> list[subprocess.CompletedProcess]:
    """Start `n` identical `minirun ARGS` at once (held on a pipe, released together); their results."""
    return race_commands([[MINIRUN, "--root", str(store_root), *args] for _ in range(n)])


def race_commands(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Each command in its own process, all released at the same moment: each shell waits for one line of
    a shared pipe (its stdin), then execs the command with stdin from /dev/null."""
    r, w = os.pipe()
    procs = [
        subprocess.Popen(
            ["sh", "-c", 'read _; exec "$@" </dev/null', "sh", *command],
            stdin=r,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    os.close(r)
    os.write(w, b"\n" * len(commands))
    os.close(w)
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_create_with_the_same_name_from_many_processes_one_wins(store_root: Path, busybox_image: str) -> None:
    for attempt in range(3):
        results = race(store_root, 8, "create", "--name", f"same{attempt}", IMAGE, "true")
        winners = [r for r in results if r.returncode == 0]
        losers = [r for r in results if r.returncode != 0]
        assert len(winners) == 1, [(r.returncode, r.stderr) for r in results]
        assert all(r.returncode == 125 and "already in use" in r.stderr for r in losers), [r.stderr for r in losers]
        rows = [r for r in ps_json(store_root) if r["Names"] == f"same{attempt}"]
        assert len(rows) == 1 and rows[0]["ID"] == winners[0].stdout.strip()
    assert len(ps_json(store_root)) == 3  # the losers left no half-made container behind
    assert minirun(store_root, "container", "prune", "-f").returncode == 0
    assert_nothing_left(store_root)


def test_rename_to_the_same_name_from_many_processes_one_wins(store_root: Path, busybox_image: str) -> None:
    ids = [minirun(store_root, "create", IMAGE, "true").stdout.strip() for _ in range(6)]
    results = race_commands([[MINIRUN, "--root", str(store_root), "rename", cid, "wanted"] for cid in ids])
    codes = [r.returncode for r in results]
    assert sorted(codes) == [0] + [1] * (len(ids) - 1), [(r.returncode, r.stderr) for r in results]
    assert all("already in use" in r.stderr for r in results if r.returncode), [r.stderr for r in results]
    names = [row["Names"] for row in ps_json(store_root)]
    assert names.count("wanted") == 1
    assert minirun(store_root, "container", "prune", "-f").returncode == 0
    assert_nothing_left(store_root)


def test_concurrent_start_and_stop_of_one_container_serialise(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "shared", IMAGE, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done")
    results = race(store_root, 4, "start", "shared") + race(store_root, 4, "stop", "shared")
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert status(store_root, "shared") == "exited"
    assert_ps_truthful(store_root)
    results = race(store_root, 4, "start", "shared")
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert status(store_root, "shared") == "running"
    # exactly one process of the container runs: four starts did not start four
    top = minirun(store_root, "top", "shared").stdout.splitlines()
    assert sum("while" in line or "sh -c" in line for line in top[1:]) == 1, top
    results = race(store_root, 4, "rm", "-f", "shared")
    assert sorted(r.returncode for r in results)[0] == 0
    assert all(r.returncode == 0 or "No such container" in r.stderr for r in results), [r.stderr for r in results]
    assert_nothing_left(store_root)

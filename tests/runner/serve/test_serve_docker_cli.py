"""The docker CLI (Debian's docker.io) against `minirun serve`'s Engine API, on real containers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import run_d, status
from kits.runkit import minirun
from kits.servekit import Server, docker_cli, remove_all, wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(docker_cli() is None, reason="the docker CLI is not installed")]

LOOP = "i=0; while true; do echo out$i; echo err$i >&2; i=$((i+1)); sleep 0.2; done"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def test_version_and_info(server: Server) -> None:
    out = ok(server.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}"))
    assert out.split() == ["1.41", "linux"]
    info = json.loads(ok(server.docker("info", "--format", "{{json .}}")))
    assert info["ContainersRunning"] == 0 and info["Images"] == 1
    assert info["DockerRootDir"] == str(server.store_root)


def test_ps_shows_containers_started_before_the_server_and_filters(
    store_root: Path, busybox_image: str, tmp_path: Path, no_leaks, reaper
) -> None:
    web = run_d(store_root, "--name", "web", "--label", "tier=front", busybox_image, "sleep", "60")
    done = minirun(store_root, "run", "--name", "done", busybox_image, "true")
    assert done.returncode == 0, done.stderr
    srv = Server(store_root, tmp_path / "api.sock")  # started after both: it reads the store, nothing of its own
    try:
        assert ok(srv.docker("ps", "--format", "{{.Names}}")).split() == ["web"]
        assert sorted(ok(srv.docker("ps", "-a", "--format", "{{.Names}}")).split()) == ["done", "web"]
        assert ok(srv.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}")).split() == ["done"]
        assert ok(srv.docker("ps", "-a", "--filter", "name=we", "--format", "{{.Names}}")).split() == ["web"]
        assert ok(srv.docker("ps", "-a", "--filter", "label=tier=front", "-q", "--no-trunc")).split() == [web]
        assert ok(srv.docker("ps", "-a", "--filter", "id=" + web[:10], "--format", "{{.Names}}")).split() == ["web"]
        srv.stop()
        srv = Server(store_root, tmp_path / "api.sock")  # stateless across restarts
        assert ok(srv.docker("ps", "--format", '{{.Names}} {{.Label "tier"}}')).split() == ["web", "front"]
    finally:
        remove_all(store_root)
        srv.stop()


def test_inspect_top_and_wait(server: Server, busybox_image: str) -> None:
    cid = run_d(server.store_root, "--name", "sleeper", busybox_image, "sleep", "60")
    doc = json.loads(ok(server.docker("inspect", "sleeper")))[0]
    assert doc["Id"] == cid and doc["Name"] == "/sleeper" and doc["State"]["Running"] is True
    assert ok(server.docker("inspect", "-f", "{{.State.Pid}}", "sleeper")).strip() == str(doc["State"]["Pid"])
    top = ok(server.docker("top", "sleeper")).splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and any("sleep 60" in line for line in top[1:])
    waiter = subprocess.Popen(
        [docker_cli(), "-H", server.url, "wait", "sleeper"], stdout=subprocess.PIPE, text=True,
        env={"DOCKER_CONFIG": str(server.store_root.parent / "docker-config"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    time.sleep(0.5)
    ok(server.docker("kill", "sleeper"))
    assert waiter.communicate(timeout=20)[0].strip() == "137"


def test_logs_multiplexed_tail_since_timestamps_and_follow(server: Server, busybox_image: str) -> None:
    run_d(server.store_root, "--name", "talker", busybox_image, "sh", "-c", LOOP)
    wait_for(lambda: "out5" in minirun(server.store_root, "logs", "talker").stdout, what="six lines of output")
    result = server.docker("logs", "talker")
    assert result.returncode == 0
    assert "out0\nout1\n" in result.stdout and "err" not in result.stdout  # stdout and stderr arrive apart
    assert "err0\nerr1\n" in result.stderr and "out" not in result.stderr
    tail = server.docker("logs", "--tail", "2", "talker")
    assert len(tail.stdout.splitlines()) + len(tail.stderr.splitlines()) == 2
    stamped = ok(server.docker("logs", "-t", "--tail", "1", "talker")) or server.docker("logs", "-t", "talker").stderr
    stamp, _, _ = (stamped.splitlines() or [""])[-1].partition(" ")
    assert stamp.startswith(time.strftime("%Y-", time.gmtime())) and stamp.endswith("Z"), stamped
    since = time.time()
    time.sleep(0.6)
    recent = ok(server.docker("logs", "--since", f"{since:.3f}", "talker")).split()
    assert recent and "out0" not in recent
    follower = subprocess.Popen(
        [docker_cli(), "-H", server.url, "logs", "-f", "--tail", "0", "talker"], stdout=subprocess.PIPE, text=True,
        env={"DOCKER_CONFIG": str(server.store_root.parent / "docker-config"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    time.sleep(1.0)
    ok(server.docker("stop", "-t", "1", "talker"))  # the follow ends with the container
    followed = follower.communicate(timeout=20)[0].split()
    assert followed and all(w.startswith("out") for w in followed)
    assert follower.returncode == 0


def test_stats_no_stream_and_streaming_fill_the_columns(server: Server, busybox_image: str) -> None:
    run_d(server.store_root, "--name", "busy", "--memory", "64m", busybox_image, "sh", "-c", "while :; do :; done")
    fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}"
    row = ok(server.docker("stats", "--no-stream", "--format", fmt, "busy")).strip().split("|")
    assert row[0] == "busy"
    assert float(row[1].rstrip("%")) > 10, row  # a busy loop: the CPU column is computed, not 0.00%
    assert row[2].endswith("/ 64MiB") and row[3] == "1", row
    proc = subprocess.Popen(
        [docker_cli(), "-H", server.url, "stats", "--format", fmt, "busy"], stdout=subprocess.PIPE, text=True,
        env={"DOCKER_CONFIG": str(server.store_root.parent / "docker-config"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    time.sleep(3.5)
    proc.terminate()
    out = proc.communicate(timeout=10)[0]
    rows = [line for line in out.replace("\x1b[2J\x1b[H", "\n").splitlines() if line.startswith("busy|")]
    assert len(rows) >= 2, out  # one refresh a second
    assert float(rows[-1].split("|")[1].rstrip("%")) > 10, rows  # the first has no earlier reading to compare


def test_lifecycle_actions(server: Server, busybox_image: str) -> None:
    root = server.store_root
    cid = run_d(root, "--name", "life", busybox_image, "sleep", "100")
    ok(server.docker("pause", "life"))
    assert status(root, cid) == "paused"
    ok(server.docker("unpause", "life"))
    assert status(root, cid) == "running"
    ok(server.docker("stop", "-t", "1", "life"))
    assert status(root, cid) == "exited"
    ok(server.docker("start", "life"))
    assert status(root, cid) == "running"
    pid = json.loads(ok(server.docker("inspect", "life")))[0]["State"]["Pid"]
    ok(server.docker("restart", "-t", "1", "life"))
    doc = json.loads(ok(server.docker("inspect", "life")))[0]
    assert doc["State"]["Running"] and doc["State"]["Pid"] != pid
    ok(server.docker("kill", "-s", "KILL", "life"))
    wait_for(lambda: status(root, cid) == "exited", what="the kill to be recorded")
    ok(server.docker("start", "life"))
    ok(server.docker("rm", "-f", "life"))
    assert minirun(root, "ps", "-aq").stdout.strip() == ""
    missing = server.docker("stop", "life")
    assert missing.returncode != 0 and "No such container: life" in missing.stderr


def test_images_and_image_inspect(server: Server, busybox_image: str) -> None:
    rows = ok(server.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}")).splitlines()
    assert len(rows) == 1 and rows[0].startswith("busybox-test:latest ")
    doc = json.loads(ok(server.docker("image", "inspect", busybox_image)))[0]
    assert doc["RepoTags"] == ["busybox-test:latest"] and doc["Os"] == "linux" and len(doc["RootFS"]["Layers"]) == 1
    missing = server.docker("image", "inspect", "nothere:1")
    assert missing.returncode != 0 and "nothere" in missing.stderr


def test_events_stream_with_filters(server: Server, busybox_image: str) -> None:
    root = server.store_root
    watcher = subprocess.Popen(
        [docker_cli(), "-H", server.url, "events", "--filter", "type=container", "--filter", "event=start",
         "--filter", "event=die", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE, text=True,
        env={"DOCKER_CONFIG": str(root.parent / "docker-config"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        time.sleep(1.0)
        run_d(root, "--name", "ev1", busybox_image, "sleep", "60")
        assert minirun(root, "stop", "-t", "0", "ev1").returncode == 0  # another CLI: the store's log feeds events
        time.sleep(1.0)
    finally:
        watcher.terminate()
    lines = watcher.communicate(timeout=10)[0].splitlines()
    assert lines == ["start ev1", "die ev1"], lines
    since = ok(server.docker("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                             "container=ev1", "--format", "{{.Action}}")).split()  # fmt: skip
    assert since[:2] == ["create", "start"] and "stop" in since


def test_system_df(server: Server, busybox_image: str) -> None:
    run_d(server.store_root, "--name", "dfc", busybox_image, "sleep", "60")
    rows = {line.split()[0]: line.split() for line in ok(server.docker("system", "df")).splitlines()[1:]}
    assert rows["Images"][1:3] == ["1", "1"] and rows["Containers"][1:3] == ["1", "1"]


def test_run_detached_makes_the_same_container_as_minirun(server: Server, busybox_image: str) -> None:
    root = server.store_root
    flags = ["-e", "A=1", "-w", "/tmp", "-l", "k=v", "--memory", "32m", "--restart", "on-failure:2",
             "--cap-drop", "NET_RAW", "--read-only", "--tmpfs", "/run"]  # fmt: skip
    ours = ok(server.docker("run", "-d", "--name", "viadocker", *flags, busybox_image, "sleep", "60")).strip()
    theirs = run_d(root, "--name", "viaminirun", *flags, busybox_image, "sleep", "60")
    a, b = (json.loads(minirun(root, "inspect", ref).stdout)[0] for ref in (ours, theirs))
    assert a["State"]["Running"] and b["State"]["Running"]
    for key in ("Path", "Args", "Image"):
        assert a[key] == b[key], key
    assert {**a["Config"], "Hostname": ""} == {**b["Config"], "Hostname": ""}
    assert a["HostConfig"] == b["HostConfig"]
    record = lambda cid: json.loads((root / "containers" / cid / "container.json").read_text())["Options"]  # noqa: E731
    assert record(ours) == record(theirs)


def test_attached_run_and_exec_answer_501(server: Server, busybox_image: str) -> None:
    attached = server.docker("run", "--rm", busybox_image, "echo", "hi")
    assert attached.returncode != 0 and "not implemented by minirun serve" in attached.stderr, attached.stderr
    assert minirun(server.store_root, "ps", "-aq").stdout.strip() == ""  # nothing was created
    run_d(server.store_root, "--name", "ex", busybox_image, "sleep", "60")
    result = server.docker("exec", "ex", "true")
    assert result.returncode != 0 and "not implemented by minirun serve: exec" in result.stderr, result.stderr
    other = server.docker("network", "ls")  # outside the subset: a message, not a bare "Not Found"
    assert other.returncode != 0 and "GET /networks is not part of the API subset" in other.stderr, other.stderr

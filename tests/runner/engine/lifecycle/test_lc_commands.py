"""Each lifecycle command through the real CLI, with Docker's exit codes and messages for wrong states."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import inspect, log_text, ps_json, run_d, state_file, status, wait_until
from kits.runkit import assert_nothing_left, minirun, spawn

pytestmark = pytest.mark.root

IMAGE = "busybox-test"
LOOP = "trap 'exit 3' TERM; while :; do sleep 0.05; done"  # a shell that ends at once on SIGTERM, with 3


def ok(root: Path, *args: str) -> str:
    result = minirun(root, *args)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


def fails(root: Path, code: int, *args: str) -> str:
    """Run a command expected to fail with `code`; its one-line error (stderr)."""
    result = minirun(root, *args)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("minirun: error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


# -- create, start, run -d -------------------------------------------------------------------------
def test_create_then_start_then_start_again(store_root: Path, busybox_image: str) -> None:
    cid = ok(store_root, "create", "--name", "web1", IMAGE, "sh", "-c", LOOP).strip()
    assert len(cid) == 64
    doc = inspect(store_root, "web1")
    assert doc["Id"] == cid and doc["Name"] == "/web1" and doc["State"]["Status"] == "created"
    assert doc["State"]["Pid"] == 0 and not doc["State"]["Running"]
    assert ok(store_root, "ps", "-q") == ""  # not running: only ps -a lists it
    assert ok(store_root, "ps", "-aq").split() == [cid[:12]]

    assert ok(store_root, "start", "web1").strip() == "web1"  # Docker echoes what it was given
    doc = inspect(store_root, cid[:5])  # any unique ID prefix names it
    assert doc["State"]["Status"] == "running" and doc["State"]["Running"] and doc["State"]["Pid"] > 0
    assert ok(store_root, "ps", "-q").split() == [cid[:12]]
    # start on a running container: nothing happens, exit 0 (as docker)
    pid = doc["State"]["Pid"]
    assert ok(store_root, "start", "web1").strip() == "web1"
    assert inspect(store_root, "web1")["State"]["Pid"] == pid

    ok(store_root, "stop", "web1")
    assert inspect(store_root, "web1")["State"]["ExitCode"] == 3
    ok(store_root, "rm", "web1")
    assert_nothing_left(store_root)


def test_start_attach_prints_output_and_returns_the_exit_code(store_root: Path, busybox_image: str) -> None:
    ok(store_root, "create", "--name", "once", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 5")
    result = minirun(store_root, "start", "-a", "once")
    assert result.returncode == 5, result.stderr
    assert result.stdout == "out\n" and "err\n" in result.stderr
    assert status(store_root, "once") == "exited"
    # start -a -i feeds stdin to the container
    ok(store_root, "create", "-i", "--name", "cat1", IMAGE, "cat")
    result = minirun(store_root, "start", "-a", "-i", "cat1", input=b"hello\n")
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr
    ok(store_root, "rm", "once", "cat1")
    assert_nothing_left(store_root)


def test_run_d_returns_at_once_and_the_container_outlives_the_cli(store_root: Path, busybox_image: str) -> None:
    started = time.monotonic()
    cid = run_d(store_root, "--name", "bg", IMAGE, "sleep", "60")
    assert time.monotonic() - started < 5
    state = state_file(store_root, cid)
    assert state["Status"] == "running" and state["MonitorPid"] not in (0, state["Pid"])
    assert ps_json(store_root)[0]["State"] == "running"
    ok(store_root, "rm", "-f", "bg")
    assert_nothing_left(store_root)


def test_run_d_with_rm_removes_the_container_when_it_exits(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--rm", IMAGE, "sh", "-c", "sleep 0.2")
    wait_until(lambda: not (store_root / "containers" / cid).exists(), what="--rm removal")
    assert ok(store_root, "ps", "-aq") == ""
    assert_nothing_left(store_root)


def test_run_d_error_is_reported_by_the_cli(store_root: Path, busybox_image: str) -> None:
    err = fails(store_root, 127, "run", "-d", IMAGE, "no-such-binary")
    assert "executable file not found" in err
    err = fails(store_root, 125, "run", "-d", "no-such-image", "true")
    assert "no-such-image" in err


# -- stop, kill ------------------------------------------------------------------------------------
def test_stop_sends_sigterm_then_sigkill_after_the_timeout(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "polite", IMAGE, "sh", "-c", LOOP)
    started = time.monotonic()
    assert ok(store_root, "stop", "polite").strip() == "polite"
    assert time.monotonic() - started < 5  # the trap ended it; no 10 s wait
    assert inspect(store_root, "polite")["State"]["ExitCode"] == 3

    run_d(store_root, "--name", "deaf", IMAGE, "sleep", "60")  # PID 1 without a handler: SIGTERM is ignored
    started = time.monotonic()
    ok(store_root, "stop", "-t", "1", "deaf")
    took = time.monotonic() - started
    assert 0.9 < took < 8, took
    doc = inspect(store_root, "deaf")
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 137
    assert doc["State"]["FinishedAt"] > doc["State"]["StartedAt"]

    # stop on a stopped container: exit 0, nothing changes
    assert ok(store_root, "stop", "deaf").strip() == "deaf"
    assert inspect(store_root, "deaf")["State"]["ExitCode"] == 137
    ok(store_root, "rm", "polite", "deaf")
    assert_nothing_left(store_root)


def test_stop_signal_flag_is_used(store_root: Path, busybox_image: str) -> None:
    script = "trap 'exit 9' USR1; while :; do sleep 0.05; done"
    run_d(store_root, "--name", "usr", "--stop-signal", "SIGUSR1", IMAGE, "sh", "-c", script)
    ok(store_root, "stop", "-t", "5", "usr")
    assert inspect(store_root, "usr")["State"]["ExitCode"] == 9
    ok(store_root, "rm", "usr")


def test_kill_with_a_signal_and_on_a_stopped_container(store_root: Path, busybox_image: str) -> None:
    script = "trap 'echo got-usr1' USR1; while :; do sleep 0.05; done"
    run_d(store_root, "--name", "sig", IMAGE, "sh", "-c", script)
    assert ok(store_root, "kill", "-s", "USR1", "sig").strip() == "sig"
    wait_until(lambda: "got-usr1" in log_text(store_root, "sig"), what="the trap's output")
    assert status(store_root, "sig") == "running"
    ok(store_root, "kill", "sig")  # SIGKILL by default
    wait_until(lambda: status(store_root, "sig") == "exited", what="the kill")
    assert inspect(store_root, "sig")["State"]["ExitCode"] == 137

    err = fails(store_root, 1, "kill", "sig")
    assert "container sig is not running" in err
    err = fails(store_root, 1, "kill", "-s", "NOPE", "sig")
    assert "NOPE" in err
    ok(store_root, "rm", "sig")
    assert_nothing_left(store_root)


# -- restart ---------------------------------------------------------------------------------------
def test_stop_and_start_keep_the_filesystem_and_the_saved_config(store_root: Path, busybox_image: str) -> None:
    script = "echo run >> /data.txt; echo $FOO; while :; do sleep 0.05; done"
    cid = run_d(store_root, "--name", "keeper", "-e", "FOO=saved", IMAGE, "sh", "-c", script)
    wait_until(lambda: "saved" in log_text(store_root, "keeper"), what="first run")
    ok(store_root, "stop", "-t", "0", "keeper")
    ok(store_root, "start", "keeper")
    wait_until(lambda: ok(store_root, "exec", "keeper", "cat", "/data.txt") == "run\nrun\n", what="second run")
    assert log_text(store_root, "keeper").count("saved") == 2  # same env: the saved config, not new flags
    ok(store_root, "restart", "-t", "0", "keeper")
    wait_until(lambda: ok(store_root, "exec", "keeper", "cat", "/data.txt") == "run\nrun\nrun\n", what="third run")
    doc = inspect(store_root, "keeper")
    assert doc["Id"] == cid and doc["State"]["Status"] == "running"
    assert doc["Config"]["Env"].count("FOO=saved") == 1
    ok(store_root, "rm", "-f", "keeper")
    assert_nothing_left(store_root)


def test_restart_of_a_created_and_of_an_exited_container(store_root: Path, busybox_image: str) -> None:
    ok(store_root, "create", "--name", "fresh", IMAGE, "sleep", "60")
    ok(store_root, "restart", "fresh")
    assert status(store_root, "fresh") == "running"
    ok(store_root, "rm", "-f", "fresh")
    fails(store_root, 1, "restart", "ghost")


# -- restart policies ------------------------------------------------------------------------------
def test_restart_on_failure_with_a_maximum(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo try; exit 4")
    wait_until(lambda: inspect(store_root, "flaky")["RestartCount"] == 2, what="two restarts", timeout=20)
    wait_until(lambda: status(store_root, "flaky") == "exited", what="the last exit", timeout=20)
    time.sleep(0.5)
    doc = inspect(store_root, "flaky")
    assert doc["RestartCount"] == 2 and doc["State"]["ExitCode"] == 4
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert log_text(store_root, "flaky").count("try") == 3
    # on-failure does not restart a success
    run_d(store_root, "--name", "fine", "--restart", "on-failure", IMAGE, "true")
    wait_until(lambda: status(store_root, "fine") == "exited", what="exit")
    time.sleep(0.5)
    assert inspect(store_root, "fine")["RestartCount"] == 0
    ok(store_root, "rm", "flaky", "fine")
    assert_nothing_left(store_root)


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_always_and_stop_does_not_restart(store_root: Path, busybox_image: str, policy: str) -> None:
    run_d(store_root, "--name", "phoenix", "--restart", policy, IMAGE, "sh", "-c", "echo up; sleep 0.1")
    wait_until(lambda: inspect(store_root, "phoenix")["RestartCount"] >= 2, what="restarts", timeout=20)
    ok(store_root, "stop", "-t", "1", "phoenix")
    doc = inspect(store_root, "phoenix")
    assert doc["State"]["Status"] == "exited", doc["State"]
    count = doc["RestartCount"]
    time.sleep(1.0)  # longer than the backoff so far: a restart would have happened
    doc = inspect(store_root, "phoenix")
    assert doc["State"]["Status"] == "exited" and doc["RestartCount"] == count
    # a new start brings it back (with its policy)
    ok(store_root, "start", "phoenix")
    assert status(store_root, "phoenix") in ("running", "restarting", "exited")
    ok(store_root, "rm", "-f", "phoenix")
    assert_nothing_left(store_root)


def test_kill_does_not_restart_an_always_container(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "killme", "--restart", "always", IMAGE, "sleep", "60")
    ok(store_root, "kill", "killme")
    wait_until(lambda: status(store_root, "killme") == "exited", what="the kill")
    time.sleep(0.5)
    assert status(store_root, "killme") == "exited"
    ok(store_root, "rm", "killme")
    assert_nothing_left(store_root)


def test_invalid_restart_policy(store_root: Path, busybox_image: str) -> None:
    err = fails(store_root, 125, "run", "-d", "--restart", "sometimes", IMAGE, "true")
    assert "sometimes" in err
    assert ok(store_root, "ps", "-aq") == ""


# -- rm, prune -------------------------------------------------------------------------------------
def test_rm_states(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--name", "busy", IMAGE, "sleep", "60")
    err = fails(store_root, 1, "rm", "busy")
    assert "cannot remove a running container" in err and "rm -f" in err
    assert status(store_root, "busy") == "running"
    assert ok(store_root, "rm", "-f", "busy").strip() == "busy"
    assert not (store_root / "containers" / cid).exists()
    err = fails(store_root, 1, "rm", "busy")
    assert "No such container: busy" in err
    # several at once: the good ones go, the exit code says one failed
    ok(store_root, "create", "--name", "c1", IMAGE, "true")
    result = minirun(store_root, "rm", "c1", "ghost")
    assert result.returncode == 1 and "No such container: ghost" in result.stderr
    assert ok(store_root, "ps", "-aq") == ""
    assert_nothing_left(store_root)


def test_container_prune_removes_only_stopped_ones(store_root: Path, busybox_image: str) -> None:
    running = run_d(store_root, "--name", "stays", IMAGE, "sleep", "60")
    created = ok(store_root, "create", IMAGE, "true").strip()
    exited = ok(store_root, "create", IMAGE, "true").strip()
    ok(store_root, "start", "-a", exited)
    out = ok(store_root, "container", "prune", "-f")
    assert created in out and exited in out and running not in out
    assert ok(store_root, "ps", "-aq", "--no-trunc").split() == [running]
    ok(store_root, "rm", "-f", "stays")
    assert_nothing_left(store_root)


# -- ps, inspect -----------------------------------------------------------------------------------
def test_ps_flags_and_filters(store_root: Path, busybox_image: str) -> None:
    up = run_d(store_root, "--name", "alpha", IMAGE, "sleep", "60")
    down = ok(store_root, "create", "--name", "beta", IMAGE, "sh", "-c", "exit 2").strip()
    assert minirun(store_root, "start", "-a", "beta").returncode == 2  # start -a returns the exit code

    assert ok(store_root, "ps", "-q").split() == [up[:12]]
    assert sorted(ok(store_root, "ps", "-aq").split()) == sorted([up[:12], down[:12]])
    assert sorted(ok(store_root, "ps", "-aq", "--no-trunc").split()) == sorted([up, down])
    table = ok(store_root, "ps", "-a").splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert any("Exited (2)" in line and line.endswith("beta") for line in table[1:])
    assert any(re.search(r"Up ", line) and line.endswith("alpha") for line in table[1:])

    rows = {r["Names"]: r for r in ps_json(store_root)}
    assert rows["alpha"]["State"] == "running" and rows["alpha"]["ID"] == up
    assert rows["beta"]["State"] == "exited" and rows["beta"]["Status"].startswith("Exited (2)")

    def names(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(r["Names"] for r in ps_json(store_root, *args))

    assert names("status=exited") == ["beta"]
    assert names("status=running") == ["alpha"]
    assert names("name=alp") == ["alpha"]
    assert names(f"id={down[:6]}") == ["beta"]
    assert names("status=exited", "status=running") == ["alpha", "beta"]
    err = fails(store_root, 1, "ps", "--filter", "status=sleepy")
    assert "sleepy" in err
    ok(store_root, "rm", "-f", "alpha", "beta")
    assert_nothing_left(store_root)


def test_inspect_document(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--name", "doc", "-e", "A=1", "-w", "/tmp", IMAGE, "sleep", "60")
    doc = inspect(store_root, "doc")
    assert doc["Id"] == cid and doc["Name"] == "/doc"
    assert doc["Path"] == "sleep" and doc["Args"] == ["60"]
    state = doc["State"]
    for key in ("Status", "Running", "Paused", "Pid", "ExitCode", "OOMKilled", "StartedAt", "FinishedAt", "Error"):
        assert key in state, key
    assert state["Running"] and not state["Paused"] and not state["OOMKilled"] and state["Pid"] > 0
    assert "A=1" in doc["Config"]["Env"] and doc["Config"]["WorkingDir"] == "/tmp"
    assert doc["Config"]["Image"].startswith(IMAGE)
    assert "HostConfig" in doc and "Mounts" in doc and "NetworkSettings" in doc and doc["Image"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", doc["Created"])
    # several at once, and one missing: the found ones printed, exit 1
    result = minirun(store_root, "inspect", "doc", "ghost")
    assert result.returncode == 1 and "No such container: ghost" in result.stderr
    assert [d["Id"] for d in json.loads(result.stdout)] == [cid]
    ok(store_root, "rm", "-f", "doc")
    assert_nothing_left(store_root)


@pytest.mark.parametrize(
    "args",
    [
        ("start", "ghost"),
        ("stop", "ghost"),
        ("kill", "ghost"),
        ("restart", "ghost"),
        ("rm", "ghost"),
        ("inspect", "ghost"),
        ("logs", "ghost"),
        ("wait", "ghost"),
        ("top", "ghost"),
        ("rename", "ghost", "other"),
    ],
)
def test_unknown_name_is_no_such_container(store_root: Path, busybox_image: str, args: tuple[str, ...]) -> None:
    err = fails(store_root, 1, *args)
    assert "No such container: ghost" in err


def test_ambiguous_prefix_is_refused(store_root: Path, busybox_image: str) -> None:
    ids = [ok(store_root, "create", IMAGE, "true").strip() for _ in range(17)]
    firsts = [cid[0] for cid in ids]
    prefix = next(c for c in firsts if firsts.count(c) > 1)  # 17 IDs, 16 hex digits: two share one
    err = fails(store_root, 1, "inspect", prefix)
    assert "multiple" in err.lower() or "ambiguous" in err.lower(), err
    ok(store_root, "container", "prune", "-f")
    assert_nothing_left(store_root)


# -- names -----------------------------------------------------------------------------------------
def test_name_conflicts_on_create_and_rename(store_root: Path, busybox_image: str) -> None:
    first = ok(store_root, "create", "--name", "taken", IMAGE, "true").strip()
    err = fails(store_root, 125, "create", "--name", "taken", IMAGE, "true")
    assert 'name "/taken" is already in use' in err and first in err
    err = fails(store_root, 125, "run", "-d", "--name", "taken", IMAGE, "true")
    assert "already in use" in err
    assert ok(store_root, "ps", "-aq", "--no-trunc").split() == [first]  # nothing half-made is left

    ok(store_root, "create", "--name", "other", IMAGE, "true")
    err = fails(store_root, 1, "rename", "other", "taken")
    assert "already in use" in err
    ok(store_root, "rename", "other", "renamed")
    assert inspect(store_root, "renamed")["Name"] == "/renamed"
    fails(store_root, 1, "inspect", "other")
    ok(store_root, "create", "--name", "other", IMAGE, "true")  # the old name is free again
    err = fails(store_root, 125, "create", "--name", "x", IMAGE, "true")
    assert "invalid container name" in err
    ok(store_root, "rm", "taken", "renamed", "other")
    assert_nothing_left(store_root)


def test_rename_a_running_container(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "before", IMAGE, "sleep", "60")
    ok(store_root, "rename", "before", "after")
    assert ok(store_root, "exec", "after", "echo", "hi") == "hi\n"
    ok(store_root, "stop", "-t", "0", "after")
    assert status(store_root, "after") == "exited"
    ok(store_root, "rm", "after")
    assert_nothing_left(store_root)


# -- logs ------------------------------------------------------------------------------------------
def test_logs_streams_tail_and_timestamps(store_root: Path, busybox_image: str) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; done; echo err1 >&2"
    run_d(store_root, "--name", "talk", IMAGE, "sh", "-c", script)
    wait_until(lambda: status(store_root, "talk") == "exited", what="exit")
    result = minirun(store_root, "logs", "talk")
    assert result.stdout == "out1\nout2\nout3\nout4\nout5\n"  # stdout and stderr kept apart
    assert result.stderr == "err1\n"
    tail = minirun(store_root, "logs", "--tail", "2", "talk")  # the last 2 lines of the log, either stream
    assert (tail.stdout, tail.stderr) == ("out5\n", "err1\n")
    assert ok(store_root, "logs", "--tail", "3", "talk") == "out4\nout5\n"
    stamped = ok(store_root, "logs", "-t", "talk").splitlines()
    assert len(stamped) == 5
    for line in stamped:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z out\d", line), line
    ok(store_root, "rm", "talk")


def test_logs_follow_ends_when_the_container_exits(store_root: Path, busybox_image: str) -> None:
    script = "echo first; sleep 0.5; echo second; sleep 0.3"
    run_d(store_root, "--name", "follow", IMAGE, "sh", "-c", script)
    proc = spawn(store_root, "logs", "-f", "follow")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == "first\nsecond\n"
    ok(store_root, "rm", "follow")
    assert_nothing_left(store_root)


# -- exec ------------------------------------------------------------------------------------------
def test_exec_env_user_workdir_and_exit_codes(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "box", "-e", "BASE=1", IMAGE, "sleep", "60")
    out = ok(
        store_root,
        "exec",
        "-e",
        "X=2",
        "-u",
        "1000:1001",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "echo $BASE $X $(id -u) $(id -g) $PWD",
    )
    assert out == "1 2 1000 1001 /tmp\n"
    # the container's namespaces: same hostname, its PID 1 visible, the sleep as PID 1
    assert ok(store_root, "exec", "box", "cat", "/proc/1/cmdline").split("\0")[0] == "sleep"
    assert ok(store_root, "exec", "box", "hostname").strip() == inspect(store_root, "box")["Config"]["Hostname"]

    assert minirun(store_root, "exec", "box", "sh", "-c", "exit 7").returncode == 7
    err = fails(store_root, 127, "exec", "box", "no-such-command")
    assert "executable file not found" in err
    err = fails(store_root, 126, "exec", "box", "/etc")
    assert "permission denied" in err
    ok(store_root, "stop", "-t", "0", "box")
    err = fails(store_root, 125, "exec", "box", "true")
    assert "is not running" in err
    ok(store_root, "rm", "box")
    assert_nothing_left(store_root)


def test_exec_detached(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "host1", IMAGE, "sleep", "60")
    started = time.monotonic()
    assert ok(store_root, "exec", "-d", "host1", "sh", "-c", "sleep 1; echo done > /marker") == ""
    assert time.monotonic() - started < 1  # returned before the command ended
    wait_until(lambda: minirun(store_root, "exec", "host1", "cat", "/marker").stdout == "done\n", what="exec -d")
    err = fails(store_root, 127, "exec", "-d", "host1", "no-such-command")
    assert "executable file not found" in err
    ok(store_root, "exec", "-d", "host1", "sleep", "60")  # still running when the container is removed
    ok(store_root, "rm", "-f", "host1")
    assert_nothing_left(store_root)


def test_exec_it_with_a_pty(store_root: Path, busybox_image: str) -> None:
    import pexpect
    from kits.runkit import MINIRUN

    run_d(store_root, "--name", "term", IMAGE, "sleep", "60")
    child = pexpect.spawn(MINIRUN, ["--root", str(store_root), "exec", "-it", "term", "sh"], timeout=20)
    try:
        child.expect(r"[#$] ")
        child.sendline("tty; echo rows=$(stty size)")
        child.expect(r"/dev/pts/\d+")
        child.expect(r"rows=\d+ \d+")
        child.sendline("exit 6")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 6
    ok(store_root, "rm", "-f", "term")
    assert_nothing_left(store_root)


# -- wait, top -------------------------------------------------------------------------------------
def test_wait_prints_the_exit_code(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "w1", IMAGE, "sh", "-c", "sleep 0.3; exit 12")
    assert ok(store_root, "wait", "w1").strip() == "12"
    assert ok(store_root, "wait", "w1").strip() == "12"  # already exited: at once
    # wait on a created container waits for it to run and end
    ok(store_root, "create", "--name", "w2", IMAGE, "sh", "-c", "exit 3")
    waiter = spawn(store_root, "wait", "w2")
    time.sleep(0.3)
    assert waiter.poll() is None
    ok(store_root, "start", "w2")
    out, err = waiter.communicate(timeout=20)
    assert (waiter.returncode, out.strip()) == (0, "3"), err
    ok(store_root, "rm", "w1", "w2")
    assert_nothing_left(store_root)


def test_top_lists_the_container_processes(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "topper", IMAGE, "sh", "-c", "sleep 61 & sleep 62")
    wait_until(lambda: "sleep 61" in ok(store_root, "top", "topper"), what="both sleeps")
    lines = ok(store_root, "top", "topper").splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    cmds = [line for line in lines[1:] if "sleep 6" in line]
    assert len(cmds) == 2
    ok(store_root, "exec", "-d", "topper", "sleep", "63")  # listed; its stand-in outside the container is not
    wait_until(lambda: "sleep 63" in ok(store_root, "top", "topper"), what="the exec'd sleep")
    assert "minirun-exec" not in ok(store_root, "top", "topper")
    ok(store_root, "stop", "-t", "0", "topper")
    err = fails(store_root, 1, "top", "topper")
    assert "is not running" in err
    ok(store_root, "rm", "topper")
    assert_nothing_left(store_root)


def test_wrong_states_of_a_created_container(store_root: Path, busybox_image: str) -> None:
    ok(store_root, "create", "--name", "idle", IMAGE, "true")
    assert ok(store_root, "stop", "idle").strip() == "idle"  # not running: nothing to do, exit 0
    assert status(store_root, "idle") == "created"
    assert "container idle is not running" in fails(store_root, 1, "kill", "idle")
    assert "is not running" in fails(store_root, 1, "top", "idle")
    assert "is not running" in fails(store_root, 125, "exec", "idle", "true")
    assert ok(store_root, "rm", "-v", "idle").strip() == "idle"  # -v accepted (no anonymous volumes here)
    assert_nothing_left(store_root)


def test_restart_of_a_running_container_with_a_timeout(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--name", "again", IMAGE, "sleep", "60")  # ignores SIGTERM: -t decides
    first = state_file(store_root, cid)["Pid"]
    started = time.monotonic()
    assert ok(store_root, "restart", "-t", "1", "again").strip() == "again"
    assert 0.9 < time.monotonic() - started < 8
    doc = inspect(store_root, "again")
    assert doc["State"]["Status"] == "running" and doc["State"]["Pid"] not in (0, first)
    assert doc["RestartCount"] == 0  # a manual restart is not the policy's (as Docker)
    ok(store_root, "rm", "-f", "again")
    assert_nothing_left(store_root)


def test_rm_f_and_stop_between_two_runs_of_a_restart_policy(store_root: Path, busybox_image: str) -> None:
    """While the monitor waits out the backoff (state "restarting"), stop and rm -f end it for good."""
    for name, command in (("stopme", ("stop", "stopme")), ("rmme", ("rm", "-f", "rmme"))):
        run_d(store_root, "--name", name, "--restart", "always", IMAGE, "sh", "-c", "exit 1")
        wait_until(lambda name=name: inspect(store_root, name)["RestartCount"] >= 3, what="restarts", timeout=20)
        wait_until(lambda name=name: status(store_root, name) == "restarting", what="the backoff", timeout=20)
        ok(store_root, *command)
        time.sleep(2.0)  # longer than the pending backoff (0.8 s): a start would have happened
        if name == "stopme":
            assert status(store_root, name) == "exited"
            ok(store_root, "rm", name)
        assert minirun(store_root, "inspect", name).returncode == 1
    assert_nothing_left(store_root)

"""Crashes: the monitor or the CLI SIGKILLed at any point; afterwards `ps -a` tells the truth, `rm -f` removes
whatever is left (mounts, cgroups, processes) and nothing leaks (the autouse `no_leaks` check).

"In the middle" is reached without hooks: the CLI is killed after a spread of delays, so the kill lands in
different steps (create, prepare, start, waiting, cleanup) from one delay to the next.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from kits.lifecyclekit import alive, assert_ps_truthful, inspect, run_d, state_file, status, wait_until
from kits.runkit import assert_nothing_left, container_ids, minirun, spawn, wait_for_running

pytestmark = pytest.mark.root

IMAGE = "busybox-test"
DELAYS = [0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45]  # seconds after the CLI started


def sigkill_after(proc, delay: float) -> None:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def rm_everything(store_root: Path) -> None:
    """`rm -f` every container the store holds (by ID: a crash may have left one without a name)."""
    for cid in container_ids(store_root):
        result = minirun(store_root, "rm", "-f", cid)
        assert result.returncode == 0, result.stderr


def test_sigkill_the_monitor_of_a_running_container(store_root: Path, busybox_image: str) -> None:
    cid = run_d(store_root, "--name", "orphan", IMAGE, "sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done")
    state = state_file(store_root, cid)
    os.kill(state["MonitorPid"], signal.SIGKILL)
    wait_until(lambda: not alive(state["MonitorPid"]), what="the monitor's death")
    # the container itself still runs, and ps says so
    assert alive(state["Pid"])
    assert status(store_root, "orphan") == "running"
    assert_ps_truthful(store_root)
    # stop still works: nobody records the code, so it is unknown (255), with an error saying why
    assert minirun(store_root, "stop", "orphan").returncode == 0
    doc = inspect(store_root, "orphan")
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 255
    assert "unknown" in doc["State"]["Error"]
    assert_ps_truthful(store_root)
    assert minirun(store_root, "rm", "-f", "orphan").returncode == 0
    assert_nothing_left(store_root)


def _detached_then_both_killed(store_root: Path, name: str) -> str:
    """A detached container whose monitor and init were SIGKILLed (nobody saw the exit); its ID."""
    cid = run_d(store_root, "--name", name, IMAGE, "sleep", "60")
    state = state_file(store_root, cid)
    os.kill(state["MonitorPid"], signal.SIGKILL)
    os.kill(state["Pid"], signal.SIGKILL)
    wait_until(lambda: not alive(state["Pid"]), what="the container's death")
    return cid


def test_monitor_killed_then_the_container_ends(store_root: Path, busybox_image: str) -> None:
    _detached_then_both_killed(store_root, "lost")
    rows = assert_ps_truthful(store_root)
    assert rows[0]["State"] == "exited" and rows[0]["Status"].startswith("Exited (255)")
    # what the dead monitor would have cleaned is still there until a command settles it
    assert minirun(store_root, "rm", "-f", "lost").returncode == 0
    assert_nothing_left(store_root)


def test_after_a_reboot_a_running_record_is_exited(store_root: Path, busybox_image: str) -> None:
    """A state from another boot (its PIDs mean nothing now) reads as exited; rm cleans the rest."""
    cid = _detached_then_both_killed(store_root, "reboot")
    path = store_root / "containers" / cid / "state.json"
    forged = json.loads(path.read_text())
    forged["BootId"] = "00000000-0000-0000-0000-000000000000"
    path.write_text(json.dumps(forged))
    assert status(store_root, "reboot") == "exited"
    assert inspect(store_root, "reboot")["State"]["ExitCode"] == 255
    assert minirun(store_root, "rm", "reboot").returncode == 0  # not running: plain rm suffices
    assert_nothing_left(store_root)


@pytest.mark.parametrize("delay", DELAYS)
def test_sigkill_the_cli_during_a_foreground_run(store_root: Path, busybox_image: str, delay: float) -> None:
    proc = spawn(store_root, "run", "--name", "fg", IMAGE, "sleep", "60")
    sigkill_after(proc, delay)
    time.sleep(0.1)  # PDEATHSIG reaches the container
    rows = assert_ps_truthful(store_root)
    assert all(row["State"] != "running" for row in rows), rows
    rm_everything(store_root)
    assert_nothing_left(store_root)


def test_sigkill_the_cli_of_a_running_foreground_container(store_root: Path, busybox_image: str) -> None:
    proc = spawn(store_root, "run", "--name", "fg2", IMAGE, "sleep", "60")
    state = wait_for_running(store_root)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    wait_until(lambda: not alive(state["Pid"]), what="the container to follow its CLI")
    (row,) = assert_ps_truthful(store_root)
    assert row["Status"].startswith("Exited (255)")
    rm_everything(store_root)
    assert_nothing_left(store_root)


@pytest.mark.parametrize("delay", DELAYS)
def test_sigkill_the_cli_during_run_d(store_root: Path, busybox_image: str, delay: float) -> None:
    proc = spawn(store_root, "run", "-d", "--name", "bg", IMAGE, "sleep", "60")
    sigkill_after(proc, delay)
    time.sleep(0.3)  # the monitor, if forked already, carries on without the CLI
    assert_ps_truthful(store_root)
    rm_everything(store_root)
    assert_nothing_left(store_root)


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.6])
def test_sigkill_the_cli_during_stop(store_root: Path, busybox_image: str, delay: float) -> None:
    run_d(store_root, "--name", "deaf", IMAGE, "sleep", "60")  # ignores SIGTERM: stop waits, then SIGKILLs
    proc = spawn(store_root, "stop", "-t", "1", "deaf")
    sigkill_after(proc, delay)
    rows = assert_ps_truthful(store_root)
    assert rows[0]["State"] == "running"  # the stop never got to SIGKILL
    # a second stop finishes the job, and no restart happens
    assert minirun(store_root, "stop", "-t", "0", "deaf").returncode == 0
    assert status(store_root, "deaf") == "exited"
    assert_ps_truthful(store_root)
    rm_everything(store_root)
    assert_nothing_left(store_root)


def test_sigkill_the_cli_after_stop_sent_sigkill(store_root: Path, busybox_image: str) -> None:
    run_d(store_root, "--name", "gone", "--restart", "always", IMAGE, "sleep", "60")
    proc = spawn(store_root, "stop", "-t", "0", "gone")
    sigkill_after(proc, 0.2)
    wait_until(lambda: status(store_root, "gone") == "exited", what="the exit")
    time.sleep(0.5)
    assert status(store_root, "gone") == "exited"  # the stop was recorded: the policy does not restart
    rm_everything(store_root)
    assert_nothing_left(store_root)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.3])
def test_sigkill_the_cli_during_rm_f(store_root: Path, busybox_image: str, delay: float) -> None:
    run_d(store_root, "--name", "doomed", IMAGE, "sleep", "60")
    proc = spawn(store_root, "rm", "-f", "doomed")
    sigkill_after(proc, delay)
    assert_ps_truthful(store_root)
    rm_everything(store_root)
    assert minirun(store_root, "ps", "-aq").stdout == ""
    assert_nothing_left(store_root)


def test_sigkill_the_cli_during_rm_of_a_stopped_container(store_root: Path, busybox_image: str) -> None:
    for delay in (0.0, 0.05, 0.1, 0.2):
        cid = minirun(store_root, "create", IMAGE, "true").stdout.strip()
        assert minirun(store_root, "start", "-a", cid).returncode == 0
        proc = spawn(store_root, "rm", cid)
        sigkill_after(proc, delay)
        assert_ps_truthful(store_root)
        rm_everything(store_root)
    assert_nothing_left(store_root)


def test_monitor_killed_during_a_restart_backoff(store_root: Path, busybox_image: str) -> None:
    """ "restarting" is only true while the monitor that will start the container again lives."""
    cid = run_d(store_root, "--name", "limbo", "--restart", "always", IMAGE, "sh", "-c", "exit 1")
    wait_until(lambda: inspect(store_root, "limbo")["RestartCount"] >= 3, what="restarts", timeout=20)
    wait_until(lambda: status(store_root, "limbo") == "restarting", what="the backoff", timeout=20)
    os.kill(state_file(store_root, cid)["MonitorPid"], signal.SIGKILL)
    wait_until(lambda: status(store_root, "limbo") == "exited", what="the truth")
    assert_ps_truthful(store_root)
    time.sleep(1.5)  # nobody starts it again
    assert status(store_root, "limbo") == "exited"
    assert minirun(store_root, "rm", "limbo").returncode == 0
    assert_nothing_left(store_root)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2])
def test_sigkill_the_cli_during_start(store_root: Path, busybox_image: str, delay: float) -> None:
    assert minirun(store_root, "create", "--name", "later", IMAGE, "sleep", "60").returncode == 0
    proc = spawn(store_root, "start", "later")
    sigkill_after(proc, delay)
    time.sleep(0.3)
    assert_ps_truthful(store_root)
    assert minirun(store_root, "start", "later").returncode == 0  # whatever happened, a start now works
    assert status(store_root, "later") == "running"
    rm_everything(store_root)
    assert_nothing_left(store_root)


def test_a_monitor_slow_to_note_the_exit_is_waited_for_not_guessed(store_root: Path, busybox_image: str) -> None:
    """The init is dead (a zombie) but its monitor, stopped, has not reaped it nor written its note: wait,
    inspect and ps must not make up the unknown code (255); once the monitor goes on, wait prints 137."""
    cid = run_d(store_root, "--name", "slow", IMAGE, "sleep", "60")
    state = state_file(store_root, cid)
    os.kill(state["MonitorPid"], signal.SIGSTOP)
    try:
        os.kill(state["Pid"], signal.SIGKILL)
        wait_until(lambda: not alive(state["Pid"]), what="the init's death")
        waiter = spawn(store_root, "wait", "slow")
        time.sleep(0.6)  # three times the patience `wait` and `inspect` give a monitor
        assert waiter.poll() is None, waiter.communicate()  # still waiting: no code is known yet
        doc = inspect(store_root, "slow")
        assert doc["State"]["Status"] == "running" and doc["State"]["ExitCode"] != 255
    finally:
        os.kill(state["MonitorPid"], signal.SIGCONT)
    out, err = waiter.communicate(timeout=30)
    assert (waiter.returncode, out.strip()) == (0, "137"), err
    assert inspect(store_root, "slow")["State"]["ExitCode"] == 137
    assert minirun(store_root, "rm", "slow").returncode == 0
    assert_nothing_left(store_root)

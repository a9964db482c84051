"""The container's process: exit codes, engine errors, signals, stdin, a terminal session, --init."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kits.runkit import (
    MINIRUN,
    assert_nothing_left,
    minirun,
    no_leaks,  # noqa: F401 - autouse fixture: nothing may outlive a test
    spawn,
    wait_for_running,
)

pytestmark = pytest.mark.root


@pytest.mark.parametrize(
    ("command", "code"),
    [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42), (["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], 137)],
)
def test_exit_codes(store_root: Path, busybox_image: str, command: list[str], code: int) -> None:
    assert minirun(store_root, "run", "--rm", busybox_image, *command).returncode == code
    assert_nothing_left(store_root)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["busybox-test", "no-such-command"], 127, 'exec: "no-such-command": executable file not found in $PATH'),
        (["busybox-test", "/bin/nope"], 127, 'exec: "/bin/nope": no such file or directory'),
        (["busybox-test", "/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
        (["busybox-test", "/etc"], 126, 'exec: "/etc": permission denied'),
        (["no-such-image"], 125, "image 'no-such-image' not found in the store"),
        (["--bogus-flag", "busybox-test"], 125, "unrecognized arguments: --bogus-flag"),
        (["-v", "relative:/x", "busybox-test", "true"], 125, "named volumes are not supported"),
        (["--ulimit", "nofile=abc", "busybox-test", "true"], 125, "invalid ulimit"),
        (["--cap-add", "CAP_WISHES", "busybox-test", "true"], 125, "unknown capability"),
        (["-u", "ghost", "busybox-test", "true"], 125, "unable to find user ghost"),
        (["-w", "relative", "busybox-test", "true"], 125, "needs to be an absolute path"),
        (["--network", "nosuch", "busybox-test", "true"], 125, "no such network: nosuch"),
        (["--security-opt", "apparmor=x", "busybox-test", "true"], 125, "unsupported --security-opt"),
        (["--name", "bad/name", "busybox-test", "true"], 125, "invalid container name"),
        (["--entrypoint", "", "busybox-test"], 125, "no command specified"),
    ],
)
def test_errors_are_one_line_with_docker_codes(
    store_root: Path, busybox_image: str, args: list[str], code: int, message: str
) -> None:
    result = minirun(store_root, "run", "--rm", *args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minirun: error: ") and message in lines[0], result.stderr
    assert_nothing_left(store_root)


def test_failed_start_keeps_the_record_without_rm(store_root: Path, busybox_image: str) -> None:
    import json

    result = minirun(store_root, "run", "--name", "failing", busybox_image, "missing")
    assert result.returncode == 127
    (cid,) = [n for n in os.listdir(store_root / "containers") if len(n) == 64]
    state = json.loads((store_root / "containers" / cid / "state.json").read_text())
    assert state["Status"] == "created" and state["ExitCode"] == 127 and "missing" in state["Error"]
    assert_nothing_left(store_root, containers=False)


def test_short_form(store_root: Path, busybox_image: str) -> None:
    result = minirun(store_root, "--rm", busybox_image, "echo", "short", "form")
    assert result.returncode == 0 and result.stdout == "short form\n"


def test_stdin_is_piped_with_i_and_closed_without(store_root: Path, busybox_image: str) -> None:
    piped = minirun(store_root, "run", "--rm", "-i", busybox_image, "sh", "-c", "tr a-z A-Z", input=b"hello\n")
    assert piped.stdout == "HELLO\n"
    closed = minirun(store_root, "run", "--rm", busybox_image, "cat", input=b"not for you\n")
    assert closed.returncode == 0 and closed.stdout == ""


def test_big_output_and_stderr(store_root: Path, busybox_image: str) -> None:
    result = minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", "seq 1 200000; echo oops >&2")
    assert result.stdout.splitlines()[-1] == "200000" and result.stderr == "oops\n"


def test_env_flags(store_root: Path, busybox_image: str, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\nOVERRIDDEN=file\n")
    result = minirun(
        store_root,
        "run",
        "--rm",
        "--env-file",
        str(env_file),
        "-e",
        "OVERRIDDEN=flag",
        "-e",
        "PASSED",
        "--hostname",
        "box",
        busybox_image,
        "env",
        env={"PASSED": "through"},
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["FROM_FILE"] == "1" and env["OVERRIDDEN"] == "flag" and env["PASSED"] == "through"
    assert env["HOSTNAME"] == "box" and env["HOME"] == "/root" and env["PATH"].startswith("/usr/local/sbin")


def test_sigterm_is_forwarded(store_root: Path, busybox_image: str) -> None:
    proc = spawn(
        store_root,
        "run",
        "--rm",
        busybox_image,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 42 and "got TERM" in out
    assert_nothing_left(store_root)


def _exit_status_after(store_root: Path, proc, deliver: Callable[[dict], object], pause: float = 0.0) -> int:
    """The exit status of `minirun run` (`proc`) once the container runs and `deliver(its state)` has
    signalled it (after `pause`, for an init to exec its command); nothing may be left behind."""
    try:
        state = wait_for_running(store_root)
        time.sleep(pause)
        deliver(state)
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert_nothing_left(store_root)
    return proc.returncode


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_death_through_init(store_root: Path, busybox_image: str, signum: int, code: int) -> None:
    """With --init (tini) the command is not PID 1, so a default-action signal kills it: 128+N."""
    proc = spawn(store_root, "run", "--rm", "--init", busybox_image, "sleep", "60")
    assert _exit_status_after(store_root, proc, lambda _: proc.send_signal(signum), pause=0.2) == code


def test_sigkill_of_pid_1_gives_137(store_root: Path, busybox_image: str) -> None:
    proc = spawn(store_root, "run", "--rm", busybox_image, "sleep", "60")
    assert _exit_status_after(store_root, proc, lambda state: os.kill(state["Pid"], signal.SIGKILL)) == 137


def test_killing_minirun_takes_the_container_down(store_root: Path, busybox_image: str) -> None:
    proc = spawn(store_root, "run", busybox_image, "sleep", "60")
    state = wait_for_running(store_root)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{state['Pid']}") and time.monotonic() < deadline:
        time.sleep(0.05)
    from minicache.process import is_alive

    assert not is_alive(state["Pid"], state["PidStartTime"])
    # minirun died before cleaning up: `ps -a` tells the truth (exit code unknown) and `rm` removes the rest.
    listed = minirun(store_root, "ps", "-a", "--format", "json")
    assert '"State":"exited"' in listed.stdout and "Exited (255)" in listed.stdout, listed.stdout
    (cid,) = [n for n in os.listdir(store_root / "containers") if len(n) == 64]
    assert minirun(store_root, "rm", cid).returncode == 0
    assert_nothing_left(store_root)


@pytest.mark.parametrize("init", ["tini", "builtin"])
def test_init_reaps_and_forwards(store_root: Path, busybox_image: str, init: str) -> None:
    env = {"MINICONTAINER_INIT": "builtin"} if init == "builtin" else {}
    # An orphaned zombie: `sh -c 'sleep 0 &'` exits before its child; the init must reap it.
    script = (
        "sh -c 'sleep 0.1 &' ; sleep 0.5; echo pid=$$; ps -o pid,stat,comm | grep -c ' Z ';"
        " tr '\\0' ' ' < /proc/1/cmdline; echo; exit 5"
    )
    result = minirun(store_root, "run", "--rm", "--init", busybox_image, "sh", "-c", script, env=env)
    assert result.returncode == 5, result.stderr
    lines = result.stdout.split()
    assert lines[0] != "pid=1"  # the init is PID 1, the command its child
    assert lines[1] == "0"  # no zombie left
    init_cmdline = result.stdout.splitlines()[2]
    assert "python" not in init_cmdline and "minirun" not in init_cmdline  # no host path shows inside
    proc = spawn(store_root, "run", "--rm", "--init", busybox_image, "sleep", "60", env=env)
    assert _exit_status_after(store_root, proc, lambda _: proc.send_signal(signal.SIGTERM), pause=0.3) == 143


def test_tty_session(store_root: Path, busybox_image: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        MINIRUN,
        ["--root", str(store_root), "run", "--rm", "-it", busybox_image, "sh"],
        encoding="utf-8",
        timeout=20,
        dimensions=(24, 80),
    )
    try:
        child.expect_exact("/ # ")
        child.sendline("tty")
        child.expect(r"/dev/pts/\d+")
        assert child.after == "/dev/pts/0"
        child.expect_exact("/ # ")
        child.sendline("stty size")
        child.expect_exact("24 80")
        child.setwinsize(40, 100)  # SIGWINCH to minirun, which resizes the container's terminal
        time.sleep(0.2)
        child.sendline("stty size")
        child.expect_exact("40 100")
        # END marks the end of the list: a pattern ending in a repeat could match before all of it arrived
        child.sendline("echo $TERM; for f in /proc/$$/fd/*; do readlink $f; done | sort -u | tr '\\n' ' '; echo END")
        child.expect(r"xterm\s+((?:/dev/\S+ )+)END")
        assert child.match.group(1).split() == ["/dev/pts/0", "/dev/tty"]  # the shell's own fds only
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3
    assert_nothing_left(store_root)


def test_terminal_is_automatic_at_a_terminal(store_root: Path, busybox_image: str) -> None:
    """`minirun IMAGE sh` at a terminal gets an interactive tty without -it, as a user typing it expects."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        MINIRUN, ["--root", str(store_root), "--rm", busybox_image, "sh"], encoding="utf-8", timeout=20
    )
    try:
        child.expect_exact("/ # ")
        child.sendline("tty; exit")
        child.expect("/dev/pts/0")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_tty_without_terminal_input_is_refused(store_root: Path, busybox_image: str) -> None:
    result = minirun(store_root, "run", "--rm", "-it", busybox_image, "true", input=b"")
    assert result.returncode == 125 and "not a TTY" in result.stderr


def test_python_is_not_needed_in_the_image(store_root: Path, busybox_image: str) -> None:
    assert sys.executable  # the runtime runs from the host; the busybox image has no Python at all
    assert minirun(store_root, "run", "--rm", busybox_image, "sh", "-c", "test ! -e /usr/bin/python3").returncode == 0


def test_terminal_is_restored_after_the_session(store_root: Path, busybox_image: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    # the session's settings (cgroup parent, no default bridge) must reach minirun through the shell
    ours = {k: v for k, v in os.environ.items() if k.startswith("MINICONTAINER_")}
    env = {**ours, "PS1": "host$ ", "PATH": "/usr/bin:/bin"}
    shell = pexpect.spawn("/bin/sh", encoding="utf-8", timeout=20, env=env)
    try:
        shell.expect_exact("host$ ")
        shell.sendline("stty -a | grep -o -e '-\\?icanon' -e '-\\?echo ' | tr '\\n' ' '")
        shell.expect(r"(-?icanon) (-?echo) ")
        before = shell.match.group(0)
        shell.expect_exact("host$ ")
        shell.sendline(f"{MINIRUN} --root {store_root} run --rm -it {busybox_image} sh")
        shell.expect_exact("/ # ")  # raw mode on the host terminal while the container runs
        shell.sendline("exit 4")
        shell.expect_exact("host$ ")
        shell.sendline("echo status=$?; stty -a | grep -o -e '-\\?icanon' -e '-\\?echo ' | tr '\\n' ' '")
        shell.expect(r"status=4\s+(-?icanon) (-?echo) ")
        assert shell.match.group(0).split()[1:] == before.split() == ["icanon", "echo"]
    finally:
        shell.close(force=True)

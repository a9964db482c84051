"""`minirun-runtime` driven as engines drive it: a subprocess per verb, a state root per test, busybox bundles."""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kits.runkit import no_leaks  # noqa: F401 - autouse fixture: nothing may outlive a test
from kits.runtimekit import RUNTIME, edit, make_bundle, runtime, state, state_root, wait_status  # noqa: F401 (state_root: the root fixture)


@pytest.fixture
def cid() -> str:
    return f"rt-{secrets.token_hex(6)}"


# -- the command line, without containers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["bogus"], ["--nope", "list"], ["kill"], ["run", "x", "--frobnicate"]],
)
def test_usage_errors_are_one_line_and_exit_2(root: Path, argv: list[str]) -> None:
    result = runtime(root, *argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("minirun-runtime: error: "), result.stderr


def test_systemd_cgroup_is_refused_in_the_json_log(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    result = runtime(root, "--log", str(log), "--log-format", "json", "--systemd-cgroup", "list")
    assert result.returncode != 0 and "--systemd-cgroup is not supported" in result.stderr
    entry = json.loads(log.read_text())
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"] and entry["time"].endswith("Z")


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", ".hidden", "-flag", "x" * 1025])
def test_hostile_ids_are_refused(tmp_path: Path, root: Path, bad: str) -> None:
    log = tmp_path / "log.txt"
    result = runtime(root, "--log", str(log), "create", "--bundle", str(tmp_path), "--", bad)
    assert result.returncode != 0 and "invalid container ID" in result.stderr
    assert "level=error" in log.read_text()
    assert not (tmp_path / "escape").exists() and not root.exists()


def test_state_of_a_missing_container(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    result = runtime(root, "--debug", "--log", str(log), "--log-format", "json", "state", "nothere")
    assert result.returncode == 1 and "does not exist" in result.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["debug", "error"] and "nothere" in entries[1]["msg"]


def test_features_and_spec(tmp_path: Path, root: Path) -> None:
    features = json.loads(runtime(root, "features", check=True).stdout)
    assert features["ociVersionMin"].startswith("1.") and "poststop" in features["hooks"]
    assert "SCMP_CMP_EQ" in features["linux"]["seccomp"]["operators"]
    assert "mount" in features["linux"]["namespaces"] and "CAP_KILL" in features["linux"]["capabilities"]
    runtime(root, "spec", "--bundle", str(tmp_path), check=True)
    assert json.loads((tmp_path / "config.json").read_text())["ociVersion"].startswith("1.")


LIGHT_VERBS = [["state", "nothere"], ["start", "nothere"], ["kill", "nothere"], ["delete", "nothere"]]
HEAVY = {"pathlib", "shutil", "subprocess", "socket", "ctypes", "minirun.cgroups", "minirun.runtime.launch"}


@pytest.mark.parametrize("argv", LIGHT_VERBS)
def test_a_light_verb_imports_only_what_it_uses(root: Path, argv: list[str]) -> None:
    """Each verb is a process an engine starts: what it imports is its start-up. The modules already loaded
    before the runtime (the editable install's import hook loads some) do not count."""
    code = (
        "import json, sys\nimport minicache\nbefore = set(sys.modules)\nfrom minirun.runtime import cli\n"
        f"cli.main(['--root', {str(root)!r}, *{argv!r}])\nprint(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "minirun.runtime.state" in loaded and not loaded & HEAVY, sorted(loaded & HEAVY)


def test_signal_names_and_numbers() -> None:
    from minirun.runtime.cli import UsageError, parse_signal

    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal("sigterm") == parse_signal("15") == 15
    assert parse_signal("KILL") == 9 and parse_signal("SIGRTMIN+1") > 32
    for bad in ("NOPE", "0", "999", "-1"):
        with pytest.raises(UsageError):
            parse_signal(bad)


# -- containers ----------------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.update(frobnicate=1), "frobnicate"),
        (lambda s: s["linux"].update(intelRdt={"closID": "x"}), "linux.intelRdt"),
        (lambda s: s["linux"].update(personality={"domain": "LINUX32"}), "linux.personality"),
        (lambda s: s["process"].update(scheduler={"policy": "SCHED_FIFO"}), "process.scheduler"),
        (lambda s: s.update(windows={}), "windows"),
        (
            lambda s: s["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}),
            "listenerPath",
        ),
        (lambda s: s.update(hooks={"poststart": [{"path": "true"}]}), "hooks.poststart"),
        (lambda s: s.update(hooks={"preStart": []}), "preStart"),
    ],
)
def test_unknown_or_unsupported_fields_are_refused(
    tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str, change, named: str
) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["true"])
    edit(bundle, change)
    result = runtime(root, "create", "--bundle", str(bundle), cid)
    assert result.returncode == 1 and named in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert runtime(root, "state", cid).returncode == 1  # nothing recorded


@pytest.mark.root
def test_create_waits_start_releases_delete_cleans(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo started; exec sleep 60"])
    with out.open("w") as sink:
        runtime(
            root, "create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), cid, stdout=sink, check=True
        )
    created = state(root, cid)
    assert created["status"] == "created" and created["id"] == cid and created["bundle"] == str(bundle)
    assert set(created) >= {"ociVersion", "id", "status", "pid", "bundle", "rootfs", "created", "owner"}
    pid = created["pid"]
    assert int((tmp_path / "pid").read_text()) == pid
    assert out.read_text() == ""  # the init waits before execve
    folder = root / cid
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "state.json").stat().st_mode) == 0o600
    cache = root / ".seccomp"  # the compiled filter, kept for the next create (not a container: no ID has a dot)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and len(list(cache.glob("*.bpf"))) == 1
    with open(f"/proc/{pid}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{parent}/cmdline", "rb") as f:  # the runtime is gone: the init was handed to a reaper
        assert b"minirun-runtime" not in f.read()

    runtime(root, "start", cid, check=True)
    assert wait_status(root, cid, "running")["pid"] == pid
    deadline = time.monotonic() + 5
    while out.read_text() != "started\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text() == "started\n"
    assert runtime(root, "start", cid).returncode == 1  # only a created container starts
    assert json.loads(runtime(root, "ps", "--format", "json", cid, check=True).stdout) == [pid]
    listed = json.loads(runtime(root, "list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "running")]

    refused = runtime(root, "delete", cid)
    assert refused.returncode == 1 and "running" in refused.stderr
    runtime(root, "kill", cid, "KILL", check=True)
    assert wait_status(root, cid, "stopped")["pid"] == 0
    assert runtime(root, "kill", cid, "TERM").returncode == 1  # nothing left to signal
    runtime(root, "delete", cid, check=True)
    assert not folder.exists() and runtime(root, "state", cid).returncode == 1


@pytest.mark.root
def test_run_exit_codes(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo hi; exit 7"])
    result = runtime(root, "run", "--bundle", str(bundle), cid)
    assert (result.returncode, result.stdout) == (7, "hi\n")
    assert not (root / cid).exists()  # a foreground run deletes what it made
    edit(bundle, lambda s: s["process"].update(args=["no-such-command"]))
    missing = runtime(root, "run", "--bundle", str(bundle), cid)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert runtime(root, "create", "--bundle", str(bundle), cid).returncode == 1  # create fails, not start
    assert not (root / cid).exists()


@pytest.mark.root
def test_detached_run_pause_resume_update_force_delete(
    tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str
) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sleep", "60"])
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    assert state(root, cid)["status"] == "running"
    runtime(root, "pause", cid, check=True)
    assert state(root, cid)["status"] == "paused"
    assert runtime(root, "pause", cid).returncode == 1
    runtime(root, "resume", cid, check=True)
    assert state(root, cid)["status"] == "running"
    runtime(root, "update", "--resources", "-", cid, input='{"pids": {"limit": 33}}', check=True)
    from minirun import cgroups

    group = cgroups.open(cid, cgroups.default_parent())
    limits = [Path(p) / "pids.max" for p in group.paths.values()]
    assert any(f.is_file() and f.read_text() == "33\n" for f in limits)
    runtime(root, "delete", "--force", cid, check=True)
    assert not (root / cid).exists() and not group.exists()
    assert runtime(root, "delete", "--force", cid).returncode == 0  # already gone: nothing to do


@pytest.mark.root
def test_console_socket_gets_the_pty_master(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "tty; echo done"], tty=True)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        proc = subprocess.Popen(
            [RUNTIME, "--root", str(root), "create", "--bundle", str(bundle), "--console-socket", path, cid]
        )
        conn, _ = server.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        assert proc.wait(timeout=30) == 0
    assert len(fds) == 1
    master = fds[0]
    try:
        runtime(root, "start", cid, check=True)
        seen = b""
        deadline = time.monotonic() + 10
        while b"done" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(master, 1024)
            except OSError:
                break
        assert b"/dev/pts/" in seen or b"/dev/console" in seen, seen
        assert b"done" in seen
    finally:
        os.close(master)
        wait_status(root, cid, "stopped")
        runtime(root, "delete", "--force", cid, check=True)


@pytest.mark.root
def test_hooks_get_the_state_and_a_failing_prestart_stops_create(
    tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str
) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["true"])
    record = tmp_path / "hooks.log"

    def hook(kind: str) -> dict:
        return {"path": "/bin/sh", "args": ["sh", "-c", f'echo {kind} "$(cat)" >> {record}']}

    kinds = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    inside = {"path": "/bin/sh", "args": ["sh", "-c", 'echo startContainer "$(cat)" as $(id -u)'], "timeout": 5}
    edit(bundle, lambda s: s.update(hooks={**{k: [hook(k)] for k in kinds}, "startContainer": [inside]}))
    ran = runtime(root, "run", "--bundle", str(bundle), cid, check=True)
    assert ran.stdout.startswith("startContainer {") and ran.stdout.endswith(" as 0\n")
    assert json.loads(ran.stdout.split(" ", 1)[1].rsplit(" as ", 1)[0])["id"] == cid
    lines = record.read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == list(kinds)
    for line in lines:
        assert json.loads(line.split(" ", 1)[1])["id"] == cid

    edit(bundle, lambda s: s.update(hooks={"prestart": [{"path": "/bin/false"}]}))
    failed = runtime(root, "create", "--bundle", str(bundle), cid)
    assert failed.returncode == 1 and "prestart hook /bin/false exited with status 1" in failed.stderr
    assert not (root / cid).exists()
    edit(
        bundle,
        lambda s: s.update(hooks={"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "9"], "timeout": 1}]}),
    )
    slow = runtime(root, "create", "--bundle", str(bundle), cid)
    assert slow.returncode == 1 and "timed out" in slow.stderr


@pytest.mark.root
def test_a_state_root_others_may_write_is_refused(tmp_path: Path, busybox_rootfs: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["true"])
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = runtime(shared, "create", "--bundle", str(bundle), cid)
    assert result.returncode == 1 and "state root" in result.stderr
    assert list(shared.iterdir()) == []


@pytest.mark.root
def test_exec_joins_the_running_container(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sleep", "60"])
    assert runtime(root, "exec", cid, "true").returncode == 125  # no such container yet
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    try:
        script = 'echo $(id -u) $(pwd) $FOO $(cat /proc/1/cmdline | tr "\\0" " "); exit 5'
        ran = runtime(root, "exec", "--cwd", "/tmp", "-e", "FOO=bar", "-u", "1000:1000", cid, "sh", "-c", script)
        assert (ran.returncode, ran.stdout) == (5, "1000 /tmp bar sleep 60\n"), ran.stderr
        missing = runtime(root, "exec", cid, "no-such-command")
        assert missing.returncode == 127 and "executable file not found" in missing.stderr
        process = {"args": ["sh", "-c", "echo from-file"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0}}
        (tmp_path / "process.json").write_text(json.dumps(process))
        assert runtime(root, "exec", "--process", str(tmp_path / "process.json"), cid).stdout == "from-file\n"
        (tmp_path / "process.json").write_text(json.dumps({**process, "scheduler": {"policy": "SCHED_FIFO"}}))
        refused = runtime(root, "exec", "--process", str(tmp_path / "process.json"), cid)
        assert refused.returncode == 125 and "process.scheduler is not supported" in refused.stderr
        pid_file = tmp_path / "exec.pid"
        runtime(root, "exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "60", check=True)
        assert int(pid_file.read_text()) in json.loads(runtime(root, "ps", "--format", "json", cid).stdout)
    finally:
        runtime(root, "delete", "--force", cid, check=True)
    assert runtime(root, "exec", cid, "true").returncode == 125


@pytest.mark.root
def test_kill_all_and_preserved_fds(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "cat <&3; sleep 60 & sleep 60 & wait"])
    extra = tmp_path / "extra"
    extra.write_text("passed on\n")
    out = tmp_path / "out"
    with out.open("w") as sink:
        argv = [RUNTIME, "--root", str(root), "run", "-d", "--preserve-fds", "1", "--bundle", str(bundle), cid]
        shell = 'exec 3<"$0"; exec "$@"'  # the runtime gets the file as its fd 3, as conmon passes sockets
        code = subprocess.run(
            ["sh", "-c", shell, str(extra), *argv], stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, timeout=60
        ).returncode
    assert code == 0
    try:
        deadline = time.monotonic() + 10
        while len(json.loads(runtime(root, "ps", "--format", "json", cid).stdout)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(json.loads(runtime(root, "ps", "--format", "json", cid).stdout)) == 3
        assert out.read_text() == "passed on\n"
        runtime(root, "kill", "--all", cid, "9", check=True)
        assert wait_status(root, cid, "stopped")["status"] == "stopped"
    finally:
        runtime(root, "delete", "--force", cid, check=True)


def test_a_reused_pid_is_never_signalled(root: Path, cid: str) -> None:
    """A recorded init that is gone, its PID now someone else's (here: a sleep of ours): stopped, left alone."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        (root / cid).mkdir(parents=True, mode=0o700)
        root.chmod(0o700)
        record = {"id": cid, "pid": other.pid, "starttime": 1, "bundle": "/nonexistent", "cgroup": None}
        (root / cid / "state.json").write_text(json.dumps(record))
        assert state(root, cid)["status"] == "stopped" and state(root, cid)["pid"] == 0
        assert runtime(root, "kill", cid, "KILL").returncode == 1
        runtime(root, "delete", cid, check=True)
        assert other.poll() is None and not (root / cid).exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.root
def test_foreground_terminal_is_relayed(tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str) -> None:
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "tty; exit 3"], tty=True)
    ran = runtime(root, "run", "--bundle", str(bundle), cid)
    assert ran.returncode == 3 and "/dev/" in ran.stdout, ran.stderr
    edit(bundle, lambda s: s["process"].update(args=["sleep", "60"], terminal=False))
    runtime(root, "run", "-d", "--bundle", str(bundle), cid, check=True)
    try:
        execd = runtime(root, "exec", "-t", cid, "sh", "-c", "tty; exit 4")
        assert execd.returncode == 4 and "/dev/pts/" in execd.stdout, execd.stderr
        assert runtime(root, "exec", "-t", "-d", cid, "true").returncode == 2  # detached needs a console socket
    finally:
        runtime(root, "delete", "--force", cid, check=True)


@pytest.mark.root
def test_an_engine_spec_that_denies_every_device_still_gets_the_defaults(
    tmp_path: Path, busybox_rootfs: Path, root: Path, cid: str
) -> None:
    """Podman's spec denies all devices and lists only its extras: the runtime's own nodes stay usable."""
    bundle = make_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo x > /dev/null && head -c 1 /dev/zero | wc -c"])
    edit(bundle, lambda s: s["linux"]["resources"].update(devices=[{"allow": False, "access": "rwm"}]))
    ran = runtime(root, "run", "--bundle", str(bundle), cid)
    assert (ran.returncode, ran.stdout.strip()) == (0, "1"), ran.stderr

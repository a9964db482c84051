"""Podman drives the runtime binary (`podman --runtime PATH`), through conmon, as its users run it.

Each case runs with Debian's runc (the reference, proving the harness) and with `minirun-runtime`. One
podman store per module (its first start is slow): busybox and Debian images imported once.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kits import imagekit, peerkit

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not shutil.which("podman") or not shutil.which("conmon"), reason="needs podman and conmon"),
]

BUSYBOX = "localhost/mc-busybox:latest"
DEBIAN = "localhost/mc-debian:latest"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[peerkit.Podman]:
    work = tmp_path_factory.mktemp("podman")
    with peerkit.podman_store(work) as podman:
        (work / "busybox.tar").write_bytes(imagekit.tar_of_dir(busybox_rootfs))
        (work / "debian.tar").write_bytes(imagekit.debian_rootfs_tar())
        podman("import", str(work / "busybox.tar"), BUSYBOX)
        podman("import", str(work / "debian.tar"), DEBIAN)
        yield podman


@pytest.fixture(params=peerkit.RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return peerkit.select(request)


def name() -> str:
    return f"mc-{secrets.token_hex(4)}"


@pytest.mark.parametrize(
    ("image", "script", "expected"),
    [
        (BUSYBOX, "echo hello from busybox; exit 3", "hello from busybox"),
        (DEBIAN, 'echo "hello from Debian $(cat /etc/debian_version)"; exit 3', "hello from Debian"),
    ],
    ids=["busybox", "debian"],
)
def test_run_rm_output_and_exit_code(podman, runtime: str, image: str, script: str, expected: str) -> None:
    cid = name()
    result = podman(
        *podman.run_args("--rm", "--name", cid, "--network", "none", image, "sh", "-c", script),
        runtime=runtime,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith(expected), result.stdout
    assert cid not in podman("ps", "--all", "--format", "{{.Names}}").stdout.split()


def test_detached_exec_logs_stop_rm(podman, runtime: str) -> None:
    cid = name()
    script = "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done"
    podman(*podman.run_args("-d", "--name", cid, "--network", "none", BUSYBOX, "sh", "-c", script), runtime=runtime)
    assert podman("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "running"

    exec_ = podman("exec", cid, "sh", "-c", "echo in $(hostname); exit 5", check=False)
    hostname = podman("inspect", "--format", "{{.Config.Hostname}}", cid).stdout.strip()
    assert (exec_.returncode, exec_.stdout.strip()) == (5, f"in {hostname}")

    assert "started" in podman("logs", cid).stdout
    podman("stop", "--time", "10", cid)
    state = json.loads(podman("inspect", "--format", "{{json .State}}", cid).stdout)
    assert (state["Status"], state["ExitCode"]) == ("exited", 7)
    assert podman("logs", cid).stdout.split() == ["started", "got", "TERM"]

    podman("rm", cid)
    assert cid not in podman("ps", "--all", "--format", "{{.Names}}").stdout.split()


@pytest.mark.parametrize("image", [BUSYBOX, DEBIAN], ids=["busybox", "debian"])
def test_run_interactive_tty_through_console_socket(podman, runtime: str, image: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    cmd = [*podman.base, "--runtime", runtime, *podman.run_args("-it", "--rm", "--network", "none", image)]
    cmd += ["sh", "-c", 'tty; read -r line; echo "got:$line"; exit 4']
    child = pexpect.spawn(cmd[0], cmd[1:], timeout=30, encoding="utf-8")
    try:
        child.expect(r"/dev/pts/\d+")
        child.sendline("hello tty")
        child.expect("got:hello tty")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 4, child.before


@pytest.mark.parametrize("image", [BUSYBOX, DEBIAN], ids=["busybox", "debian"])
def test_memory_and_pids_limits(podman, runtime: str, image: str) -> None:
    cid = name()
    run = podman.run_args("-d", "--name", cid, "--network", "none", "--memory", "48m", "--memory-swap", "48m")
    podman(*run, "--pids-limit", "20", image, "sleep", "60", runtime=runtime)
    try:
        pid = podman("inspect", "--format", "{{.State.Pid}}", cid).stdout.strip()
        controllers = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        assert podman.cgroup_parent in controllers["memory"], controllers
        assert (
            Path("/sys/fs/cgroup/memory") / controllers["memory"].lstrip("/") / "memory.limit_in_bytes"
        ).read_text().strip() == str(48 << 20)
        assert (Path("/sys/fs/cgroup/pids") / controllers["pids"].lstrip("/") / "pids.max").read_text().strip() == "20"
        forks = podman("exec", cid, "sh", "-c", "for i in $(seq 30); do sleep 5 & done 2>&1; wait", check=False)
        assert "fork" in (forks.stdout + forks.stderr).lower(), forks  # pids.max holds inside, too
    finally:
        podman("rm", "--force", "--time", "0", cid)
    small = podman.run_args("--rm", "--network", "none", "--memory", "32m", "--memory-swap", "32m")
    oom = podman(*small, image, "dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1", runtime=runtime, check=False)
    assert oom.returncode == 137, oom


@pytest.fixture(scope="module")
def network(podman: peerkit.Podman) -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """An internal bridge network of the module's own (own bridge name, free subnet, no DNS daemon, no NAT)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    used = [ipaddress.ip_network(word, strict=False) for word in routes.split() if "/" in word]
    for _ in range(50):
        subnet = ipaddress.ip_network(f"10.{secrets.choice(range(230, 250))}.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(net) for net in used):
            break
    net = f"mcnet{secrets.token_hex(3)}"
    config = {
        "name": net, "id": secrets.token_hex(32), "driver": "bridge",
        "network_interface": f"mcpb{secrets.token_hex(3)}",
        "created": "2026-01-01T00:00:00Z", "subnets": [{"subnet": str(subnet), "gateway": str(subnet[1])}],
        "ipv6_enabled": False, "internal": True, "dns_enabled": False, "ipam_options": {"driver": "host-local"},
    }  # fmt: skip
    (podman.work / "networks" / f"{net}.json").write_text(json.dumps(config))
    yield net, subnet
    podman("network", "rm", "--force", net, check=False)


@pytest.mark.parametrize("image", [BUSYBOX, DEBIAN], ids=["busybox", "debian"])
def test_podman_network_between_two_containers(podman, network, runtime: str, image: str) -> None:
    net, subnet = network
    server, ip = name(), str(subnet[secrets.randbelow(200) + 10])
    podman(*podman.run_args("-d", "--name", server, "--network", net, "--ip", ip, BUSYBOX, "sh", "-c",
                            "echo hello over netavark | nc -l -p 8080"), runtime=runtime)  # fmt: skip
    try:
        client = 'grep -o "inet [0-9./]*" /proc/net/fib_trie >/dev/null; cat /sys/class/net/eth0/operstate; '
        if image == BUSYBOX:
            client += f"for i in $(seq 50); do nc {ip} 8080 && exit 0; sleep 0.1; done; exit 1"
        else:  # bash's /dev/tcp: no netcat in the Debian image
            client += f"for i in $(seq 50); do cat </dev/tcp/{ip}/8080 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
            client = f"exec bash -c '{client}'"
        result = podman(
            *podman.run_args("--rm", "--network", net, image, "sh", "-c", client), runtime=runtime, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["up", "hello over netavark"], result.stdout
        deadline = time.monotonic() + 10
        while podman("inspect", "--format", "{{.State.Status}}", server).stdout.strip() == "running":
            assert time.monotonic() < deadline, "the server did not exit after its one reply"
            time.sleep(0.1)
    finally:
        podman("rm", "--force", "--time", "0", server)


def test_conmon_and_podman_call_the_runtime_verbs(podman, runtime: str, tmp_path: Path) -> None:
    """The verbs podman and conmon call, as they do for runc, each answered with success."""
    calls = tmp_path / "calls"
    wrapper = tmp_path / "runtime"
    wrapper.write_text(f'#!/bin/sh\n{runtime} "$@"\nrc=$?\necho "$rc $*" >> {calls}\nexit $rc\n')
    wrapper.chmod(0o755)
    podman(*podman.run_args("--rm", "--network", "none", BUSYBOX, "true"), runtime=str(wrapper))
    cid = name()
    podman(*podman.run_args("-d", "--name", cid, "--network", "none", BUSYBOX, "sleep", "60"), runtime=str(wrapper))
    podman("exec", cid, "true")
    podman("stop", "--time", "0", cid)
    podman("rm", cid)
    seen = [line.split()[:2] for line in calls.read_text().splitlines()]
    verbs = [verb for _, verb in seen]
    assert verbs == ["create", "start", "delete", "create", "start", "exec", "kill", "delete"], seen
    assert all(rc == "0" for rc, _ in seen), seen

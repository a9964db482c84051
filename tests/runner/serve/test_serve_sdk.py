"""The Docker SDK for Python (`docker` on PyPI) against `minirun serve`, on real containers."""

from __future__ import annotations

import threading
import time

import pytest
from kits.lifecyclekit import run_d, status
from kits.runkit import minirun
from kits.servekit import Server, wait_for

docker = pytest.importorskip("docker")
pytestmark = pytest.mark.root


@pytest.fixture
def client(server: Server):
    sdk = docker.DockerClient(base_url=server.url, version="1.41", timeout=30)
    try:
        yield sdk
    finally:
        sdk.close()


def test_containers_list_and_get(client, server: Server, busybox_image: str) -> None:
    cid = run_d(server.store_root, "--name", "one", "--label", "team=a", busybox_image, "sleep", "60")
    assert minirun(server.store_root, "create", "--name", "two", busybox_image, "true").returncode == 0
    assert [c.name for c in client.containers.list()] == ["one"]
    assert sorted(c.name for c in client.containers.list(all=True)) == ["one", "two"]
    assert [c.id for c in client.containers.list(filters={"label": "team=a"})] == [cid]
    one = client.containers.get("one")
    assert one.status == "running" and one.labels == {"team": "a"} and one.image.tags == ["busybox-test:latest"]


def test_stats_without_stream(client, server: Server, busybox_image: str) -> None:
    run_d(server.store_root, "--name", "st", "--memory", "32m", busybox_image, "sh", "-c", "while :; do :; done")
    stats = client.containers.get("st").stats(stream=False)
    assert stats["name"] == "/st" and stats["memory_stats"]["limit"] == 32 * 1024 * 1024
    cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > pre["cpu_usage"]["total_usage"] > 0  # two readings a second apart
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] and cpu["online_cpus"] >= 1
    assert stats["pids_stats"]["current"] == 1


def test_logs(client, server: Server, busybox_image: str) -> None:
    run_d(server.store_root, "--name", "lg", busybox_image, "sh", "-c", "echo to-out; echo to-err >&2; sleep 60")
    container = client.containers.get("lg")
    wait_for(lambda: b"to-err" in container.logs(), what="the log")
    assert container.logs(stdout=True, stderr=False) == b"to-out\n"
    assert container.logs(stdout=False, stderr=True) == b"to-err\n"
    assert container.logs(tail=1) in (b"to-out\n", b"to-err\n")


def test_stop(client, server: Server, busybox_image: str) -> None:
    cid = run_d(server.store_root, "--name", "stp", busybox_image, "sleep", "60")
    container = client.containers.get("stp")
    container.stop(timeout=1)
    assert status(server.store_root, cid) == "exited"
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] in (137, 143)


def test_images_list(client, busybox_image: str) -> None:
    (image,) = client.images.list()
    assert image.tags == ["busybox-test:latest"] and image.id.startswith("sha256:")
    assert client.images.get(busybox_image).id == image.id


def test_events(client, server: Server, busybox_image: str) -> None:
    seen: list[dict] = []
    stream = client.events(decode=True, filters={"type": "container", "event": ["create", "start", "destroy"]})

    def read() -> None:
        for event in stream:
            seen.append(event)
            if event["Action"] == "destroy":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    cid = run_d(server.store_root, "--name", "evs", busybox_image, "sleep", "60")
    assert minirun(server.store_root, "rm", "-f", "evs").returncode == 0
    reader.join(timeout=15)
    stream.close()
    reader.join(timeout=5)
    assert [(e["Action"], e["id"], e["Actor"]["Attributes"]["name"]) for e in seen] == [
        ("create", cid, "evs"), ("start", cid, "evs"), ("destroy", cid, "evs"),
    ]  # fmt: skip
    history = list(client.events(decode=True, since=0, until=int(time.time()) + 1, filters={"container": "evs"}))
    assert [e["Action"] for e in history][:2] == ["create", "start"]

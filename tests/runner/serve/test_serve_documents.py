"""Unit checks of the Engine API's documents and of the create body's translation into `minirun create` flags."""

from __future__ import annotations

import pytest
from minicache.errors import InvalidSpec
from minirun.serve import create, documents


def test_port_list_as_containers_json_gives_it() -> None:
    settings = {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None}}
    assert documents.port_list(settings) == [
        {"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8080},
        {"PrivatePort": 53, "Type": "udp"},
    ]


def test_event_document_and_filters() -> None:
    entry = {"Type": "container", "Action": "die", "ID": "ab" * 32, "timeNano": 1_700_000_000_123_456_789,
             "Attributes": {"name": "web", "image": "busybox", "exitCode": "0", "tier": "front"}}  # fmt: skip
    doc = documents.event(entry)
    assert doc["status"] == "die" and doc["id"] == "ab" * 32 and doc["from"] == "busybox"
    assert doc["time"] == 1_700_000_000 and doc["timeNano"] == entry["timeNano"]
    assert documents.event_matches({"type": ["container"], "event": ["start", "die"]}, entry)
    assert documents.event_matches({"container": ["web"]}, entry)
    assert documents.event_matches({"container": ["abab"]}, entry)
    assert documents.event_matches({"label": ["tier=front"], "image": ["busybox"]}, entry)
    assert not documents.event_matches({"label": ["tier=back"]}, entry)
    assert not documents.event_matches({"type": ["image"]}, entry)


def test_create_body_becomes_the_flags_a_user_would_type() -> None:
    body = {
        "Image": "busybox",
        "Cmd": ["sleep", "1"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Env": ["A=1"],
        "Labels": {"k": "v"},
        "StopSignal": "SIGINT",
        "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostPort": "53"}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "NanoCpus": 1_500_000_000,
            "Memory": 64 * 1024 * 1024,
            "NetworkMode": "default",
            "Binds": ["/tmp:/data:ro"],
            "AutoRemove": True,
        },
    }
    args = create.namespace(body, "web")
    assert (args.image, args.name, args.entrypoint, args.command) == ("busybox", "web", "/bin/sh", ["-c", "sleep", "1"])
    assert args.publish == ["127.0.0.1:8080:80/tcp", "53:53/udp"]
    assert args.restart == "on-failure:3" and args.cpus == "1.5" and args.memory == str(64 * 1024 * 1024)
    assert args.network is None and args.volume == ["/tmp:/data:ro"] and args.rm is True
    assert args.label == ["k=v"] and args.env == ["A=1"] and args.stop_signal == "SIGINT"
    assert create.namespace({"Image": "busybox", "Cmd": "true"}, None).command == ["true"]  # Docker's StrSlice
    with pytest.raises(InvalidSpec, match="Cmd must be a list of strings"):
        create.namespace({"Image": "busybox", "Cmd": [1, 2]}, None)
    with pytest.raises(InvalidSpec, match="HostConfig must be an object"):
        create.namespace({"Image": "busybox", "HostConfig": "x"}, None)
    with pytest.raises(InvalidSpec):
        create.namespace({"Cmd": ["true"]}, None)

import pytest
from minicache.errors import InvalidReference
from minicache.reference import parse

H = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected", "familiar"),
    [
        ("centos", "docker.io/library/centos:latest", "centos:latest"),
        ("centos:7", "docker.io/library/centos:7", "centos:7"),
        ("user/app:1", "docker.io/user/app:1", "user/app:1"),
        ("docker.io/centos", "docker.io/library/centos:latest", "centos:latest"),
        ("index.docker.io/library/centos:7", "docker.io/library/centos:7", "centos:7"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        (
            "registry.example:5000/ns/app@" + H,
            f"registry.example:5000/ns/app@{H}",
            f"registry.example:5000/ns/app@{H}",
        ),
        ("quay.io/a/b/c:v1.2_3-x", "quay.io/a/b/c:v1.2_3-x", "quay.io/a/b/c:v1.2_3-x"),
        ("127.0.0.1:5000/a:b@" + H, f"127.0.0.1:5000/a:b@{H}", "127.0.0.1:5000/a:b"),
        ("[::1]:5000/a", "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
        ("a__b/c--d", "docker.io/a__b/c--d:latest", "a__b/c--d:latest"),
    ],
)
def test_normalises_like_docker(text: str, expected: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == expected
    assert ref.familiar == familiar


def test_docker_hub_endpoint() -> None:
    assert parse("centos").endpoint == "registry-1.docker.io"
    assert parse("localhost:5000/x").endpoint == "localhost:5000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " centos",
        "Centos",
        "centos:",
        "centos:-x",
        "a//b",
        "a/",
        "-a",
        "a@sha256:abc",
        "a@md5:" + "0" * 32,
        "a:b:c",
        "a" * 300,
        "centos:" + "x" * 129,
        "UPPER.example/a/B",
        "a/b@",
        "a:b@sha256:" + "g" * 64,
    ],
)
def test_rejects_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


def test_uppercase_message_says_lowercase() -> None:
    with pytest.raises(InvalidReference, match="lowercase"):
        parse("Centos")

"""`minirun serve --listen`: TCP on loopback with the token (docker CLI via its HttpHeaders), and TLS."""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from kits.servekit import Server, docker_cli, free_port, remove_all

pytestmark = pytest.mark.root


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.skipif(docker_cli() is None, reason="the docker CLI is not installed")
def test_docker_cli_over_tcp_with_the_token(store_root: Path, busybox_image: str, tmp_path: Path, no_leaks, reaper):
    port = free_port()
    srv = Server(store_root, tmp_path / "api.sock", "--listen", f"127.0.0.1:{port}")
    try:
        token = (store_root / "serve" / "token").read_text().strip()
        without = srv.docker("ps", host=f"tcp://127.0.0.1:{port}")
        assert without.returncode != 0 and "token is required" in without.stderr
        config = tmp_path / "docker-with-token"
        config.mkdir()
        (config / "config.json").write_text(json.dumps({"HttpHeaders": {"Authorization": f"Bearer {token}"}}))
        with_token = srv.docker(
            "images", "--format", "{{.Repository}}", host=f"tcp://127.0.0.1:{port}", env={"DOCKER_CONFIG": str(config)}
        )
        assert with_token.returncode == 0 and with_token.stdout.split() == ["busybox-test"], with_token.stderr
    finally:
        remove_all(store_root)
        srv.stop()


def test_tls_on_tcp_plain_http_on_the_socket(store_root: Path, busybox_image: str, tmp_path: Path, no_leaks, reaper):
    cert, key = self_signed(tmp_path)
    port = free_port()
    srv = Server(store_root, tmp_path / "api.sock", "--listen", f"127.0.0.1:{port}",
                 "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    try:
        token = (store_root / "serve" / "token").read_text().strip()
        context = ssl.create_default_context(cafile=str(cert))
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/v1.41/version", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert json.loads(response.read())["ApiVersion"] == "1.41"
        with pytest.raises(Exception, match=r"Remote end closed|reset|EOF|BadStatusLine|record"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_ping", timeout=10)  # no plain HTTP there
        if docker_cli():
            assert srv.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.41"
    finally:
        srv.stop()

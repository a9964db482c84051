"""`minirun serve`: the listeners (a Unix socket, optional TCP) and uvicorn serving the app on them.

Each listener is its own uvicorn Server in one event loop, so TLS and the token apply to TCP only and the
Unix socket keeps Docker's plain HTTP. The sockets are made here, not by uvicorn: the Unix socket gets
mode 0660 and the `minicontainer` group before it listens (uvicorn would make it 0666).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from minicache.errors import InvalidSpec, MiniError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from minicache.store import Store

GROUP = "minicontainer"
SOCKET_MODE = 0o660


def default_socket(store: Store) -> Path:
    return Path(store.api_socket)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6); the host must be an IP address."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSpec(f"invalid --listen {text!r}", hint="give ADDRESS:PORT, e.g. 127.0.0.1:2375")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidSpec(f"invalid --listen {text!r}: {host!r} is not an IP address", hint="e.g. 127.0.0.1") from None
    return host, int(port)


def needs_tls(host: str) -> bool:
    return not ipaddress.ip_address(host).is_loopback


def _open_to_group(run_root: str, gid: int) -> None:
    """Let the group pass through the run-time root to the socket: search only (0710), every entry below stays
    closed, and the store's check on open accepts that one bit."""
    from minicache.modes import RUN_ROOT_DIR

    os.chown(run_root, -1, gid)
    os.chmod(run_root, RUN_ROOT_DIR)


def unix_listener(path: Path, run_root: str | None = None) -> socket.socket:
    """A listening Unix socket at `path`, mode 0660, group `minicontainer` if it exists; a stale one is replaced."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: left by a server that died
        else:
            raise MiniError(f"another server is listening on {path}", hint="stop it, or give --socket PATH")
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # never reachable by others, not even between bind and chmod
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        gid = -1
    os.chown(path, 0 if os.geteuid() == 0 else -1, gid)
    os.chmod(path, SOCKET_MODE)
    if gid != -1 and run_root is not None and path.parent == Path(run_root):
        _open_to_group(run_root, gid)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def tcp_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise MiniError(f"cannot listen on {host}:{port}: {e.strerror}", hint="choose another port") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield


class _QuietShutdown(logging.Filter):
    """Streams still open at shutdown (events, stats, logs -f) are cancelled: that is no error to report."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        return "timeout graceful shutdown exceeded" not in record.getMessage()


def serve(
    store: Store,
    *,
    socket_path: Path | None = None,
    listen: list[str] = (),  # type: ignore[assignment]
    tls_cert: str | None = None,
    tls_key: str | None = None,
    ready: callable | None = None,  # type: ignore[valid-type]
) -> None:
    """Serve until SIGTERM or SIGINT."""
    import uvicorn
    from minirun.serve import app as application
    from minirun.serve import auth

    addresses = [parse_listen(text) for text in listen]
    if (tls_cert is None) != (tls_key is None):
        raise InvalidSpec("--tls-cert and --tls-key go together", hint="give both")
    for host, _ in addresses:
        if needs_tls(host) and tls_cert is None:
            raise InvalidSpec(
                f"listening on {host} needs TLS", hint="give --tls-cert and --tls-key, or listen on 127.0.0.1"
            )
    logging.getLogger("uvicorn.error").addFilter(_QuietShutdown())
    guard = auth.Guard(auth.load_token(store))
    app = application.build(store, guard)
    path = socket_path or default_socket(store)
    listeners = [(unix_listener(path, store.run_root), application.for_listener(app, guard, need_token=False), None)]
    for host, port in addresses:
        tls = (tls_cert, tls_key) if tls_cert else None
        listeners.append((tcp_listener(host, port), application.for_listener(app, guard, need_token=True), tls))

    servers = []
    for sock, asgi, tls in listeners:
        config = uvicorn.Config(
            asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        server.capture_signals = _no_signals  # one handler below stops every listener
        servers.append((server, sock))

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server, _ in servers:
                server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
        while not all(server.started for server, _ in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if ready is not None:
            ready()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
    finally:
        for sock, _, _ in listeners:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

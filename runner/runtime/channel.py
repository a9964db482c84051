"""The parent↔child synchronisation channel: a SOCK_SEQPACKET pair carrying small typed JSON messages.

One datagram = one message `{"t": TYPE, ...}`; a message may carry file descriptors (SCM_RIGHTS), which
is how the child hands the parent the pty master it opened inside the container. Both ends are
O_CLOEXEC: when the child's execve succeeds its end closes, and the parent reads end-of-file.

Descriptors are packed with `struct` (loaded anyway by ctypes), not `array` (one more shared library).
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

MAX_MESSAGE = 65536
MAX_FDS = 4
_SOCK_CLOEXEC = 0o2000000
_FD_SIZE = 4  # a C int

# Message types
READY = "ready"  # child → parent: namespaces exist; the parent may set up what needs the child's PID
GO = "go"  # parent → child: carry on
PTY = "pty"  # child → parent, with the pty master fd
ERROR = "error"  # child → parent: setup or exec failed; {"msg": ..., "code": 125|126|127, "hint": ...}
CREATED = "created"  # child → parent (create): set up, now waiting on the exec fifo for `start`
SPAWNED = "spawned"  # child → parent (exec): the command it spawned into the container; {"pid": ...}


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | _SOCK_CLOEXEC)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, fds: list[int] | tuple[int, ...] = (), **fields: Any) -> None:
        data = json.dumps({"t": kind, **fields}).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
        self.sock.sendmsg([data], ancillary)

    def recv(self) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message and the fds it carried; (None, []) at end-of-file (the peer closed or exec'ed)."""
        fds: list[int] = []
        data, ancdata, _flags, _addr = self.sock.recvmsg(
            MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE), socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(payload) // _FD_SIZE
                fds += struct.unpack(f"{count}i", payload[: count * _FD_SIZE])
        if not data:
            return None, fds
        return json.loads(data), fds

    def peer_closed(self) -> bool:
        """True if the other end is closed (its process died), without waiting or consuming a message."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False

    def close(self) -> None:
        self.sock.close()


def read_report(read_end: int) -> dict | None:
    """What a forked child wrote to a close-on-exec pipe before it failed (None: it exec'd or ended silently).

    The pipe closes at the child's execve or exit, so reading to its end is the wait; the read end is closed.
    """
    chunks = []
    try:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    return json.loads(b"".join(chunks)) if chunks else None

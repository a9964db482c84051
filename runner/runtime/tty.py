"""Pseudo-terminals: opened inside the container (its own devpts), relayed to the user's terminal outside.

The child opens the container's /dev/ptmx after pivot_root, so the process sees /dev/pts/0 of its own
devpts instance, and passes the master to the parent over the channel (like runc's console socket).
The parent puts the user's terminal in raw mode, copies the window size now and on every SIGWINCH,
relays bytes both ways, and restores the terminal whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
from types import FrameType, TracebackType

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def open_pty(uid: int, gid: int, rows: int = 0, cols: int = 0) -> tuple[int, int, str]:
    """Open a new pty pair on this mount namespace's /dev/ptmx: (master, slave, slave path)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    path = f"/dev/pts/{number}"
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY)
    os.fchown(slave, uid, gid)
    os.fchmod(slave, 0o620)
    if rows and cols:
        set_size(master, rows, cols)
    return master, slave, path


def make_controlling(slave: int) -> None:
    """Make `slave` the caller's controlling terminal and its stdin/stdout/stderr (caller is a session leader)."""
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd, inheritable=True)
    if slave > 2:
        os.close(slave)


def get_size(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, None if it is not one."""
    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


class TerminalSession:
    """The host side of a container's terminal: raw mode, window size and the byte relay.

    >>> with TerminalSession(master, stdin_open=True) as session:
    ...     session.relay()   # returns when the container side is closed
    """

    def __init__(self, master: int, *, stdin_open: bool, stdin: int = 0, stdout: int = 1) -> None:
        self.master = master
        self.stdin_open = stdin_open
        self.stdin = stdin
        self.stdout = stdout
        self._saved_attrs: list | None = None
        self._old_winch: object = None

    def _size_source(self) -> int | None:
        for fd in (self.stdin, self.stdout):
            if os.isatty(fd):
                return fd
        return None

    def resize(self, *_: object) -> None:
        source = self._size_source()
        size = get_size(source) if source is not None else None
        if size:
            with contextlib.suppress(OSError):
                set_size(self.master, *size)

    def __enter__(self) -> TerminalSession:
        if self.stdin_open and os.isatty(self.stdin):
            import termios
            import tty

            self._saved_attrs = termios.tcgetattr(self.stdin)
            tty.setraw(self.stdin, termios.TCSANOW)
        self.resize()
        self._old_winch = signal.signal(signal.SIGWINCH, self._on_winch)
        return self

    def _on_winch(self, signum: int, frame: FrameType | None) -> None:
        self.resize()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        signal.signal(signal.SIGWINCH, self._old_winch or signal.SIG_DFL)  # type: ignore[arg-type]
        if self._saved_attrs is not None:
            import termios

            termios.tcsetattr(self.stdin, termios.TCSADRAIN, self._saved_attrs)
        os.close(self.master)

    def relay(self) -> None:
        """Copy stdin → master and master → stdout until the container closes its end."""
        reading_stdin = self.stdin_open
        while True:
            fds = [self.master, self.stdin] if reading_stdin else [self.master]
            ready, _, _ = select.select(fds, [], [])
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd is closed: the container is gone
                        return
                    raise
                if not data:
                    return
                _write_all(self.stdout, data)
            if reading_stdin and self.stdin in ready:
                data = os.read(self.stdin, 65536)
                if data:
                    _write_all(self.master, data)
                else:
                    reading_stdin = False

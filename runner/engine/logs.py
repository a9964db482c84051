"""A detached container's log: `containers/<id>/log`, JSON lines like Docker's json-file driver.

    {"log":"hello\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

The monitor writes one entry per line of output (a line longer than 16 KiB is cut into several entries,
as Docker does), stdout and stderr kept apart; `minirun logs` reads them back.
"""

from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING

from minicache.atomic import json_lines
from minirun.engine.containers import now

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from minirun.engine.containers import Container

LOG_NAME = "log"
MAX_LINE = 16 * 1024


class LogWriter:
    """Appends entries to the log file; keeps each stream's unfinished line until its end arrives."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        """Log `data` read from `stream`: every complete line now, the rest when it is complete."""
        buffered = self.partial.pop(stream, b"") + data
        lines = buffered.split(b"\n")
        rest = lines.pop()
        out = [_entry(stream, line + b"\n") for line in lines]
        while len(rest) >= MAX_LINE:
            out.append(_entry(stream, rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        if rest:
            self.partial[stream] = rest
        if out:
            _write_all(self.fd, b"".join(out))

    def flush(self, stream: str | None = None) -> None:
        """Write unfinished lines (the stream ended) as they are."""
        for name in [stream] if stream else list(self.partial):
            rest = self.partial.pop(name, b"")
            if rest:
                _write_all(self.fd, _entry(name, rest))

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def _entry(stream: str, data: bytes) -> bytes:
    text = data.decode("utf-8", "replace")
    return json.dumps({"log": text, "stream": stream, "time": now()}, separators=(",", ":")).encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    """Append `data`; on a full disk what does not fit is dropped (a torn line is skipped by readers), so that
    the monitor goes on reaping and recording the container."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return


READ_SIZE = 1 << 20  # a container decides how big its log grows: it is read a bounded piece at a time


def read_entries(
    path: str | os.PathLike[str], offset: int = 0, size: int = READ_SIZE
) -> tuple[list[dict[str, Any]], int]:
    """Complete entries in about `size` bytes from byte `offset` on, and the offset after the last one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
            while len(data) >= size and b"\n" not in data:  # one entry longer than `size`: read on to its end
                more = f.read(size)
                if not more:
                    break
                data += more
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
    return json_lines(data[:end]), offset + end


def follow(container: Container, *, tail: int | None, keep_following: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Batches of log entries: the last `tail` ones, then, while the container runs, what it adds.

    `minirun logs -f` prints them; `minirun serve` streams them (a blocking generator: run it in a thread).
    """
    import time

    from minirun.engine import lifecycle
    from minirun.engine.containers import ACTIVE, RESTARTING

    reader = _Reader(os.path.join(container.dir, LOG_NAME))
    if tail is None:
        yield from reader.batches()
    else:
        from collections import deque

        last: deque[dict[str, Any]] = deque(maxlen=tail)
        for entries in reader.batches():
            last.extend(entries)
        yield list(last)
    delay = 0.01
    while keep_following:
        state = lifecycle.observe(container, patience=0)
        running = state.Status in ACTIVE or state.Status == RESTARTING
        if not running:
            time.sleep(0.05)  # the monitor flushes the last lines as the pipes close
        start = reader.offset
        yield from reader.batches()
        if not running:
            return
        delay = 0.01 if reader.offset != start else min(delay * 2, 0.2)
        time.sleep(delay)


class _Reader:
    """A log read from where the last read stopped, a bounded piece at a time: a container decides its size."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.offset = 0

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """Every complete entry from the offset on, in batches; the offset moves past each batch."""
        while True:
            entries, end = read_entries(self.path, self.offset)
            if end == self.offset:
                return
            self.offset = end
            yield entries

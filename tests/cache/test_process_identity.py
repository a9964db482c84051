"""minicache.process: liveness checks must not raise for a process that ends while they look at it."""

from __future__ import annotations

import builtins
import subprocess

import pytest
from minicache import process


def test_is_alive_of_a_process_that_ends_between_open_and_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """read() of /proc/PID/stat says ESRCH (ProcessLookupError) when the process was reaped after open():
    `rm -f` of a container whose init just died crashed on it."""
    child = subprocess.Popen(["sleep", "60"])
    started = process.start_time(child.pid)
    real_open = builtins.open
    opened = []

    def open_then_end(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_open(path, *args, **kwargs)
        if path == f"/proc/{child.pid}/stat":
            opened.append(path)
            if len(opened) == 2:  # is_alive's own read, after start_time's: the process ends in between
                child.kill()
                child.wait()
        return f

    monkeypatch.setattr(builtins, "open", open_then_end)
    assert process.is_alive(child.pid, None) is False
    assert len(opened) == 2
    monkeypatch.undo()
    assert process.is_alive(child.pid, started) is False


def test_is_alive_tells_a_live_process_and_a_recycled_pid() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        started = process.start_time(child.pid)
        assert started is not None and process.is_alive(child.pid, started)
        assert not process.is_alive(child.pid, started + 1)  # same PID, another process
    finally:
        child.kill()
        child.wait()
    assert not process.is_alive(child.pid, started)

"""Progress of pulls and pushes: tqdm bars on a terminal, one line per layer otherwise, or nothing.

The reporting calls come from several download threads at once; every implementation is thread-safe.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from minishow import human_size


class Progress:
    """The no-op reporter (`-q`); the others override what they show."""

    def message(self, text: str) -> None:
        """A line about the whole operation (`latest: Pulling from library/busybox`)."""

    def add(self, key: str, size: int, status: str) -> None:
        """Announce one layer/blob (`key` is its short ID) before work on it starts."""

    def start_total(self, size: int) -> None:
        """The number of bytes that will be transferred in all."""

    def advance(self, key: str, n: int) -> None:
        """`n` more bytes of `key` transferred."""

    def status(self, key: str, status: str, *, final: bool = False) -> None:
        """A new state of `key` (Downloading, Extracting, Pull complete ...); `final` when it is done."""

    def close(self) -> None:
        pass


class LineProgress(Progress):
    """One line per layer when it is done (for logs and pipes), plus the operation's messages."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.sizes: dict[str, int] = {}
        self.started: dict[str, float] = {}

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._print(text)

    def add(self, key: str, size: int, status: str) -> None:
        self.sizes[key] = size
        self.started[key] = time.monotonic()

    def status(self, key: str, status: str, *, final: bool = False) -> None:
        if final:
            took = time.monotonic() - self.started.get(key, time.monotonic())
            size = self.sizes.get(key)
            detail = f" ({human_size(size)} in {took:.1f}s)" if size and status not in ("Already exists",) else ""
            self._print(f"{key}: {status}{detail}")


class BarProgress(Progress):
    """A tqdm bar per layer (bytes, rate) and one for the total, like `docker pull` on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        import tqdm

        tqdm.tqdm.monitor_interval = 0  # no monitor thread
        self.tqdm = tqdm.tqdm
        self.stream = stream or sys.stderr
        self.bars: dict[str, object] = {}
        self.total = None
        self.lock = threading.Lock()

    def message(self, text: str) -> None:
        self.tqdm.write(text, file=self.stream)

    def _bar(self, desc: str, size: int, position: int):
        return self.tqdm(
            total=size,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            position=position,
            leave=True,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=0.2,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {rate_fmt}",
        )

    def add(self, key: str, size: int, status: str) -> None:
        with self.lock:
            bar = self._bar(f"{key} {status:<16}", size, len(self.bars))
            self.bars[key] = bar
            if status in ("Already exists",):
                bar.update(size)  # type: ignore[attr-defined]

    def advance(self, key: str, n: int) -> None:
        bar = self.bars.get(key)
        if bar is not None:
            bar.update(n)  # type: ignore[attr-defined]
        if self.total is not None:
            self.total.update(n)  # type: ignore[attr-defined]

    def status(self, key: str, status: str, *, final: bool = False) -> None:
        bar = self.bars.get(key)
        if bar is not None:
            bar.set_description_str(f"{key} {status:<16}", refresh=True)  # type: ignore[attr-defined]

    def start_total(self, size: int) -> None:
        with self.lock:
            self.total = self._bar(f"{'total':<29}", size, len(self.bars))

    def close(self) -> None:
        for bar in [*self.bars.values(), self.total]:
            if bar is not None:
                bar.close()  # type: ignore[attr-defined]


def for_terminal(quiet: bool, stream: TextIO | None = None) -> Progress:
    """Nothing with `quiet`; bars when `stream` (stderr) is a terminal; lines otherwise."""
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if stream.isatty():
        return BarProgress(stream)
    return LineProgress(stream)

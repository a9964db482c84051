"""The console script defers garbage collection during start-up, and collects cycles as usual afterwards."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc, weakref
from minirun import cli

defaults = gc.get_threshold()
cli._collect_later()
assert gc.get_threshold() == (cli.STARTUP_GC_THRESHOLD, *defaults[1:]), gc.get_threshold()

class Node:
    pass

def cycle():
    node = Node()
    node.me = node  # freed only by the collector
    return weakref.ref(node)

first = cycle()
before = gc.get_stats()[0]["collections"]
for _ in range(1000):  # start-up sized: no collection
    cycle()
assert gc.get_stats()[0]["collections"] == before and first() is not None

for _ in range(cli.STARTUP_GC_THRESHOLD):  # past the threshold: collected, and the defaults are back
    cycle()
assert first() is None
assert gc.get_threshold() == defaults, gc.get_threshold()
assert not gc.callbacks

later = cycle()  # a long-lived process collects at the default pace again
for _ in range(defaults[0] * 3):
    cycle()
assert later() is None
print("ok")
"""


def test_startup_gc_deferred_then_defaults() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"

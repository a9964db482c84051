"""`signal` under its old name, for runner/cgroups until it imports `signal` directly; nothing else may."""

from __future__ import annotations

from signal import *  # noqa: F403

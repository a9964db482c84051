"""The errors only containers have: a state that does not fit the command, a command that cannot run.

They subclass `minicache.errors.MiniError`, so both CLIs map every error the same way (a one-line message,
a hint, Docker's exit codes).
"""

from __future__ import annotations

from minicache.errors import MiniError


class ContainerStateError(MiniError):
    """A command that does not fit the container's current state (stop on a stopped one, ...)."""


class CannotInvoke(MiniError):
    """The container's command exists but cannot be executed (Docker's 126)."""

    exit_code = 126


class CommandNotFound(MiniError):
    """The container's command does not exist (Docker's 127)."""

    exit_code = 127

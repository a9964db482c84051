"""The root of minicontainer's one error hierarchy, the store's errors and the generic kinds both CLIs share.

Library code raises these; only the CLIs turn them into a one-line message, a hint and an exit code, the
same way for both (`one_line`, `exit_code`). Errors only one tool has are its own, subclasses of the same
root: the registry's and a build's in `minibuild.errors`, a container's in `minirun.errors`.
`exit_code` is the status of a command that stands for a container process (`run`, `exec`, `start -a`):
Docker's 125 engine error, 126 cannot invoke, 127 not found. Other commands exit 1 on any error.
"""

from __future__ import annotations


class MiniError(Exception):
    """Root of every error minibuild and minirun raise on purpose."""

    exit_code = 125
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class NotFound(MiniError):
    """An image, layer, blob, container or network that does not exist."""


class InvalidReference(MiniError):
    """An image reference that cannot be parsed."""

    hint = "references look like NAME[:TAG] or NAME@sha256:HEX, e.g. busybox:1.36"


class InvalidDigest(MiniError):
    """A string that is not a valid `algorithm:hex` digest."""


class DigestMismatch(MiniError):
    """Bytes whose digest or size differ from what was promised; nothing was stored."""


class InvalidArchive(MiniError):
    """A tarball or layer that is malformed or hostile; nothing was stored."""


class TooLarge(InvalidArchive):
    """An archive over the configured size or entry limits (a decompression bomb)."""


class InvalidSpec(MiniError):
    """An OCI runtime spec, image config or flag value that is not acceptable."""


class Conflict(MiniError):
    """An operation that would break something in use (a name taken, an image used by a container)."""


def one_line(prog: str, err: BaseException) -> str:
    """The single line a CLI prints for an error: `prog: error: what is wrong; what to do`."""
    message = " ".join(str(err).split()) or type(err).__name__
    hint = getattr(err, "hint", None)
    return f"{prog}: error: {message}" + (f"; {hint}" if hint else "")


class StoreUnavailable(MiniError):
    """The store cannot be used at all: missing (for a command that only reads), not a directory, not ours.

    The CLIs exit 125 (an engine error) for it whatever the command: nothing was attempted.
    """


class PermissionDenied(StoreUnavailable):
    """The caller may not use the store, or the command needs root."""


class NoSpace(MiniError):
    """The store's filesystem is full (or the caller's quota used up)."""

    hint = "free some space (minirun rm, minibuild prune) and try again"


def disk_full(err: OSError, where: object) -> NoSpace | None:
    """A NoSpace for an ENOSPC/EDQUOT `err` met while writing under `where`; None for any other error."""
    import errno

    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return NoSpace(f"no space left on the filesystem of {where}")

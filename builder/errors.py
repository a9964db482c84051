"""The errors only minibuild has: a registry's answer, a recipe that cannot be read, a build step that failed.

They subclass `minicache.errors.MiniError`, so both CLIs map every error the same way (a one-line message,
a hint, Docker's exit codes).
"""

from __future__ import annotations

from minicache.errors import MiniError


class RegistryError(MiniError):
    """A registry answered with an error or could not be reached."""


class AuthError(RegistryError):
    """The registry refused our credentials or asked for ones we do not have."""

    hint = "log in with `minibuild login REGISTRY`"


class RecipeError(MiniError):
    """A Containerfile that cannot be parsed or built as written; the message names file, line and instruction."""


class BuildError(MiniError):
    """A build step that failed (a RUN that exited non-zero, a COPY source missing); no image was made."""

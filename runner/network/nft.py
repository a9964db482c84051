"""nftables through libnftables (the library `nft` itself is built on), called with ctypes.

One `run(script)` is one atomic transaction, as with `nft -f`: every command of the script applies or
none does. No process is spawned (~2 ms per transaction instead of ~5 ms for an `nft` process).
"""

from __future__ import annotations

import ctypes
import json

from minicache.errors import MiniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4
_lib = None


class NftError(MiniError):
    """nftables refused a transaction; nothing of it was applied."""


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError:
            raise MiniError(
                "libnftables is not installed", hint="install the nftables package (apt-get install nftables)"
            ) from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


class Nft:
    """One libnftables context."""

    def __init__(self) -> None:
        self.lib = _library()
        self.ctx = self.lib.nft_ctx_new(0)
        if not self.ctx:
            raise MiniError("cannot initialise libnftables")
        self.lib.nft_ctx_buffer_output(self.ctx)
        self.lib.nft_ctx_buffer_error(self.ctx)

    def close(self) -> None:
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, script: str, flags: int) -> tuple[int, str, str]:
        self.lib.nft_ctx_output_set_flags(self.ctx, flags)
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, script.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        return rc, out, err

    def run(self, script: str) -> None:
        """Apply `script` (nft syntax, one command per line) as one transaction or raise NftError."""
        rc, _out, err = self._run(script, 0)
        if rc != 0:
            first = next((line for line in err.splitlines() if line.startswith("Error")), err.strip())
            raise NftError(f"nftables refused the change: {first}", hint="see `nft list ruleset`")

    def try_run(self, script: str) -> bool:
        """Like run(), False instead of an error (for deletions of what may already be gone)."""
        return self._run(script, 0)[0] == 0

    def list_json(self, what: str) -> list[dict[str, Any]] | None:
        """`nft -j -a list WHAT` as the list of objects; None when WHAT does not exist."""
        rc, out, _err = self._run(f"list {what}", _OUTPUT_JSON | _OUTPUT_HANDLE)
        if rc != 0:
            return None
        return json.loads(out).get("nftables", [])

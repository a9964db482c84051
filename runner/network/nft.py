"""nftables through libnftables (the library `nft` itself is built on), called with ctypes.

One `run(script)` is one atomic transaction, as with `nft -f`: every command of the script applies or
none does. No process is spawned: a library call is cheaper than starting `nft` per transaction.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

from minicache.errors import MiniError

_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4
_lib = None


EINTR_RETRIES = 20


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
        """Run `script`; again when the kernel's ruleset changed under libnftables' cache dump (another
        process's change: libnftables 1.0.6 then fails with EINTR instead of dumping again)."""
        self.lib.nft_ctx_output_set_flags(self.ctx, flags)
        for attempt in range(EINTR_RETRIES):
            rc = self.lib.nft_run_cmd_from_buffer(self.ctx, script.encode())
            out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
            err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
            if rc == 0 or "Interrupted system call" not in err or attempt == EINTR_RETRIES - 1:
                return rc, out, err
        raise AssertionError("unreachable")

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

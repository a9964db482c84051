#!/usr/bin/env python3
"""Benchmark: which gzip decoder the unpacker should use (isal vs zlib-ng vs the standard zlib).

Compresses ~150 MB of host files as a tar with zlib level 6 (what `docker push` and Go's compress/gzip
write by default), then decompresses it in chunks, the way minicache.unpack reads a layer, with each
decoder available, and prints MB/s of uncompressed output beside the standard library's.
Environment: BENCH_GZ_MB (default 150), BENCH_RUNS (default 5).
"""

from __future__ import annotations

import gzip
import io
import os
import statistics
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20


def sample_tar(limit: int) -> bytes:
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk("/usr/lib"):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                try:
                    if not path.is_file() or path.is_symlink():
                        continue
                    tar.add(path, recursive=False)
                    total += path.stat().st_size
                except OSError:
                    continue
                if total >= limit:
                    return buf.getvalue()
    return buf.getvalue()


def drain(reader: io.RawIOBase | io.BufferedIOBase) -> int:
    n = 0
    while data := reader.read(CHUNK):
        n += len(data)
    return n


def decoders() -> dict[str, Callable[[io.BufferedReader], object]]:
    out: dict[str, Callable[[io.BufferedReader], object]] = {"zlib (gzip module)": lambda f: gzip.GzipFile(fileobj=f)}
    try:
        from isal import igzip, isal_zlib

        if hasattr(isal_zlib, "_GzipReader"):
            out["isal _GzipReader (used)"] = lambda f: isal_zlib._GzipReader(f, CHUNK)
        out["isal igzip.open"] = lambda f: igzip.open(f, "rb")
    except ImportError:
        print("isal: not installed, skipped")
    try:
        from zlib_ng import gzip_ng

        out["zlib-ng gzip_ng.open"] = lambda f: gzip_ng.open(f, "rb")
    except ImportError:
        print("zlib-ng: not installed (pip install zlib-ng), skipped")
    return out


def main() -> int:
    mb = int(os.environ.get("BENCH_GZ_MB", "150"))
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    raw = sample_tar(mb << 20)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    packed = compressor.compress(raw) + compressor.flush()
    print(f"sample: {len(raw) / 1e6:.0f} MB tar, {len(packed) / 1e6:.0f} MB gzip (zlib level 6); {runs} runs\n")
    rates: dict[str, float] = {}
    for name, make in decoders().items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            n = drain(make(io.BufferedReader(io.BytesIO(packed), CHUNK)))  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
            assert n == len(raw), name
        rates[name] = len(raw) / statistics.median(times) / 1e6
    base = rates["zlib (gzip module)"]
    width = max(map(len, rates))
    for name, rate in rates.items():
        print(f"{name.ljust(width)}  {rate:7.0f} MB/s   {rate / base:4.2f}x zlib")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: gunzip speed of the codecs the unpacker could use, on the same layer-like data.

Compresses ~200 MB of host files (a tar of /usr/lib and /usr/share files, like a layer) once with gzip
level 6 (what `docker push`/`gzip` write), then times streaming decompression in 1 MiB reads with
zlib (CPython's gzip), isal (ISA-L: its C `_GzipReader`, and `igzip_threaded`) and zlib-ng (when
installed: `pip install zlib-ng`). Prints MB/s of uncompressed output and the ratio to zlib.
"""

from __future__ import annotations

import gzip
import io
import os
import statistics
import tarfile
import time

SIZE = int(os.environ.get("BENCH_GZIP_MB", "200")) << 20


def sample() -> bytes:
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for src in ("/usr/lib", "/usr/share"):
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    try:
                        if not os.path.isfile(path) or os.path.islink(path) or os.path.getsize(path) > 4 << 20:
                            continue
                        tar.add(path, recursive=False)
                        total += os.path.getsize(path)
                    except OSError:
                        continue
                    if total >= SIZE:
                        return buf.getvalue()
    return buf.getvalue()


def drain(reader) -> int:
    n = 0
    while chunk := reader.read(1 << 20):
        n += len(chunk)
    return n


def main() -> None:
    raw = sample()
    compressed = gzip.compress(raw, compresslevel=6)
    print(f"{len(raw) / 1e6:.0f} MB tar, {len(compressed) / 1e6:.0f} MB gzip -6; median of 3 runs\n")
    codecs = {"zlib (gzip.GzipFile)": lambda f: gzip.GzipFile(fileobj=f)}
    from isal import igzip_threaded, isal_zlib

    codecs["isal (_GzipReader)"] = lambda f: isal_zlib._GzipReader(f, 1 << 20)
    codecs["isal (igzip_threaded, 1 thread)"] = lambda f: igzip_threaded.open(f, "rb", threads=1)
    try:
        from zlib_ng import gzip_ng, zlib_ng

        codecs["zlib-ng (_GzipReader)"] = lambda f: zlib_ng._GzipReader(f, 1 << 20)
        codecs["zlib-ng (gzip_ng.GzipFile)"] = lambda f: gzip_ng.GzipFile(fileobj=f)
    except ImportError:
        print("zlib-ng: not installed (pip install zlib-ng), skipped")
    results = {}
    for name, make in codecs.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert drain(make(io.BytesIO(compressed))) == len(raw)
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times)
    base = results["zlib (gzip.GzipFile)"]
    for name, t in results.items():
        print(f"{name:34} {len(raw) / t / 1e6:7.0f} MB/s   {base / t:4.2f}x zlib")


if __name__ == "__main__":
    main()

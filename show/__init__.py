"""How both command lines show numbers and lists: Docker's human sizes and durations, and its aligned tables.

A neutral home: `minibuild` and `minirun` both print these, they may not import each other, and none of it is the
store's business. It imports nothing, so it costs nothing on the `minirun run` path.
"""

from __future__ import annotations

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(size: float, base: float, units: tuple[str, ...], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSize: powers of 1000 (`2.746MB`); `docker images`, `ps -s` and stats' I/O use precision 3."""
    return _scaled(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """go-units BytesSize: powers of 1024 (`1.5KiB`), as `docker stats` shows memory."""
    return _scaled(float(size), 1024.0, _BINARY, 4)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks", "3 years"."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's Duration.Round(time.Hour): halves away from zero
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def table(header: tuple[str, ...] | list[str], rows: list[tuple[str, ...]] | list[list[str]]) -> str:
    """Docker's aligned table: header first, columns three spaces apart, no trailing blanks."""
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)

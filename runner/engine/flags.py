"""Parsers for `minirun run` flag values (`-v`, `--tmpfs`, `--ulimit`, `-e`, `--env-file`, `--name`, ...).

Each turns one string into a checked value or raises InvalidSpec saying what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping

from minicache.errors import InvalidSpec
from minicache.record import Record

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# A name is a file name in the store (at most 255 bytes) and, on a user network, a DNS name (at most 253).
MAX_NAME = 253
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
ULIMITS = {
    "core": "RLIMIT_CORE",
    "cpu": "RLIMIT_CPU",
    "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS",
    "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK",
    "as": "RLIMIT_AS",
}


class Volume(Record):
    source: str
    destination: str
    readonly: bool = False
    propagation: str = "rprivate"


class Tmpfs(Record):
    destination: str
    options: tuple[str, ...] = ()


class Ulimit(Record):
    name: str  # RLIMIT_*
    soft: int
    hard: int


def container_path(path: str, what: str) -> str:
    """A clean absolute path inside the container (`//a/./b/../c` → `/a/c`); `..` cannot climb above `/`."""
    if not path.startswith("/"):
        raise InvalidSpec(f"{what} {path!r} is invalid: it needs to be an absolute path")
    return posixpath.normpath("/" + path.lstrip("/"))


def validate_name(name: str) -> str:
    """Docker's container names: [a-zA-Z0-9][a-zA-Z0-9_.-]+, at most MAX_NAME characters."""
    if len(name) > MAX_NAME:
        raise InvalidSpec(
            f"invalid container name {name[:40]}...: it has {len(name)} characters",
            hint=f"names have at most {MAX_NAME} characters",
        )
    if not _NAME.fullmatch(name):
        raise InvalidSpec(
            f"invalid container name {name!r}",
            hint="names are [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least two characters)",
        )
    return name


def env_entry(item: str, environ: Mapping[str, str]) -> str | None:
    """`KEY=VALUE` stays; a bare `KEY` takes the caller's value, or is dropped when unset (as Docker does)."""
    key, eq, _value = item.partition("=")
    if not key or any(c.isspace() for c in key):  # [^=\s]+ (the key has no `=`: partition)
        raise InvalidSpec(f"invalid environment variable {item!r}", hint="use KEY=VALUE or KEY")
    if eq:
        return item
    return f"{key}={environ[key]}" if key in environ else None


def parse_labels(items: list[str]) -> dict[str, str]:
    """`--label KEY=VALUE` (or a bare `KEY`, an empty value), as Docker; later ones win."""
    labels: dict[str, str] = {}
    for item in items:
        key, _eq, value = item.partition("=")
        if not key:
            raise InvalidSpec(f"invalid label {item!r}", hint="use KEY=VALUE")
        labels[key] = value
    return labels


def read_env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """Docker's env-file format: KEY=VALUE or KEY per line; blank lines and `#` comments are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidSpec(f"cannot read env file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidSpec(f"env file {path} is not UTF-8 text") from None
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidSpec(f"{path}:{number}: variable name {key!r} contains whitespace or is empty")
        entry = env_entry(line, environ)
        if entry is not None:
            out.append(entry)
    return out


def _check_kernel_path(dest: str, fstype: str, text: str) -> None:
    """Refuse /proc, /sys, /dev and paths inside /proc here, before anything is created; the runtime refuses
    them again once the destination is resolved in the image (a symlink there can lead to them too)."""
    from minirun.runtime.mounts import refusal

    reason = refusal(dest, fstype, fstype == "bind")
    if reason is not None:
        raise InvalidSpec(
            f"invalid {'volume' if fstype == 'bind' else 'tmpfs'} {text!r}: {reason}",
            hint="mount the host path somewhere else in the container",
        )


def parse_volume(text: str) -> Volume:
    """`HOST:CONTAINER[:OPTIONS]` with options ro, rw and a propagation mode (comma-separated)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidSpec(f"invalid volume specification {text!r}", hint="use -v /host/path:/container/path[:ro]")
    source, dest = parts[0], parts[1]
    if not source.startswith("/"):
        raise InvalidSpec(
            f"invalid volume {text!r}: named volumes are not supported", hint="give an absolute host path"
        )
    dest = container_path(dest, "volume destination")
    if dest == "/":
        raise InvalidSpec(f"invalid volume {text!r}: the destination cannot be /")
    _check_kernel_path(dest, "bind", text)
    readonly, propagation = False, "rprivate"
    for option in parts[2].split(",") if len(parts) == 3 else ():
        if option in ("ro", "rw"):
            readonly = option == "ro"
        elif option in _PROPAGATIONS:
            propagation = option
        elif option in ("z", "Z", "nocopy", ""):
            continue
        else:
            raise InvalidSpec(f"invalid volume option {option!r} in {text!r}", hint="options are ro, rw, rprivate, ...")
    return Volume(os.path.normpath(source), dest, readonly, propagation)


def _is_amount(value: str) -> bool:
    """A tmpfs size: regex \\d+[kmgKMG%]? (\\d being what str.isdecimal() accepts, as in `re`)."""
    number = value[:-1] if value[-1:] in ("k", "m", "g", "K", "M", "G", "%") else value
    return number.isdecimal()


def parse_tmpfs(text: str) -> Tmpfs:
    """`/path[:opt,opt=value,...]` (e.g. `/run:rw,size=64m,mode=1777`)."""
    dest, _, opts = text.partition(":")
    dest = container_path(dest, "tmpfs destination")
    if dest == "/":
        raise InvalidSpec("a tmpfs cannot be mounted on /", hint="use --read-only and tmpfs mounts for writable paths")
    _check_kernel_path(dest, "tmpfs", text)
    options = tuple(o for o in opts.split(",") if o)
    for option in options:
        key, _, value = option.partition("=")
        if key in ("size", "nr_inodes", "nr_blocks") and not _is_amount(value):
            raise InvalidSpec(f"invalid tmpfs option {option!r}", hint="e.g. size=64m")
        if key == "mode" and not (len(value) in (3, 4) and all(c in "01234567" for c in value)):
            raise InvalidSpec(f"invalid tmpfs option {option!r}", hint="mode is octal, e.g. mode=1777")
    return Tmpfs(dest, options)


def _limit(value: str, text: str) -> int:
    if value in ("-1", "unlimited"):
        return 2**64 - 1
    if not value.isdigit():
        raise InvalidSpec(f"invalid ulimit {text!r}: {value!r} is not a number", hint="use --ulimit nofile=1024:2048")
    return int(value)


def parse_ulimit(text: str) -> Ulimit:
    """`NAME=SOFT[:HARD]` (e.g. `nofile=1024:2048`)."""
    name, eq, values = text.partition("=")
    if not eq or name not in ULIMITS:
        raise InvalidSpec(
            f"invalid ulimit {text!r}", hint=f"use NAME=SOFT[:HARD] with NAME one of {', '.join(ULIMITS)}"
        )
    soft_s, _, hard_s = values.partition(":")
    soft = _limit(soft_s, text)
    hard = _limit(hard_s, text) if hard_s else soft
    if soft > hard:
        raise InvalidSpec(f"invalid ulimit {text!r}: the soft limit is above the hard limit")
    return Ulimit(ULIMITS[name], soft, hard)


class RestartPolicy(Record):
    """Docker's `--restart`: what the monitor does when the container's process ends."""

    Name: str = "no"  # no | on-failure | always | unless-stopped
    MaximumRetryCount: int = 0  # on-failure only; 0: no limit


RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart(text: str) -> RestartPolicy:
    """`no`, `on-failure[:N]`, `always` or `unless-stopped` (Docker's syntax)."""
    name, sep, count = text.partition(":")
    hint = "use --restart no|on-failure[:N]|always|unless-stopped"
    if name not in RESTART_POLICIES:
        raise InvalidSpec(f"invalid restart policy {text!r}", hint=hint)
    if sep and name != "on-failure":
        raise InvalidSpec(f"invalid restart policy {text!r}: only on-failure takes a retry count", hint=hint)
    if sep and (not count.isdigit() or len(count) > 9):
        raise InvalidSpec(f"invalid restart policy {text!r}: {count!r} is not a number", hint=hint)
    return RestartPolicy(name, int(count) if sep else 0)


def parse_signal(text: str) -> int:
    """A signal by name (`SIGTERM`, `term`, `SIGRTMIN+3`) or number (`15`), as `docker kill -s` takes it."""
    from minirun.runtime.signals import signal_number

    number = signal_number(text)
    if not number:
        raise InvalidSpec(f"invalid signal {text!r}", hint="use a name like SIGTERM or KILL, or a number like 9")
    return number

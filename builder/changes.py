"""`--change` instructions for flat imports, as `docker import --change` takes them (a Dockerfile subset)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from minicache.errors import InvalidSpec

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL")
_HINT = "supported: " + ", ".join(SUPPORTED) + ", e.g. --change 'CMD [\"/bin/sh\"]' or --change 'ENV K=V'"


def _json_list(text: str) -> list[str] | None:
    """The JSON (exec) form `["a", "b"]`, or None if `text` is not one."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _pairs(instruction: str, args: str) -> dict[str, str]:
    """`K=V K2="v 2"`, or the legacy one-pair form `K V`."""
    try:
        words = shlex.split(args)
    except ValueError as e:
        raise InvalidSpec(f"--change '{instruction} {args}': {e}", hint=_HINT) from None
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidSpec(f"--change '{instruction} {args}': expected KEY=VALUE or KEY VALUE", hint=_HINT)
        return {words[0]: args.split(None, 1)[1].strip()}
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidSpec(f"--change '{instruction} {args}': {word!r} is not KEY=VALUE", hint=_HINT)
        out[key] = value
    return out


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction to an image config's `config` object (Docker's capitalised keys)."""
    instruction, _, args = change.strip().partition(" ")
    instruction, args = instruction.upper(), args.strip()
    if instruction not in SUPPORTED:
        raise InvalidSpec(f"--change {change!r}: {instruction or 'an empty instruction'} is not supported", hint=_HINT)
    if not args:
        raise InvalidSpec(f"--change {change!r}: {instruction} needs an argument", hint=_HINT)
    if instruction in ("CMD", "ENTRYPOINT"):
        exec_form = _json_list(args)
        config["Cmd" if instruction == "CMD" else "Entrypoint"] = exec_form or ["/bin/sh", "-c", args]
    elif instruction == "ENV":
        env = [e for e in config.get("Env") or [] if isinstance(e, str)]
        for key, value in _pairs(instruction, args).items():
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        config["Env"] = env
    elif instruction == "LABEL":
        config["Labels"] = {**(config.get("Labels") or {}), **_pairs(instruction, args)}
    elif instruction == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in args.split():
            number, _, proto = port.partition("/")
            if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                raise InvalidSpec(f"--change {change!r}: {port!r} is not PORT[/tcp|udp|sctp]", hint=_HINT)
            ports[f"{int(number)}/{proto or 'tcp'}"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        paths = _json_list(args) or args.split()
        config["Volumes"] = {**(config.get("Volumes") or {}), **{p: {} for p in paths}}
    elif instruction == "WORKDIR":
        config["WorkingDir"] = args
    elif instruction == "USER":
        config["User"] = args
    elif instruction == "STOPSIGNAL":
        config["StopSignal"] = args


def config_from_changes(changes: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The `config` object of an imported image: Docker's default PATH, then each change in order."""
    config: dict[str, Any] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    for change in changes:
        apply_change(config, change)
    return config

"""`minibuild build`: run a Containerfile's stages, step by step, into an image in the store.

Each stage starts from an image, `scratch` or an earlier stage. Config instructions only change the image
config; a filesystem step (RUN, COPY, ADD, WORKDIR) mounts an overlay of the stage's layers with a fresh
upper directory, makes its change there (RUN as an OCI bundle run by the runtime, see `runtime`), and the
upper directory becomes the step's layer (`minicache.layerdiff`). Every step has a cache key: the key of
the step before it, the instruction after expansion, and for COPY/ADD the checksum of the sources; a hit
reuses the layer without mounting anything. Only the target stage and the stages it needs are built.

Nothing is named before the last step succeeds: a failed build leaves only unnamed layers behind (the
step cache's), which `minibuild prune` removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat as stat_mod
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from minibuild import platforms
from minibuild.build import context as contexts
from minibuild.build import rootfs, runtime
from minibuild.build.containerfile import Containerfile, Instruction, parse
from minibuild.build.words import WordError, expand, expand_vars, expand_words, split_raw
from minibuild.errors import BuildError, RecipeError
from minicache import gc, layerdiff, newimage, overlay
from minicache.errors import InvalidReference, MiniError, NotFound
from minicache.images import ImageRecord, LayerRef
from minicache.record import Record
from minicache.store import Store

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
_OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off"  # renames copy up whole: the upper dir is a plain diff
_RUN_MOUNT_TARGETS = ("proc", "dev", "sys")  # made by the runtime when the image lacks them; not part of a layer
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|ns))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
# Build-args Docker passes to RUN steps without an ARG line (and never reports as unused).
_PROXY_ARGS = frozenset(
    {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy"}
    | {"ALL_PROXY", "all_proxy"}
)
_UNIT_NS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1}


class BuildOptions(Record):
    context: str = "."
    file: str | None = None
    tags: list[str] = []
    build_args: dict[str, str] = {}
    target: str | None = None
    platform: str | None = None
    no_cache: bool = False
    network: str = "none"
    compression: str = "gzip"
    timestamp: int | None = None
    labels: dict[str, str] = {}
    out: TextIO | None = None  # step lines; None: stdout
    quiet: bool = False  # RUN output is kept back, and shown only when its step fails


class BuildResult(Record):
    image_id: str
    names: list[str]
    steps: int
    cached: int
    manifest: str


class State(Record):
    """A stage while it is built: its layers, config and the cache key of everything so far."""

    layers: list[LayerRef]
    config: dict[str, Any]
    image: dict[str, Any]  # top-level config fields: architecture, os, variant, author
    history: list[dict[str, Any]]
    key: str
    args: dict[str, str] = {}
    cmd_set: bool = False

    @property
    def chain(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    def env(self) -> dict[str, str]:
        """What `$VAR` expands to: the stage's ARGs, then its ENV (ENV wins, as in Docker)."""
        out = dict(self.args)
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out


class Stage(Record):
    index: int
    name: str | None
    base: Instruction
    instructions: list[Instruction]


def _key(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _now_iso(timestamp: int | None) -> str:
    when = datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if timestamp is not None else f".{when.microsecond:06d}Z")


class Builder:
    def __init__(self, store: Store, opts: BuildOptions) -> None:
        self.store = store
        self.opts = opts
        self.out = opts.out or sys.stdout
        self.platform = platforms.parse(opts.platform) if opts.platform else platforms.host()
        self.created = _now_iso(opts.timestamp)
        self.step = 0
        self.total = 0
        self.cached = 0
        self.stages: list[Stage] = []
        self.done: dict[int, State] = {}
        self.global_args: dict[str, str] = {}
        self.predefined: dict[str, str] = {}
        self.declared: set[str] = set()  # every ARG name the recipe declares (build-args it does not are reported)
        self.cf: Containerfile | None = None
        self.context: contexts.Context | None = None
        self.escape = "\\"
        self.work: Path | None = None

    # -- entry point -----------------------------------------------------------------------------------------
    def build(self) -> BuildResult:
        self.work = Path(self.store.staging_dir("buildctx"))
        try:
            with gc.hold(self.store):
                self.context, text, name = contexts.load(self.opts.context, self.opts.file, self.work)
                self.cf = parse(text, _display_name(name, self.work))
                self.escape = self.cf.escape
                self._split_stages()
                target = self._target()
                needed = sorted(self._needed(target))
                self.total = sum(1 + len(self.stages[i].instructions) for i in needed)
                for index in needed:
                    self.done[index] = self._build_stage(self.stages[index])
                unused = sorted(set(self.opts.build_args) - self.declared - set(self.predefined) - _PROXY_ARGS)
                if unused:
                    self.say(f"[Warning] one or more build-args {unused} were not consumed")
                return self._commit(self.done[target.index])
        finally:
            self.store.discard(self.work)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- stages ----------------------------------------------------------------------------------------------
    def _split_stages(self) -> None:
        assert self.cf is not None
        host = platforms.host()
        predefined = {
            "TARGETPLATFORM": str(self.platform),
            "TARGETOS": self.platform.os,
            "TARGETARCH": self.platform.architecture,
            "TARGETVARIANT": self.platform.variant or "",
            "BUILDPLATFORM": str(host),
            "BUILDOS": host.os,
            "BUILDARCH": host.architecture,
            "BUILDVARIANT": host.variant or "",
        }
        self.predefined = predefined
        self.global_args = dict(predefined)
        current: Stage | None = None
        for ins in self.cf.instructions:
            if ins.keyword == "FROM":
                words = self._words(ins, self.global_args)
                name = None
                if len(words) == 3 and words[1].lower() == "as":
                    name = words[2].lower()
                    if not re.match(r"^[a-z][a-z0-9._-]*$", name):
                        raise ins.error(f"invalid stage name {words[2]!r}", hint="start with a letter: a-z 0-9 . _ -")
                    if any(s.name == name for s in self.stages):
                        raise ins.error(f"the stage name {name!r} is used twice")
                elif len(words) != 1:
                    raise ins.error("takes IMAGE [AS NAME]")
                current = Stage(len(self.stages), name, ins, [])
                self.stages.append(current)
            elif current is None:
                if ins.keyword != "ARG":
                    raise ins.error("only ARG may come before the first FROM", hint="start the recipe with FROM")
                for name, value in self._arg_pairs(ins, self.global_args):
                    self.declared.add(name)
                    if name in self.opts.build_args:
                        self.global_args[name] = self.opts.build_args[name]
                    elif value is not None:
                        self.global_args[name] = value
                    else:
                        self.global_args.setdefault(name, "")
            else:
                current.instructions.append(ins)
        if not self.stages:
            raise RecipeError(f"{self.cf.file}: the recipe has no FROM instruction", hint="start it with FROM IMAGE")

    def _target(self) -> Stage:
        if self.opts.target is None:
            return self.stages[-1]
        for stage in self.stages:
            if stage.name == self.opts.target.lower():
                return stage
        names = ", ".join(s.name for s in self.stages if s.name) or "none"
        raise NotFound(f"no stage named {self.opts.target!r} in the recipe", hint=f"stages: {names}")

    def _stage_ref(self, text: str, before: int) -> Stage | None:
        """The earlier stage `text` names (by name or index), or None when it names an image."""
        lowered = text.lower()
        for stage in self.stages[:before]:
            if stage.name == lowered:
                return stage
        if text.isdigit() and int(text) < before:
            return self.stages[int(text)]
        return None

    def _needed(self, target: Stage) -> set[int]:
        needed: set[int] = set()
        todo = [target]
        while todo:
            stage = todo.pop()
            if stage.index in needed:
                continue
            needed.add(stage.index)
            base = self._words(stage.base, self.global_args)[0]
            if (dep := self._stage_ref(base, stage.index)) is not None:
                todo.append(dep)
            for ins in stage.instructions:
                source = ins.flag("from") if ins.keyword == "COPY" else None
                if source is not None:
                    dep = self._stage_ref(self._expand(ins, source, self.global_args), stage.index)
                    if dep is not None:
                        todo.append(dep)
        return needed

    def _progress(self, ins: Instruction, stage: Stage) -> None:
        self.step += 1
        label = f"[{stage.name}] " if stage.name else ""
        self.say(f"STEP {self.step}/{self.total}: {label}{ins.original}")

    def _build_stage(self, stage: Stage) -> State:
        self._progress(stage.base, stage)
        state = self._from(stage)
        for trigger in state.config.pop("OnBuild", None) or []:
            try:
                inner = parse(trigger, f"{stage.base.file} (ONBUILD of the base image)").instructions
            except RecipeError as e:
                raise stage.base.error(f"the base image's ONBUILD trigger {trigger!r} is invalid: {e}") from None
            for ins in inner:
                ins.line = stage.base.line
                self.say(f"--> ONBUILD {ins.original}")
                self._dispatch(state, ins, stage)
        for ins in stage.instructions:
            self._progress(ins, stage)
            self._dispatch(state, ins, stage)
        return state

    # -- FROM ------------------------------------------------------------------------------------------------
    def _from(self, stage: Stage) -> State:
        ins = stage.base
        name = self._words(ins, self.global_args)[0]
        platform_flag = ins.flag("platform")
        want = platforms.parse(self._expand(ins, platform_flag, self.global_args)) if platform_flag else self.platform
        dep = self._stage_ref(name, stage.index)
        if dep is not None:
            parent = self.done[dep.index]
            return State(
                list(parent.layers),
                json.loads(json.dumps(parent.config)),
                dict(parent.image),
                list(parent.history),
                _key("stage", parent.key),
            )
        image = {"architecture": want.architecture, "os": want.os} | ({"variant": want.variant} if want.variant else {})
        if name.lower() == "scratch":
            return State([], {"Env": [DEFAULT_PATH]}, image, [], _key("scratch", str(want)))
        record = self._image(ins, name, want)
        config = self.store.images.config(record)
        have = platforms.Platform(config.get("os") or "linux", config.get("architecture") or "", config.get("variant"))
        if have.architecture and not platforms.matches(want, have):
            raise ins.error(
                f"image {name} is for {have}, not {want}", hint="pull the right platform, or give FROM --platform"
            )
        image = {k: config[k] for k in ("architecture", "os", "variant") if config.get(k)} or image
        return State(
            list(record.layers),
            json.loads(json.dumps(config.get("config") or {})),
            image,
            list(config.get("history") or []),
            _key("image", record.id),
        )

    def _image(self, ins: Instruction, name: str, want: platforms.Platform) -> ImageRecord:
        """An image from the store, pulled first when it is not there."""
        try:
            return self.store.images.resolve(name)
        except InvalidReference as e:
            raise ins.error(str(e)) from None
        except NotFound:
            pass
        from minibuild.pull import pull

        self.say(f"--> pulling {name}")
        try:
            result = pull(self.store, name, platform=str(want))
        except MiniError as e:
            raise ins.error(f"cannot pull {name}: {e}", hint=getattr(e, "hint", None)) from None
        return self.store.images.get(result.image_id)

    # -- expansion helpers -----------------------------------------------------------------------------------
    def _expand(self, ins: Instruction, text: str, env: dict[str, str]) -> str:
        try:
            return expand(text, env, self.escape)
        except WordError as e:
            raise ins.error(str(e)) from None

    def _words(self, ins: Instruction, env: dict[str, str] | None) -> list[str]:
        try:
            return expand_words(ins.args, env, self.escape)
        except WordError as e:
            raise ins.error(str(e)) from None

    def _arg_pairs(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        try:
            raw = split_raw(ins.args, self.escape)
        except WordError as e:
            raise ins.error(str(e)) from None
        for word in raw:
            name, sep, value = word.partition("=")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ins.error(f"invalid ARG name {name!r}")
            out.append((name, self._expand(ins, value, env) if sep else None))
        return out

    def _pairs(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, str]]:
        """ENV/LABEL `K=V ...` (all expanded with the values before this instruction) or the old `K V` form."""
        try:
            raw = split_raw(ins.args, self.escape)
        except WordError as e:
            raise ins.error(str(e)) from None
        if raw and "=" not in raw[0]:
            parts = ins.args.split(None, 1)
            if len(parts) < 2:
                raise ins.error(f"{ins.keyword} {parts[0]} needs a value", hint=f"write {ins.keyword} KEY=VALUE")
            return [(self._expand(ins, parts[0], env), self._expand(ins, parts[1].strip(), env))]
        out = []
        for word in raw:
            if "=" not in word:
                raise ins.error(f"{word!r} is not KEY=VALUE")
            key, _, value = word.partition("=")
            key = self._expand(ins, key, env)
            if not key:
                raise ins.error(f"{word!r} has an empty key")
            out.append((key, self._expand(ins, value, env)))
        return out

    # -- dispatch --------------------------------------------------------------------------------------------
    def _dispatch(self, st: State, ins: Instruction, stage: Stage) -> None:
        handler: Callable[[State, Instruction, Stage], None] | None = getattr(self, f"_do_{ins.keyword.lower()}", None)
        if handler is None:  # pragma: no cover - the parser only lets known keywords through
            raise ins.error("is not supported")
        handler(st, ins, stage)

    def _config_step(self, st: State, ins: Instruction, value: object) -> None:
        st.key = _key(st.key, ins.keyword, value)
        st.history.append(self._history(ins.original, empty=True))

    def _history(self, created_by: str, *, empty: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"created": self.created, "created_by": created_by, "comment": "minibuild"}
        if empty:
            entry["empty_layer"] = True
        return entry

    def _do_arg(self, st: State, ins: Instruction, stage: Stage) -> None:
        env = st.env()
        for name, value in self._arg_pairs(ins, env):
            self.declared.add(name)
            if name in self.opts.build_args:
                st.args[name] = self.opts.build_args[name]
            elif value is not None:
                st.args[name] = value
            elif name in self.global_args:
                st.args[name] = self.global_args[name]
            else:
                st.args.setdefault(name, "")
        self._config_step(st, ins, sorted(st.args.items()))

    def _do_env(self, st: State, ins: Instruction, stage: Stage) -> None:
        pairs = self._pairs(ins, st.env())
        env = list(st.config.get("Env") or [])
        for key, value in pairs:
            env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        st.config["Env"] = env
        self._config_step(st, ins, pairs)

    def _do_label(self, st: State, ins: Instruction, stage: Stage) -> None:
        pairs = self._pairs(ins, st.env())
        st.config["Labels"] = {**(st.config.get("Labels") or {}), **dict(pairs)}
        self._config_step(st, ins, pairs)

    def _do_maintainer(self, st: State, ins: Instruction, stage: Stage) -> None:
        st.image["author"] = ins.args
        self._config_step(st, ins, ins.args)

    def _do_expose(self, st: State, ins: Instruction, stage: Stage) -> None:
        ports = dict(st.config.get("ExposedPorts") or {})
        for word in self._words(ins, st.env()):
            number, _, proto = word.partition("/")
            proto = proto.lower() or "tcp"
            low, _, high = number.partition("-")
            if not low.isdigit() or (high and not high.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {word!r}", hint="write PORT[/tcp|udp|sctp] or LOW-HIGH[/PROTO]")
            first, last = int(low), int(high or low)
            if not 0 < first <= last < 65536:
                raise ins.error(f"port {word!r} is out of range 1-65535")
            for port in range(first, last + 1):
                ports[f"{port}/{proto}"] = {}
        st.config["ExposedPorts"] = ports
        self._config_step(st, ins, sorted(ports))

    def _do_volume(self, st: State, ins: Instruction, stage: Stage) -> None:
        env = st.env()
        paths = [self._expand(ins, p, env) for p in ins.exec_form] if ins.exec_form else self._words(ins, env)
        if not paths or not all(paths):
            raise ins.error("needs at least one path")
        st.config["Volumes"] = {**(st.config.get("Volumes") or {}), **{p: {} for p in paths}}
        self._config_step(st, ins, paths)

    def _do_user(self, st: State, ins: Instruction, stage: Stage) -> None:
        user = self._expand(ins, ins.args, st.env())
        st.config["User"] = user
        self._config_step(st, ins, user)

    def _do_stopsignal(self, st: State, ins: Instruction, stage: Stage) -> None:
        sig = self._expand(ins, ins.args, st.env())
        st.config["StopSignal"] = sig
        self._config_step(st, ins, sig)

    def _shell_or_exec(self, st: State, ins: Instruction) -> list[str]:
        if ins.exec_form is not None:
            return list(ins.exec_form)
        return [*self._shell(st), ins.args]

    @staticmethod
    def _shell(st: State) -> list[str]:
        return list(st.config.get("Shell") or DEFAULT_SHELL)

    def _do_cmd(self, st: State, ins: Instruction, stage: Stage) -> None:
        st.config["Cmd"] = self._shell_or_exec(st, ins)
        st.cmd_set = True
        self._config_step(st, ins, st.config["Cmd"])

    def _do_entrypoint(self, st: State, ins: Instruction, stage: Stage) -> None:
        st.config["Entrypoint"] = self._shell_or_exec(st, ins)
        if not st.cmd_set:
            st.config.pop("Cmd", None)  # an inherited CMD does not apply to a new ENTRYPOINT, as in Docker
        self._config_step(st, ins, st.config["Entrypoint"])

    def _do_shell(self, st: State, ins: Instruction, stage: Stage) -> None:
        if ins.exec_form is None or not ins.exec_form:
            raise ins.error("takes the JSON form", hint='e.g. SHELL ["/bin/bash", "-c"]')
        st.config["Shell"] = list(ins.exec_form)
        self._config_step(st, ins, ins.exec_form)

    def _do_onbuild(self, st: State, ins: Instruction, stage: Stage) -> None:
        st.config["OnBuild"] = [*(st.config.get("OnBuild") or []), ins.args]
        self._config_step(st, ins, ins.args)

    def _do_healthcheck(self, st: State, ins: Instruction, stage: Stage) -> None:
        words = ins.args.split(None, 1)
        kind = words[0].upper()
        if kind == "NONE":
            if ins.flags:
                raise ins.error("HEALTHCHECK NONE takes no flags")
            check: dict[str, Any] = {"Test": ["NONE"]}
        elif kind == "CMD" and len(words) == 2:
            rest = words[1].strip()
            try:
                exec_form = json.loads(rest) if rest.startswith("[") else None
            except ValueError:
                exec_form = None
            if isinstance(exec_form, list) and all(isinstance(w, str) for w in exec_form):
                check = {"Test": ["CMD", *exec_form]}
            else:
                check = {"Test": ["CMD-SHELL", rest]}
            for flag, field_name in (
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start-period", "StartPeriod"),
                ("start-interval", "StartInterval"),
            ):
                if (value := ins.flag(flag)) is not None:
                    check[field_name] = self._duration(ins, flag, value)
            if (retries := ins.flag("retries")) is not None:
                if not retries.isdigit():
                    raise ins.error(f"--retries={retries} is not a whole number")
                check["Retries"] = int(retries)
        else:
            raise ins.error(
                "takes NONE or CMD COMMAND", hint="e.g. HEALTHCHECK --interval=30s CMD wget -q -O- localhost"
            )
        st.config["Healthcheck"] = check
        self._config_step(st, ins, check)

    @staticmethod
    def _duration(ins: Instruction, flag: str, value: str) -> int:
        if value == "0":
            return 0
        if not _DURATION.match(value):
            raise ins.error(f"--{flag}={value} is not a duration", hint="e.g. 30s, 1m30s, 500ms")
        return int(sum(float(n) * _UNIT_NS[u] for n, u in _DURATION_PART.findall(value)))

    # -- filesystem steps ------------------------------------------------------------------------------------
    def _fs_step(
        self,
        st: State,
        ins: Instruction,
        key_parts: object,
        change: Callable[[Path, Path], None],
        created_by: str,
    ) -> None:
        """Run `change(rootfs, bundle_dir)` on a fresh overlay of the stage, or take its result from the cache."""
        key = _key(st.key, ins.keyword, key_parts, self.opts.compression, self.opts.timestamp)
        cached = None if self.opts.no_cache else self.store.buildcache.get(key)
        if cached is not None:
            self.cached += 1
            self.say("--> CACHED")
            layer = cached if isinstance(cached, LayerRef) else None
        else:
            layer = self._make_layer(st, ins, change)
            self.store.buildcache.put(key, layer)
        if layer is not None:
            st.layers.append(layer)
        st.history.append(self._history(created_by, empty=layer is None))
        st.key = key

    def _make_layer(self, st: State, ins: Instruction, change: Callable[[Path, Path], None]) -> LayerRef | None:
        if os.geteuid() != 0:
            raise BuildError(
                f"{ins.file}:{ins.line}: {ins.keyword}: a filesystem step needs root (overlay mounts, the runtime)",
                hint="run minibuild build as root; rootless builds are not supported",
            )
        work = Path(self.store.staging_dir("build"))
        try:
            upper, scratch, mnt, empty = (work / n for n in ("upper", "work", "rootfs", "empty"))
            for d in (upper, scratch, mnt, empty):
                d.mkdir()
            lowers = [self.store.layers.fs(layer.chain_id) for layer in reversed(st.layers)] or [empty]
            overlay.mount(mnt, lowers, upper, scratch, volatile=True, options=_OVERLAY_OPTIONS)
            try:
                change(mnt, work)
            except OSError as e:
                raise ins.error(f"{e.strerror or e}{': ' + e.filename if e.filename else ''}") from None
            finally:
                overlay.unmount(mnt, lazy=True)
            if layerdiff.is_empty(upper):
                return None
            blob = layerdiff.write_layer(
                self.store, upper, compression=self.opts.compression, timestamp=self.opts.timestamp
            )
            info = layerdiff.adopt_upper(self.store, upper, st.chain, blob.diff_id, blob.content_size)
            return LayerRef(
                diff_id=blob.diff_id, chain_id=info.chain_id, digest=blob.digest, media_type=blob.media_type,
                size=blob.size,
            )  # fmt: skip
        finally:
            self.store.discard(work)

    def _workdir_of(self, st: State) -> str:
        return st.config.get("WorkingDir") or "/"

    def _do_workdir(self, st: State, ins: Instruction, stage: Stage) -> None:
        path = self._expand(ins, ins.args, st.env())
        path = posixpath.normpath(posixpath.join(self._workdir_of(st), path))
        st.config["WorkingDir"] = path

        def change(mnt: Path, _work: Path) -> None:
            with rootfs.opened(str(mnt)) as root:
                os.close(rootfs.makedirs(root, path))

        self._fs_step(st, ins, path, change, f"WORKDIR {path}")

    # -- RUN -------------------------------------------------------------------------------------------------
    def _do_run(self, st: State, ins: Instruction, stage: Stage) -> None:
        for unsupported in ("mount", "security"):
            if ins.flag(unsupported) is not None:
                raise ins.error(f"RUN --{unsupported} is not supported by minibuild", hint="leave the flag out")
        network = ins.flag("network") or self.opts.network
        if network == "default":
            network = self.opts.network
        if network not in ("none", "host"):
            raise ins.error(f"unknown network {network!r}", hint="RUN --network takes none, host or default")
        script_file: tuple[str, str] | None = None
        if ins.exec_form is not None:
            argv = list(ins.exec_form)
        elif ins.heredocs and re.fullmatch(r"<<-?[\"']?[A-Za-z0-9_.-]+[\"']?", ins.args.strip()):
            body = ins.heredocs[0].content
            if body.startswith("#!"):  # a script with its own interpreter: run as a file, as BuildKit does
                script_file = (ins.heredocs[0].name, body)
                argv = [f"/dev/pipes/{ins.heredocs[0].name}"]
            else:
                argv = [*self._shell(st), body]
        elif ins.heredocs:
            text = ins.args + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
            argv = [*self._shell(st), text]
        else:
            argv = [*self._shell(st), ins.args]
        env = [e for e in st.config.get("Env") or []]
        set_keys = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(st.args.items()) if k not in set_keys]
        key_env = list(env)  # proxy settings reach the step but not its cache key or history, as in Docker
        env += [f"{k}={v}" for k, v in sorted(self.opts.build_args.items()) if k in _PROXY_ARGS and k not in set_keys]
        user_spec = st.config.get("User") or ""
        workdir = self._workdir_of(st)
        arg_values = sorted(st.args.items())

        def change(mnt: Path, work: Path) -> None:
            self._run_container(ins, mnt, work, argv, env, user_spec, workdir, network, script_file)

        shown = " ".join(argv) if ins.exec_form is not None else ins.args
        created_by = "RUN " + (
            f"|{len(arg_values)} " + " ".join(f"{k}={v}" for k, v in arg_values) + " " if arg_values else ""
        )
        self._fs_step(st, ins, [argv, key_env, user_spec, workdir, arg_values], change, created_by + shown)

    def _run_container(
        self,
        ins: Instruction,
        mnt: Path,
        work: Path,
        argv: list[str],
        env: list[str],
        user_spec: str,
        workdir: str,
        network: str,
        script_file: tuple[str, str] | None,
    ) -> None:
        bundle = work / "bundle"
        bundle.mkdir()
        (bundle / "rootfs").symlink_to(mnt)
        user, missing = self._prepare_run_root(ins, mnt, user_spec, workdir)
        container_id = f"minibuild-{os.urandom(8).hex()}"
        spec = runtime.default_spec(bundle, container_id, network)
        if not any(e.startswith("PATH=") for e in env):
            env = [DEFAULT_PATH, *env]
        if not any(e.startswith("HOME=") for e in env):
            env = [*env, f"HOME={user.home or '/'}"]
        process = spec["process"]
        process.update(args=argv, env=env, cwd=workdir, terminal=False, noNewPrivileges=False)
        process["user"] = {"uid": user.uid, "gid": user.gid} | (
            {"additionalGids": list(user.groups)} if user.groups else {}
        )
        spec["hostname"] = "minibuild"
        spec["mounts"] += _run_mounts(work, network, script_file)
        status = self._run_bundle(bundle, container_id, spec, work)
        if status != 0:
            shown = " ".join(argv)
            raise BuildError(
                f"{ins.file}:{ins.line}: RUN: `{shown[:200]}` returned a non-zero code: {status}",
                hint="the step's output is above; the image was not made",
            )
        _drop_runtime_leftovers(work / "upper", missing, network)

    def _prepare_run_root(
        self, ins: Instruction, mnt: Path, user_spec: str, workdir: str
    ) -> tuple[rootfs.User, list[str]]:
        """The step's user (looked up in the image) and the mount points the runtime will have to make;
        the working directory is created."""
        with rootfs.opened(str(mnt)) as root:
            missing = [t for t in _RUN_MOUNT_TARGETS if not rootfs.exists_in_root(root, t)]
            try:
                user = rootfs.lookup_user(root, user_spec) if user_spec else rootfs.User(0, 0, "/root")
            except LookupError as e:
                raise ins.error(f"USER {user_spec}: {e}") from None
            if not user_spec:
                try:
                    user = rootfs.lookup_user(root, "0")
                except LookupError:
                    user = rootfs.User(0, 0, "/root")
            os.close(rootfs.makedirs(root, workdir))
        return user, missing

    def _run_bundle(self, bundle: Path, container_id: str, spec: dict[str, Any], work: Path) -> int:
        """Run the step's bundle; its exit status. Quiet builds show a failed step's output (its end), nothing else."""
        if not self.opts.quiet:
            return runtime.run(bundle, container_id, spec)
        with open(work / "run.log", "w+b") as log:
            status = runtime.run(bundle, container_id, spec, output=log)
            if status != 0:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                sys.stderr.write(log.read().decode("utf-8", "replace"))
        return status

    # -- COPY / ADD ------------------------------------------------------------------------------------------
    def _copy_args(self, st: State, ins: Instruction) -> tuple[list[str], str]:
        env = st.env()
        if ins.exec_form is not None:
            words = [self._expand(ins, w, env) for w in ins.exec_form]
        else:
            try:
                raw = split_raw(ins.args, self.escape)
            except WordError as e:
                raise ins.error(str(e)) from None
            heredoc_words = {f"<<{'-' if h.chomp else ''}{q}{h.name}{q}" for h in ins.heredocs for q in ("", '"', "'")}
            words = [w if w in heredoc_words else self._expand(ins, w, env) for w in raw]
        if len(words) < 2:
            raise ins.error("needs at least one source and a destination", hint=f"{ins.keyword} SRC... DEST")
        dest = words[-1]
        if not dest.startswith("/"):
            dest = posixpath.join(self._workdir_of(st), dest) + ("/" if dest.endswith("/") or dest == "." else "")
        return words[:-1], dest

    def _chmod(self, ins: Instruction) -> int | None:
        value = ins.flag("chmod")
        if value is None:
            return None
        if not re.fullmatch(r"[0-7]{3,4}", value):
            raise ins.error(f"--chmod={value} is not an octal mode", hint="e.g. --chmod=0755")
        return int(value, 8)

    def _do_copy(self, st: State, ins: Instruction, stage: Stage) -> None:
        self._copy_or_add(st, ins, stage, add=False)

    def _do_add(self, st: State, ins: Instruction, stage: Stage) -> None:
        self._copy_or_add(st, ins, stage, add=True)

    def _copy_or_add(self, st: State, ins: Instruction, stage: Stage, *, add: bool) -> None:
        if ins.flag("parents") is not None or ins.flag("exclude") is not None or ins.flag("keep-git-dir") is not None:
            raise ins.error("--parents, --exclude and --keep-git-dir are not supported", hint="leave the flag out")
        sources, dest = self._copy_args(st, ins)
        env = st.env()
        chown = self._expand(ins, ins.flag("chown") or "", env) or None
        chmod = self._chmod(ins)
        source_from = ins.flag("from")
        from_root: tuple[str, list[LayerRef]] | None = None  # (key, layers) of another stage or image
        if source_from is not None:
            source_from = self._expand(ins, source_from, self.global_args | env)
            from_root = self._from_root(ins, source_from, stage)
        plan, key_sources = self._copy_plan(ins, sources, env, from_root, add=add)
        if ins.flag("checksum") and not any(kind == "url" for kind, _ in plan):
            raise ins.error("--checksum is only for URL sources")
        if len(plan) > 1 and not dest.endswith("/"):
            raise ins.error(f"with more than one source, the destination {dest!r} must be a directory ending in /")

        def change(mnt: Path, work: Path) -> None:
            copy = _Copy(plan, dest, chown, chmod, add, from_root, source_from)
            self._apply_copy(ins, copy, mnt, work)

        key = [key_sources, dest, chown, chmod, add]
        self._fs_step(st, ins, key, change, ins.original)

    def _from_root(self, ins: Instruction, source_from: str, stage: Stage) -> tuple[str, list[LayerRef]]:
        """COPY --from: the (cache key, layers) of an earlier stage, or else of an image."""
        dep = self._stage_ref(source_from, stage.index)
        if dep is not None:
            from_state = self.done[dep.index]
            return from_state.key, from_state.layers
        record = self._image(ins, source_from, self.platform)
        return _key("image", record.id), list(record.layers)

    def _copy_plan(
        self,
        ins: Instruction,
        sources: list[str],
        env: dict[str, str],
        from_root: tuple[str, list[LayerRef]] | None,
        *,
        add: bool,
    ) -> tuple[list[tuple[str, Any]], list[object]]:
        """What to copy, as ("heredoc", (name, content)) | ("url", (url, checksum)) | ("path", pattern), and what
        of each source goes into the step's cache key (a context path by the checksum of what it matches)."""
        assert self.context is not None
        ctx = self.context
        heredocs = {h.name: h for h in ins.heredocs}
        plan: list[tuple[str, Any]] = []
        key_sources: list[object] = []
        for src in sources:
            name = re.sub(r"^<<-?[\"']?|[\"']?$", "", src) if src.startswith("<<") else None
            if name is not None and name in heredocs:
                doc = heredocs[name]
                content = expand_vars(doc.content, env) if doc.expand else doc.content
                plan.append(("heredoc", (name, content)))
                key_sources.append(["heredoc", name, content])
            elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src) or src.startswith("git@"):
                checksum = _url_checksum(ins, src, add)
                plan.append(("url", (src, checksum)))
                key_sources.append(["url", src, checksum])
            elif from_root is not None:
                plan.append(("path", src))
                key_sources.append(["from", from_root[0], src])
            else:
                try:
                    paths = contexts.resolve_sources(ctx.root, src, ctx.skip)
                except BuildError as e:
                    raise ins.error(str(e), hint="is it in the build context, and not in .dockerignore?") from None
                plan.append(("path", src))
                key_sources.append(["context", src, contexts.checksum(paths, ctx.skip)])
        return plan, key_sources

    def _apply_copy(self, ins: Instruction, copy: _Copy, mnt: Path, work: Path) -> None:
        """Place each planned source into the step's root at `mnt` (another stage or image mounted read-only)."""
        assert self.context is not None
        if copy.from_root is not None:
            src_root = self._mount_readonly(copy.from_root[1], work)
            skip = None
            what = f"stage or image {copy.source_from}"
        else:
            src_root = self.context.root
            skip = self.context.skip
            what = "build context"
        dest = copy.dest
        try:
            with rootfs.opened(str(mnt)) as root:
                try:
                    uid, gid = rootfs.chown_ids(root, copy.chown)
                except LookupError as e:
                    raise ins.error(f"--chown={copy.chown}: {e}") from None
                opts = rootfs.CopyOptions(uid=uid, gid=gid, chmod=copy.chmod, skip=skip)
                for kind, item in copy.plan:
                    if kind == "heredoc":
                        self._place_bytes(ins, root, dest, item[0], item[1].encode(), opts)
                    elif kind == "url":
                        self._place_url(ins, root, dest, item[0], item[1], opts)
                    else:
                        try:
                            found = contexts.resolve_sources(src_root, item, skip, what)
                        except BuildError as e:
                            raise ins.error(str(e)) from None
                        many = len(copy.plan) > 1 or len(found) > 1
                        if many and not dest.endswith("/"):
                            raise ins.error(f"{item} matches several files: the destination must end in /")
                        for host, rel in found:
                            self._place_path(ins, root, dest, host, rel, opts, add=copy.add, directory=many)
        finally:
            if copy.from_root is not None:
                overlay.unmount(Path(src_root), lazy=True)

    def _mount_readonly(self, layers: list[LayerRef], work: Path) -> str:
        target = work / "from"
        target.mkdir()
        lowers = [self.store.layers.fs(layer.chain_id) for layer in reversed(layers)]
        if not lowers:
            empty = work / "from-empty"
            empty.mkdir()
            lowers = [empty]
        if len(lowers) == 1:
            overlay.mount(target, lowers)
        else:
            overlay.mount(target, lowers, options=_OVERLAY_OPTIONS)
        return str(target)

    def _dest_dir_and_name(self, root: rootfs.Root, dest: str, basename: str, directory: bool) -> tuple[str, str]:
        """Where a single file goes: into `dest` when it is (or must be) a directory, else as `dest` itself."""
        if directory or dest.endswith("/"):
            return dest, basename
        try:
            fd = root.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return posixpath.dirname(dest.rstrip("/")) or "/", posixpath.basename(dest.rstrip("/"))
        os.close(fd)
        return dest, basename  # an existing directory

    def _place_bytes(self, ins: Instruction, root: rootfs.Root, dest: str, name: str, data: bytes, opts) -> None:
        where, base = self._dest_dir_and_name(root, dest, name, False)
        dfd = rootfs.makedirs(root, where, opts.uid, opts.gid)
        try:
            mtime = (self.opts.timestamp or int(time.time())) * 10**9
            rootfs.write_file(dfd, base, data, opts, mode=0o644, mtime_ns=mtime)
        finally:
            os.close(dfd)

    def _place_path(
        self, ins: Instruction, root: rootfs.Root, dest: str, host: str, rel: str, opts, *, add: bool, directory: bool
    ) -> None:
        st = os.lstat(host)
        if stat_mod.S_ISDIR(st.st_mode):
            dfd = rootfs.makedirs(root, dest, opts.uid, opts.gid)
            try:
                rootfs.copy_tree_into(host, dfd, opts, rel)
            finally:
                os.close(dfd)
            return
        if add and stat_mod.S_ISREG(st.st_mode) and _is_archive(host):
            self._extract_archive(ins, root, dest, host)
            return
        where, base = self._dest_dir_and_name(root, dest, posixpath.basename(rel) or "file", directory)
        dfd = rootfs.makedirs(root, where, opts.uid, opts.gid)
        try:
            rootfs.copy_file(host, st, dfd, base, opts)
        finally:
            os.close(dfd)

    def _extract_archive(self, ins: Instruction, root: rootfs.Root, dest: str, host: str) -> None:
        """ADD of a local tar: through the store's unpacker (its limits and path checks), then copied into place."""
        from minicache.unpack import unpack_layer

        with _decompressed(host) as stream:
            try:
                info = unpack_layer(self.store, stream)
            except MiniError as e:
                raise ins.error(f"{os.path.basename(host)}: {e}") from None
        dfd = rootfs.makedirs(root, dest)
        try:
            rootfs.copy_tree_into(
                str(self.store.layers.fs(info.chain_id)), dfd, rootfs.CopyOptions(skip_whiteouts=True, keep_owner=True)
            )
        finally:
            os.close(dfd)

    def _place_url(self, ins: Instruction, root: rootfs.Root, dest: str, url: str, checksum: str, opts) -> None:
        import requests
        from minicache.digest import Verifier

        verifier = Verifier(checksum)
        chunks = []
        try:
            with requests.get(url, stream=True, timeout=30) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    verifier.update(chunk)
                    chunks.append(chunk)
        except requests.RequestException as e:
            raise ins.error(f"cannot fetch {url}: {e}") from None
        try:
            verifier.check(url)
        except MiniError as e:
            raise ins.error(str(e)) from None
        name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "index.html"
        self._place_bytes(ins, root, dest, name, b"".join(chunks), opts)

    # -- the image -------------------------------------------------------------------------------------------
    def _commit(self, st: State) -> BuildResult:
        names = [self.store.images.normalize(t) for t in self.opts.tags]
        image_key = _key("image", st.key, self.opts.labels, self.opts.timestamp, self.opts.compression)
        if not self.opts.no_cache and (image_id := self.store.buildcache.get_image(image_key)):
            record = self.store.images.get(image_id)  # every step was cached: the same image, as in Docker
            refs = self.store.images.refs()
            if any(refs.get(name) != record.id for name in names):  # already published and named: no write
                self.store.images.put(record, names)
        else:
            record = self._new_image(st)
            self.store.images.put(record, names)
            self.store.buildcache.put_image(image_key, record.id)
        self.say(f"COMMIT {', '.join(names) if names else ''}".rstrip())
        self.say(f"--> {record.short_id}")
        self.say(record.id)
        return BuildResult(record.id, names, self.step, self.cached, record.manifest or "")

    def _new_image(self, st: State) -> ImageRecord:
        layers = [
            newimage.with_blob(self.store, layer, compression=self.opts.compression, timestamp=self.opts.timestamp)
            for layer in st.layers
        ]
        config_obj = dict(st.config)
        if self.opts.labels:
            config_obj["Labels"] = {**(config_obj.get("Labels") or {}), **self.opts.labels}
        config_obj = {k: v for k, v in config_obj.items() if v not in (None, [], {})}
        image: dict[str, Any] = {"created": self.created, **st.image, "config": config_obj, "history": st.history}
        return newimage.store_image(self.store, image, layers, extra={"source": "build"})


def _display_name(path: str, work: Path) -> str:
    """The Containerfile's name in messages: relative to the current directory when below it."""
    if path.startswith(str(work)):
        return os.path.relpath(path, work / "context")
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _is_archive(path: str) -> bool:
    """A file ADD extracts: a tar, plain or gzip/bzip2/xz/zstd-compressed (told by content, as Docker does)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


class _Copy(Record):
    """What one COPY or ADD step places, worked out before its cache key is known."""

    plan: list[tuple[str, Any]]
    dest: str
    chown: str | None
    chmod: int | None
    add: bool
    from_root: tuple[str, list[LayerRef]] | None
    source_from: str | None


def _url_checksum(ins: Instruction, src: str, add: bool) -> str:
    """The --checksum of an ADD of a URL: only http(s), and only with a sha256 to check what arrives."""
    if not add:
        raise ins.error(f"COPY does not fetch URLs ({src})", hint="use ADD --checksum=sha256:... URL DEST")
    checksum = ins.flag("checksum")
    if not src.startswith(("http://", "https://")):
        raise ins.error(f"ADD of {src} is not supported: only http(s) URLs with --checksum")
    if not checksum:
        raise ins.error(
            f"ADD {src} fetches from the network, which builds may not have: refused without a checksum",
            hint="add --checksum=sha256:<hex of the file>, or download it into the context and COPY it",
        )
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", checksum):
        raise ins.error(f"--checksum={checksum} is not sha256:<64 hex digits>")
    return checksum


def _run_mounts(work: Path, network: str, script_file: tuple[str, str] | None) -> list[dict[str, Any]]:
    """Extra bind mounts of a RUN step: the host's resolver files on the host network, a heredoc script."""
    mounts = []
    if network == "host":
        for name in ("resolv.conf", "hosts"):
            if os.path.exists(f"/etc/{name}"):
                mounts.append(
                    {
                        "destination": f"/etc/{name}",
                        "type": "bind",
                        "source": f"/etc/{name}",
                        "options": ["rbind", "ro"],
                    }
                )
    if script_file is not None:
        name, body = script_file
        path = work / f"heredoc-{name}"
        path.write_text(body)
        path.chmod(0o755)
        mounts.append(
            {"destination": f"/dev/pipes/{name}", "type": "bind", "source": str(path), "options": ["rbind", "ro"]}
        )
    return mounts


def _drop_runtime_leftovers(upper: Path, missing: list[str], network: str) -> None:
    """Remove from a RUN step's change what the runtime made, not the step: empty mount points, and the
    empty resolver files bound over on the host network."""
    for target in missing:
        path = upper / target
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    if network == "host":
        for name in ("resolv.conf", "hosts"):
            path = upper / "etc" / name
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()


class _decompressed:
    """The tar inside `path`, decompressed if bzip2 or xz (the unpacker reads gzip and zstd itself)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self):
        with open(self.path, "rb") as f:
            head = f.read(6)
        if head.startswith(b"BZh"):
            import bz2

            self.f = bz2.open(self.path, "rb")
        elif head.startswith(b"\xfd7zXZ\x00"):
            import lzma

            self.f = lzma.open(self.path, "rb")
        else:
            self.f = open(self.path, "rb")
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def build(store: Store, opts: BuildOptions) -> BuildResult:
    """Build the recipe `opts` describes into `store`; returns the new image's ID and names."""
    if opts.timestamp is None and (epoch := os.environ.get("SOURCE_DATE_EPOCH")):
        if not epoch.isdigit():
            raise BuildError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
        opts.timestamp = int(epoch)
    if opts.compression not in layerdiff.COMPRESSIONS:
        raise BuildError(f"unknown compression {opts.compression!r}", hint="use gzip, zstd or none")
    if opts.network not in ("none", "host"):
        raise BuildError(f"unknown network {opts.network!r}", hint="builds take --network none or host")
    return Builder(store, opts).build()

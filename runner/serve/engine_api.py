"""The Docker Engine API subset (v1.41) that the docker CLI and the Docker SDK need, on the engine's library.

Every action is the library function the `minirun` command of the same name calls (minirun.engine's
lifecycle, steps, logs and usage). Starting a container is the one exception in form, not in
logic: it runs `minirun start`, because a container's monitor must be forked from a process without
threads, and this server runs its blocking work on a thread pool.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from minicache import events
from minicache.errors import MiniError, NotFound
from minirun.engine import lifecycle
from minirun.engine.containers import ACTIVE, RESTARTING, ContainerStore
from minirun.errors import ContainerStateError
from minirun.serve import documents
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from minicache.store import Store
    from minirun.engine.containers import Container
    from starlette.requests import Request

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_STREAM_IDS = {"stdout": 1, "stderr": 2}
NOT_IMPLEMENTED = "not implemented by minirun serve: {what}; use `minirun {hint}` on the host"


def store_of(request: Request) -> Store:
    return request.app.state.store


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def status_of(err: MiniError) -> int:
    from minicache.errors import Conflict, InvalidReference, InvalidSpec

    if isinstance(err, NotFound):
        return 404
    if isinstance(err, (Conflict, ContainerStateError)):
        return 409
    if isinstance(err, (InvalidSpec, InvalidReference)):
        return 400
    return 500


def mini_error(err: MiniError) -> JSONResponse:
    message = str(err)
    hint = getattr(err, "hint", None)
    return error(status_of(err), f"{message} ({hint})" if hint else message)


def flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    return value.lower() not in ("", "0", "false", "no")


def filters_of(request: Request) -> dict[str, list[str]]:
    """Docker's `filters` query parameter: {"key": ["v", ...]} or the older {"key": {"v": true}}."""
    raw = request.query_params.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("invalid filters: not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("invalid filters: not a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if not isinstance(values, list):
            raise ValueError(f"invalid filter {key!r}")
        out[str(key)] = [str(v) for v in values]
    return out


def container(request: Request) -> Container:
    return ContainerStore(store_of(request)).get(request.path_params["id"])


def minirun_command(store: Store, *args: str) -> None:
    """Run `minirun --root ... ARGS` (for actions that fork a container's monitor); MiniError on failure."""
    argv = [sys.executable, "-m", "minirun.cli.main", "--root", str(store.root), "--runroot", str(store.run_root)]
    argv += args
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        text = result.stderr.strip().splitlines()
        message = text[-1] if text else f"minirun {args[0]} failed"
        raise MiniError(message.removeprefix("minirun: ").removeprefix("error: "))


# -- the daemon -----------------------------------------------------------------------------------------------------
async def ping(request: Request) -> Response:
    headers = {"API-Version": documents.API_VERSION, "OSType": "linux", "Docker-Experimental": "false"}
    headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    return Response("" if request.method == "HEAD" else "OK", media_type="text/plain", headers=headers)


async def version(request: Request) -> Response:
    return JSONResponse(documents.version())


def _counts(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in ContainerStore(store).all():
        try:
            status = lifecycle.observe(c, patience=0).Status
        except NotFound:
            continue
        counts[status] = counts.get(status, 0) + 1
    return counts


def info(request: Request) -> Response:
    store = store_of(request)
    return JSONResponse(documents.info(store, _counts(store)))


def system_df(request: Request) -> Response:
    store = store_of(request)
    used: dict[str, int] = {}
    containers = []
    for c in ContainerStore(store).all():
        try:
            state = lifecycle.observe(c, patience=0)
            summary = documents.container_summary(c, state)
        except NotFound:
            continue
        summary.update(SizeRw=0, SizeRootFs=0)
        containers.append(summary)
        used[summary["ImageID"]] = used.get(summary["ImageID"], 0) + 1
    images = [{**documents.image_summary(store, r, used.get(r.id, 0)), "SharedSize": 0} for r in store.images.all()]
    layers_size = sum(i["Size"] for i in images)
    return JSONResponse(
        {"LayersSize": layers_size, "Images": images, "Containers": containers, "Volumes": [], "BuildCache": []}
    )


# -- containers: reading ------------------------------------------------------------------------------------------
def list_containers(request: Request) -> Response:
    try:
        filters = filters_of(request)
    except ValueError as e:
        return error(400, str(e))
    show_all = flag(request, "all") or "status" in filters
    limit = int(request.query_params.get("limit") or -1)
    now = time.time()
    rows = []
    for c in ContainerStore(store_of(request)).all():
        try:
            state = lifecycle.observe(c, patience=0)
            if not show_all and state.Status not in ("running", "paused", "restarting"):
                continue
            if filters and not documents.filter_matches(filters, c, state):
                continue
            rows.append(documents.container_summary(c, state, now))
        except NotFound:  # removed while we listed
            continue
        except MiniError as e:
            return mini_error(e)
        except re.error as e:  # a name filter is a regular expression
            return error(400, f"invalid name filter: {e}")
    rows.sort(key=lambda r: r["Created"], reverse=True)
    return JSONResponse(rows[:limit] if limit > 0 else rows)


def inspect_container(request: Request) -> Response:
    c = container(request)
    return JSONResponse(documents.inspect(c, lifecycle.observe(c)))


def top(request: Request) -> Response:
    from minirun.engine import usage

    c = container(request)
    ps_args = request.query_params.get("ps_args")
    lines = usage.processes(c, ps_args.split() if ps_args else None)
    titles = lines[0].split() if lines else []
    processes = [line.split(None, len(titles) - 1) for line in lines[1:]] if titles else []
    return JSONResponse({"Titles": titles, "Processes": processes})


def _frame(stream: str, data: bytes) -> bytes:
    return bytes((_STREAM_IDS.get(stream, 1), 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def logs(request: Request) -> Response:
    from minirun.cli.views import parse_time
    from minirun.engine import logs as logfile

    c = container(request)
    want = {s for s in ("stdout", "stderr") if flag(request, s)}
    if not want:
        return error(400, "you must choose at least one stream")
    tail_text = request.query_params.get("tail", "all")
    tail = None if tail_text in ("all", "", "-1") else int(tail_text) if tail_text.isdigit() else None
    since = float(request.query_params.get("since") or 0)
    until = float(request.query_params.get("until") or 0)
    timestamps = flag(request, "timestamps")
    follow = flag(request, "follow")
    raw = bool((c.record.get("Config") or {}).get("Tty"))

    def chunks() -> Iterator[bytes]:
        for batch in logfile.follow(c, tail=None if (since or until) else tail, keep_following=follow):
            out = []
            if since or until:  # the tail applies to what is left after the time window
                batch = [e for e in batch if _in_window(parse_time(e.get("time")), since, until)]
                batch = batch[-tail:] if tail is not None and not follow else batch
            for entry in batch:
                if entry.get("stream") not in want:
                    continue
                text = entry.get("log", "")
                if timestamps:
                    text = f"{entry.get('time', '')} {text}"
                data = text.encode("utf-8", "replace")
                out.append(data if raw else _frame(entry.get("stream", "stdout"), data))
            yield b"".join(out)

    return StreamingResponse(chunks(), media_type="application/vnd.docker.raw-stream" if raw else MULTIPLEXED)


def _in_window(at: float | None, since: float, until: float) -> bool:
    if at is None:
        return True
    return (not since or at >= since) and (not until or at <= until)


async def stats(request: Request) -> Response:
    from minirun.engine import usage

    c = await to_thread.run_sync(container, request)
    cgroup = await to_thread.run_sync(lifecycle.container_cgroup, c)  # found once for the whole stream
    stream = flag(request, "stream", True)
    one_shot = flag(request, "one-shot")

    def sample() -> documents.Sample:
        reading, pid = usage.reading(c, cgroup)
        return documents.Sample(reading, pid)

    if not stream:
        first = await to_thread.run_sync(sample)
        if one_shot:
            return JSONResponse(documents.stats(c, first, None))
        await asyncio.sleep(1.0)
        now = await to_thread.run_sync(sample)
        return JSONResponse(documents.stats(c, now, first))

    async def body() -> AsyncIterator[bytes]:
        before = None
        while True:
            now = await to_thread.run_sync(sample)
            yield json.dumps(documents.stats(c, now, before)).encode() + b"\n"
            before = now
            await asyncio.sleep(1.0)

    return StreamingResponse(body(), media_type="application/json")


# -- containers: acting ---------------------------------------------------------------------------------------------
def create(request_body: dict[str, Any], name: str | None, store: Store) -> str:
    from minirun.serve import create as creating

    return creating.create(store, request_body, name).id


async def create_container(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "the request body is not JSON")
    if not isinstance(body, dict):
        return error(400, "the request body must be a JSON object")
    if any(body.get(k) for k in ("AttachStdin", "AttachStdout", "AttachStderr")):
        what = "attached `docker run` (connection hijack)"
        return error(501, NOT_IMPLEMENTED.format(what=what, hint="run IMAGE CMD, or docker run -d"))
    name = request.query_params.get("name") or None
    try:
        container_id = await to_thread.run_sync(create, body, name, store_of(request))
    except NotFound as e:
        if "image" in str(e):
            return error(404, f"No such image: {body.get('Image')}")
        return mini_error(e)
    return JSONResponse({"Id": container_id, "Warnings": []}, status_code=201)


def start(request: Request) -> Response:
    c = container(request)
    if lifecycle.observe(c, patience=0).Status in ACTIVE:
        return Response(status_code=304)
    minirun_command(store_of(request), "start", c.id)
    return Response(status_code=204)


def _timeout(request: Request) -> int | None:
    value = request.query_params.get("t") or request.query_params.get("timeout")
    return int(value) if value not in (None, "") and value.lstrip("-").isdigit() else None


def stop(request: Request) -> Response:
    c = container(request)
    if lifecycle.observe(c, patience=0).Status not in (*ACTIVE, RESTARTING):
        return Response(status_code=304)
    lifecycle.stop(store_of(request), c, _timeout(request))
    return Response(status_code=204)


def restart(request: Request) -> Response:
    c = container(request)
    timeout = _timeout(request)
    minirun_command(store_of(request), "restart", *(("-t", str(timeout)) if timeout is not None else ()), c.id)
    return Response(status_code=204)


def kill(request: Request) -> Response:
    from minirun.engine.flags import parse_signal

    c = container(request)
    sig = parse_signal(request.query_params.get("signal") or "SIGKILL")
    lifecycle.kill(store_of(request), c, sig)
    return Response(status_code=204)


def pause(request: Request) -> Response:
    lifecycle.pause(store_of(request), container(request))
    return Response(status_code=204)


def unpause(request: Request) -> Response:
    lifecycle.unpause(store_of(request), container(request))
    return Response(status_code=204)


def remove(request: Request) -> Response:
    lifecycle.remove(store_of(request), container(request), force=flag(request, "force"))
    return Response(status_code=204)


async def wait(request: Request) -> Response:
    c = await to_thread.run_sync(container, request)
    condition = request.query_params.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        return error(400, f"invalid condition {condition!r}")

    async def body() -> AsyncIterator[bytes]:
        yield b""  # the headers go out now: the client knows the wait has begun
        code = await to_thread.run_sync(lifecycle.wait_exit, c)
        yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")


async def not_implemented(request: Request) -> Response:
    path = request.url.path
    if path.endswith("/attach") or path.endswith("/attach/ws"):
        what, hint = "attaching to a container (attached `docker run`)", "run IMAGE CMD (or docker run -d)"
    elif "/exec" in path:
        what, hint = "exec", "exec CONTAINER CMD"
    else:
        what, hint = f"{request.method} {path}", "--help"
    return error(501, NOT_IMPLEMENTED.format(what=what, hint=hint))


# -- images -----------------------------------------------------------------------------------------------------------
def list_images(request: Request) -> Response:
    store = store_of(request)
    return JSONResponse([documents.image_summary(store, r) for r in store.images.all()])


def inspect_image(request: Request) -> Response:
    from minicache import imageinfo

    store = store_of(request)
    doc = imageinfo.inspect(store, request.path_params["name"])
    doc.setdefault("ContainerConfig", {})
    doc.setdefault("DockerVersion", "")
    doc["VirtualSize"] = doc.get("Size", 0)
    return JSONResponse(doc)


# -- events -----------------------------------------------------------------------------------------------------------
def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        from minirun.cli.views import parse_time

        return parse_time(text)


async def events_stream(request: Request) -> Response:
    """`GET /events`: the stored events from `since`, then new ones as the CLIs append them, until `until`."""
    try:
        filters = filters_of(request)
    except ValueError as e:
        return error(400, str(e))
    store = store_of(request)
    since = _seconds(request.query_params.get("since"))
    until = _seconds(request.query_params.get("until"))

    def wanted(entry: dict[str, Any]) -> bool:
        at = int(entry.get("timeNano") or 0) / 1e9
        if since is not None and at < since:
            return False
        if until is not None and at > until:
            return False
        return documents.event_matches(filters, entry)

    async def body() -> AsyncIterator[bytes]:
        _, offset, inode = await to_thread.run_sync(events.read, store)
        if since is not None:
            past = await to_thread.run_sync(events.history, store)
            for entry in past:
                if wanted(entry):
                    yield json.dumps(documents.event(entry)).encode() + b"\n"
        yield b""
        path = events.path(store)
        size = offset
        while until is None or time.time() <= until:
            try:
                st = os.stat(path)
                changed = st.st_size != size or st.st_ino != inode
            except FileNotFoundError:
                changed = False
            if changed:
                fresh, offset, inode = await to_thread.run_sync(events.read, store, offset, inode)
                size = offset
                for entry in fresh:
                    if wanted(entry):
                        yield json.dumps(documents.event(entry)).encode() + b"\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(body(), media_type="application/json")


def routes() -> list[Route]:
    """The Engine API's routes (a `/v1.NN` prefix is taken off before routing)."""
    c = "/containers/{id}"
    return [
        Route("/_ping", ping, methods=["GET", "HEAD"]),
        Route("/version", version),
        Route("/info", info),
        Route("/system/df", system_df),
        Route("/containers/json", list_containers),
        Route("/containers/create", create_container, methods=["POST"]),
        Route(c + "/json", inspect_container),
        Route(c + "/top", top),
        Route(c + "/logs", logs),
        Route(c + "/stats", stats),
        Route(c + "/start", start, methods=["POST"]),
        Route(c + "/stop", stop, methods=["POST"]),
        Route(c + "/restart", restart, methods=["POST"]),
        Route(c + "/kill", kill, methods=["POST"]),
        Route(c + "/pause", pause, methods=["POST"]),
        Route(c + "/unpause", unpause, methods=["POST"]),
        Route(c + "/wait", wait, methods=["POST"]),
        Route(c, remove, methods=["DELETE"]),
        Route(c + "/attach", not_implemented, methods=["POST"]),
        Route(c + "/attach/ws", not_implemented, methods=["GET"]),
        Route(c + "/exec", not_implemented, methods=["POST"]),
        Route("/exec/{id}/start", not_implemented, methods=["POST"]),
        Route("/images/json", list_images),
        Route("/images/{name:path}/json", inspect_image),
        Route("/events", events_stream),
    ]

"""The dashboard: one page (static HTML, CSS and JS from the package), its JSON and its live feed.

The page never receives markup from the server: every name, label, command and log line travels as JSON
and is put into the page as text (textContent) by static/app.js. The Content-Security-Policy allows
scripts from this origin only, never inline, so even a mistake there could not run injected script.

Live data is one server-sent-events stream: a Sampler reads every container's counters once a second
(only while a page is watching) and keeps five minutes of CPU and memory per container for the charts.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from minicache import events
from minicache.errors import NotFound
from minirun.engine import lifecycle
from minirun.engine.containers import ACTIVE, ContainerStore
from minirun.serve import auth, documents
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from minicache.store import Store
    from minirun.cgroups import CgroupStats
    from minirun.engine.containers import Container
    from starlette.requests import Request

HISTORY = 300  # samples kept per container: five minutes at one a second
INTERVAL = 1.0
EVENTS_SHOWN = 50
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _static(name: str) -> str:
    return resources.files("minirun.serve").joinpath("static", name).read_text()


def _ports_text(settings: dict[str, Any]) -> str:
    parts = []
    for p in documents.port_list(settings):
        if p.get("PublicPort"):
            parts.append(f"{p['IP']}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}")
        else:
            parts.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(parts)


class Sampler:
    """Every container's state and use, read once a second while anyone watches; five minutes of history."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.previous: dict[str, CgroupStats] = {}
        self.history: dict[str, deque[tuple[float, float | None, int | None]]] = {}
        self.rows: list[dict[str, Any]] = []
        self.event_offset: int = 0
        self.event_inode: int | None = None
        self.new_events: list[dict[str, Any]] = []
        self.watchers = 0
        self.tick = 0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _row(self, container: Container, now: float) -> dict[str, Any]:
        from minirun.cgroups.stats import cpu_percent, host_memory
        from minirun.cli.views import parse_time, status_text
        from minirun.engine import networking, usage

        state = lifecycle.observe(container, patience=0)
        record = container.record
        active = state.Status in ACTIVE
        row: dict[str, Any] = {
            "id": container.id,
            "name": record.get("Name", ""),
            "image": record.get("ImageName") or record.get("Image", ""),
            "state": state.Status,
            "status": status_text(state, now),
            "created": record.get("Created"),
            "uptime": max(0.0, now - (parse_time(state.StartedAt) or now)) if active else None,
            "ports": _ports_text(networking.network_settings(self.store, container, active)) if active else "",
            "labels": documents.labels(record),
            "cpu": None,
            "memory": None,
            "memory_limit": None,
            "pids": None,
            "rx": None,
            "tx": None,
        }
        if active:
            reading, pid = usage.reading(container)
            if reading is not None:
                row["cpu"] = cpu_percent(self.previous.get(container.id), reading)
                row["memory"] = reading.memory_used
                row["memory_limit"] = reading.memory_limit or host_memory()
                row["pids"] = reading.pids
                self.previous[container.id] = reading
                net = usage.net_io(pid)
                if net is not None:
                    row["rx"], row["tx"] = net
        history = self.history.setdefault(container.id, deque(maxlen=HISTORY))
        history.append((now, row["cpu"], row["memory"]))
        return row

    def sample(self) -> None:
        """One reading of everything (blocking: run in a thread)."""
        now = time.time()
        rows = []
        seen = set()
        for container in ContainerStore(self.store).all():
            try:
                rows.append(self._row(container, now))
                seen.add(container.id)
            except NotFound:
                continue
        for gone in set(self.history) - seen:
            self.history.pop(gone, None)
            self.previous.pop(gone, None)
        rows.sort(key=lambda r: r.get("created") or "", reverse=True)
        self.rows = rows
        fresh, self.event_offset, self.event_inode = events.read(self.store, self.event_offset, self.event_inode)
        self.new_events = [documents.event(e) for e in fresh]

    async def run(self) -> None:
        _, self.event_offset, self.event_inode = await to_thread.run_sync(events.read, self.store)
        while self.watchers > 0:
            await to_thread.run_sync(self.sample)
            self.tick += 1
            self.changed.set()
            self.changed = asyncio.Event()
            await asyncio.sleep(INTERVAL)
        self.task = None

    def watch(self) -> None:
        self.watchers += 1
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def unwatch(self) -> None:
        self.watchers -= 1


# -- pages ------------------------------------------------------------------------------------------------------------
def _page(name: str, **values: str) -> HTMLResponse:
    text = _static(name)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return HTMLResponse(text, headers=SECURITY_HEADERS)


async def index(request: Request) -> Response:
    return _page("index.html", csrf=request.app.state.guard.csrf)


async def login_page(request: Request) -> Response:
    return _page("login.html", message="")


async def login(request: Request) -> Response:
    guard = request.app.state.guard
    token = auth.login_form_token(await request.body())
    if not guard.token_ok(token):
        response = _page("login.html", message="That token is not right.")
        response.status_code = 401
        return response
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    secure = request.url.scheme == "https"
    response.set_cookie(auth.COOKIE, guard.session, httponly=True, samesite="strict", secure=secure, path="/")
    return response


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    kinds = {"js": "text/javascript", "css": "text/css"}
    kind = kinds.get(name.rsplit(".", 1)[-1])
    if kind is None or "/" in name or name.startswith("."):
        return Response(status_code=404)
    try:
        text = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        return Response(status_code=404)
    return Response(text, media_type=kind, headers=SECURITY_HEADERS)


# -- data -------------------------------------------------------------------------------------------------------------
def _images(store: Store) -> list[dict[str, Any]]:
    return [documents.image_summary(store, r) for r in store.images.all()]


async def overview(request: Request) -> Response:
    sampler: Sampler = request.app.state.sampler
    store = request.app.state.store
    if not sampler.rows:
        await to_thread.run_sync(sampler.sample)
    history = await to_thread.run_sync(events.history, store)
    return JSONResponse(
        {
            "containers": sampler.rows,
            "images": await to_thread.run_sync(_images, store),
            "events": [documents.event(e) for e in history[-EVENTS_SHOWN:]],
        },
        headers=SECURITY_HEADERS,
    )


def container_detail(request: Request) -> Response:
    sampler: Sampler = request.app.state.sampler
    container = ContainerStore(request.app.state.store).get(request.path_params["id"])
    doc = documents.inspect(container, lifecycle.observe(container, patience=0))
    history = [{"t": t, "cpu": cpu, "memory": mem} for t, cpu, mem in sampler.history.get(container.id, ())]
    return JSONResponse({"inspect": doc, "history": history}, headers=SECURITY_HEADERS)


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def stream(request: Request) -> Response:
    """Server-sent events: `update` (every container, once a second) and `events` (what happened)."""
    sampler: Sampler = request.app.state.sampler
    store = request.app.state.store

    async def body() -> AsyncIterator[bytes]:
        sampler.watch()
        try:
            yield b"retry: 2000\n\n"
            while True:
                await sampler.changed.wait()
                yield _sse("update", {"containers": sampler.rows, "tick": sampler.tick})
                if sampler.new_events:
                    yield _sse("events", sampler.new_events)
                    if any(e["Type"] == "image" for e in sampler.new_events):
                        yield _sse("images", await to_thread.run_sync(_images, store))
        finally:
            sampler.unwatch()

    return StreamingResponse(body(), media_type="text/event-stream", headers=SECURITY_HEADERS)


async def log_stream(request: Request) -> Response:
    """The container's log as server-sent events (one `log` event per batch of entries), followed."""
    from minirun.engine import logs

    container = await to_thread.run_sync(ContainerStore(request.app.state.store).get, request.path_params["id"])
    batches = logs.follow(container, tail=200, keep_following=True)

    def next_batch() -> list[dict[str, Any]] | None:
        return next(batches, None)

    async def body() -> AsyncIterator[bytes]:
        while True:
            batch = await to_thread.run_sync(next_batch)
            if batch is None:
                yield b"event: end\ndata: {}\n\n"
                await asyncio.sleep(3600)  # keep the stream open: EventSource would reconnect and repeat the log
                return
            if batch:
                entries = [{"stream": e.get("stream"), "time": e.get("time"), "log": e.get("log")} for e in batch]
                yield _sse("log", entries)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SECURITY_HEADERS)


def routes() -> list[Route]:
    return [
        Route("/", index),
        Route(auth.LOGIN_PATH, login_page, methods=["GET"]),
        Route(auth.LOGIN_PATH, login, methods=["POST"]),
        Route("/static/{name}", static_file),
        Route("/api/overview", overview),
        Route("/api/stream", stream),
        Route("/api/containers/{id}", container_detail),
        Route("/api/containers/{id}/logs", log_stream),
    ]

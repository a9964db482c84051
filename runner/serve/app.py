"""The ASGI application: the Engine API and the dashboard behind the guard, one per listener."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from minicache.errors import MiniError
from minirun.serve import auth, dashboard, engine_api
from starlette.applications import Starlette

if TYPE_CHECKING:
    from minicache.store import Store
    from minirun.serve.auth import ASGIApp, Receive, Scope, Send
    from starlette.requests import Request
    from starlette.responses import Response

_VERSION_PREFIX = re.compile(r"^/v1\.\d+(?=/)")


class StripVersion:
    """Docker clients put the API version in front of every path (`/v1.41/containers/json`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            m = _VERSION_PREFIX.match(path)
            if m:
                scope = {**scope, "path": path[m.end() :], "raw_path": path[m.end() :].encode()}
        await self.app(scope, receive, send)


async def _mini_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MiniError)
    return engine_api.mini_error(exc)


async def _bad_value(request: Request, exc: Exception) -> Response:
    return engine_api.error(400, f"invalid request: {exc}")


async def _no_route(request: Request, exc: Exception) -> Response:
    """Docker's clients show the `message` of an error: say what is missing, not just "Not Found"."""
    status = getattr(exc, "status_code", 404)
    what = f"{request.method} {request.url.path}"
    return engine_api.error(status, f"{what} is not part of the API subset minirun serve answers")


def build(store: Store, guard: auth.Guard) -> Starlette:
    """The routes, shared by every listener (each wraps it in its own guard)."""
    app = Starlette(
        routes=[*engine_api.routes(), *dashboard.routes()],
        exception_handlers={MiniError: _mini_error, ValueError: _bad_value, 404: _no_route, 405: _no_route},
    )
    app.state.store = store
    app.state.guard = guard
    app.state.sampler = dashboard.Sampler(store)
    return app


def for_listener(app: Starlette, guard: auth.Guard, *, need_token: bool) -> ASGIApp:
    return StripVersion(auth.GuardMiddleware(app, guard, need_token=need_token))

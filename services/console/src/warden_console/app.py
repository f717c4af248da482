"""Wiring of the console: one lifespan owns the session store, the HTTP client to the
services, the single sign-on client (when an issuer is configured) and the sweeper that ends
expired sessions, and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from warden_common.web import ReadinessCheck, install_error_handlers, openapi_servers, ops_router

from warden_console.api import ConsoleState, build_router
from warden_console.oidc import Oidc
from warden_console.sessions import SessionStore
from warden_console.settings import Settings
from warden_console.sso import build_sso_router
from warden_console.upstream import SERVICE_NAMES, Upstreams

__all__ = ["create_app"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def create_app(settings: Settings) -> FastAPI:
    sessions = SessionStore(settings.session_ttl_s, settings.max_sessions)
    upstreams = Upstreams(settings.services, settings.upstream_timeout_s)
    mcp_url = settings.mcp_url or f"{settings.services.proxy}/mcp"
    oidc = None
    if settings.oidc.issuer:
        public = settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}"
        oidc = Oidc(settings.oidc, redirect_uri=f"{public.rstrip('/')}/login/oidc/callback", audience=mcp_url)
        if settings.admin_token is None:
            log.warning("console: single sign-on without WARDEN_CONSOLE_ADMIN_TOKEN: the issuer's admins are refused")
    state = ConsoleState(
        sessions, upstreams, settings.cookie_secure, mcp_url, oidc=oidc, admin_token=settings.admin_token
    )
    ready = {"up": False}

    async def started() -> str | None:
        return None if ready["up"] else "starting"

    def service_check(name: str) -> ReadinessCheck:
        async def check() -> str | None:
            # the console serves its pages (and says what is down) without any one service
            reason = await upstreams.health(name)
            return None if reason is None else f"degraded: {name} {reason}"

        return check

    checks: dict[str, ReadinessCheck] = {"console": started}
    checks.update({n: service_check(n) for n in SERVICE_NAMES})

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await state.revoke_try_keys(sessions.sweep())
            except Exception:  # noqa: BLE001 - top of the sweeper task: log, go on
                log.exception("console: session sweep failed")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        task = asyncio.create_task(sweeper(), name="console-sessions")
        ready["up"] = True
        try:
            yield {"console": state}
        finally:
            ready["up"] = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(state.revoke_try_keys(sessions.all()), timeout=5)
            await upstreams.aclose()
            if oidc is not None:
                await oidc.aclose()

    app = FastAPI(
        title="Warden console",
        version="0.1.0",
        description="The web UI: pages and a thin forwarding API over the four services.",
        lifespan=lifespan,
        servers=openapi_servers(settings.http),
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        resp = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith("/api/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    app.include_router(ops_router(checks))
    app.include_router(build_router())
    app.include_router(build_sso_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""The HTTP edge every service shares: health, readiness, metrics, error mapping, serving."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from warden_common.errors import Unauthorized, WardenError
from warden_common.openapi import document_errors
from warden_common.settings import HttpSettings
from warden_common.tracing import current_trace_id, inbound_http

__all__ = [
    "ReadinessCheck",
    "openapi_servers",
    "ADMIN_NAME_PATTERN",
    "admin_guard",
    "parse_admin_tokens",
    "install_error_handlers",
    "offline_docs",
    "ops_router",
    "serve_http",
]


def openapi_servers(http: HttpSettings) -> list[dict[str, str]] | None:
    """The OpenAPI `servers` entry: where people and generated clients reach this service
    (`HTTP__PUBLIC_URL`), when it is set."""
    return [{"url": http.public_url.rstrip("/")}] if http.public_url else None


log = logging.getLogger(__name__)
ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when fine, or a short reason when not ready; may raise (= not ready)."""


def ops_router(checks: dict[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                reason = await asyncio.wait_for(check(), timeout=3)
            except Exception as e:  # noqa: BLE001 - a failing check is a result, not a crash
                reason = f"failed: {type(e).__name__}"
            if reason is None:
                results[name] = "ok"
            else:
                results[name] = reason
                if not reason.startswith("degraded"):
                    ok = False
        return JSONResponse({"ready": ok, "checks": results}, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return router


ADMIN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def parse_admin_tokens(single: SecretStr, named: SecretStr | None) -> dict[str, bytes]:
    """Admin names by token: the single `ADMIN_TOKEN` is named `admin`; `ADMIN_TOKENS` adds
    named ones, `name:token,name:token`. Raises ValueError (naming the setting, never a token)
    when a name is malformed or repeated, a token is shorter than 16 characters or shared."""
    out: dict[str, bytes] = {"admin": single.get_secret_value().encode()}
    if named is None or not named.get_secret_value().strip():
        return out
    for n, item in enumerate(named.get_secret_value().split(","), start=1):
        name, sep, token = item.strip().partition(":")
        if not sep or not ADMIN_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"ADMIN_TOKENS entry {n}: write name:token (a name of 1-64 letters, digits, . _ @ -)")
        if name in out:
            raise ValueError(f"ADMIN_TOKENS: the name {name!r} is given twice (`admin` is ADMIN_TOKEN's)")
        if len(token) < 16:
            raise ValueError(f"ADMIN_TOKENS: the token of {name!r} is shorter than 16 characters")
        if token.encode() in out.values():
            raise ValueError(f"ADMIN_TOKENS: the token of {name!r} is also another admin's")
        out[name] = token.encode()
    return out


def admin_guard(token: SecretStr, named: SecretStr | None = None) -> Callable[[Request], Awaitable[str]]:
    """A FastAPI dependency: the admin API wants `Authorization: Bearer <admin token>`.

    Returns the admin's name for events and records: `admin` for `ADMIN_TOKEN`, else the name
    its `ADMIN_TOKENS` entry gives. The name comes from the token (a named token's header cannot
    claim another); only the root `ADMIN_TOKEN` may name the admin it acts for in `X-Warden-Actor`.
    Every token is compared, in constant time, whichever matches.
    """
    tokens = list(parse_admin_tokens(token, named).items())

    async def _guard(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        presented = value.strip().encode()
        who = None
        for name, expected in tokens:  # no early exit: the time taken says nothing about which
            if hmac.compare_digest(presented, expected) and who is None:
                who = name
        if scheme.lower() != "bearer" or who is None:
            raise Unauthorized("admin API: send Authorization: Bearer <admin token>")
        acting = request.headers.get("x-warden-actor")
        if who == "admin" and acting and ADMIN_NAME_PATTERN.fullmatch(acting):
            # only the deployment's root token (ADMIN_TOKEN, which the services share) may act
            # for a named admin: the proxy's /mcp/admin does so for an OIDC-signed-in admin.
            # A named token's holder cannot claim another name.
            return acting
        return who

    return _guard


class _TraceContext:
    """Pure ASGI: each HTTP request runs under the caller's `traceparent` trace (or a new one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            inbound_http(scope)
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI, openapi_extra: dict[tuple[str, str], list[int]] | None = None) -> None:
    """The error mapping of every service's HTTP edge, and its trace context (an incoming
    W3C `traceparent` is honoured: the request's log lines, events and NATS requests carry
    its trace id). The OpenAPI document says so (`warden_common.openapi`)."""
    app.add_middleware(_TraceContext)
    document_errors(app, extra=openapi_extra)
    offline_docs(app)

    @app.exception_handler(WardenError)
    async def _warden(_: Request, e: WardenError) -> JSONResponse:
        body = {"error": {"code": str(e.code), "message": e.message, "details": e.details}}
        return JSONResponse(body, status_code=e.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # Never echo input values back: they may be secrets.
        fields = []
        for err in e.errors()[:10]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "(body)"
            fields.append({"field": loc, "message": err.get("msg", "invalid")})
        msg = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(
            {
                "error": {
                    "code": "invalid",
                    "message": msg,
                    "details": {"fields": fields},
                }
            },
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=e)
        msg = f"internal error; trace id {current_trace_id() or '-'}"
        return JSONResponse({"error": {"code": "internal", "message": msg}}, status_code=500)


DOCS_STATIC = "/docs/static"


def offline_docs(app: FastAPI) -> None:
    """`/docs` without a CDN: FastAPI's Swagger UI page loads its script, CSS and favicon from
    jsdelivr and tiangolo.com, which an air-gapped operator cannot reach.
    This replaces it with the same page whose assets come from this service, out of the
    `swagger-ui-bundle` package, under `/docs/static/`. ReDoc (CDN-only) is dropped.
    An app built with `docs_url=None` (the console) keeps no docs."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.routing import APIRoute
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    docs_url, redoc_url = app.docs_url, app.redoc_url
    drop = {u for u in (docs_url, redoc_url) if u}
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, (Route, APIRoute)) and r.path in drop)]
    app.docs_url = app.redoc_url = None
    if not docs_url or not app.openapi_url:
        return
    openapi_url, oauth2_redirect = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    title = f"{app.title} - API"

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon-32x32.png",
            oauth2_redirect_url=root + oauth2_redirect if oauth2_redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    app.add_route(docs_url, docs, include_in_schema=False)
    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")


def serve_http(app: FastAPI, http: HttpSettings, service: str) -> None:
    """Run the app until SIGINT/SIGTERM. A start-up failure prints one clear line, exit 1."""
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    if not server.started:
        print(
            f"warden-{service}: failed to start (see the log line above)",
            file=sys.stderr,
        )
        sys.exit(1)


def _ignore_sigpipe() -> None:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def run_service(service: str, env_prefix: str, settings_cls: Any, create_app: Callable[[Any], FastAPI]) -> None:
    """Every service's `__main__`: build settings from the environment, then serve.

    A bad setting prints one line naming the variable and exits 2, never a traceback.
    """
    from pydantic import ValidationError

    from warden_common.logging import setup_logging

    try:
        settings = settings_cls()
        app = create_app(settings)
    except ValidationError as e:
        err = e.errors()[0]
        field = "__".join(str(x) for x in err.get("loc", ())).upper() or "(settings)"
        print(f"warden-{service}: bad setting: {env_prefix}{field}: {err.get('msg', 'invalid')}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        print(f"warden-{service}: bad setting: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging(service, settings.log_level)
    serve_http(app, settings.http, service)

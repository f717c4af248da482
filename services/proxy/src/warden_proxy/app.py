"""Wiring of the proxy: one lifespan owns the pool, the bus, the upstream sessions and
the MCP session manager; shutdown is not-ready, stop MCP, drain NATS, close upstreams, pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route
from warden_common.contracts import Actor, EventRefs, EventType, Service
from warden_common.runtime import Runtime, settle_heap
from warden_common.tracing import inbound_http
from warden_common.web import admin_guard, install_error_handlers, openapi_servers, ops_router

from warden_proxy.admin_mcp import AdminApis, AdminAuth, AdminMcp
from warden_proxy.agents import AgentKeys
from warden_proxy.api import build_router
from warden_proxy.approvals import Approvals
from warden_proxy.breaker import Breakers
from warden_proxy.durable import DurableCalls
from warden_proxy.handlers import register_handlers
from warden_proxy.jwt_callers import jwt_callers_from
from warden_proxy.listing import Unlocks
from warden_proxy.mcp_endpoint import McpEndpoint
from warden_proxy.me_api import build_me_router
from warden_proxy.service import CallPipeline
from warden_proxy.settings import Settings
from warden_proxy.store import Store
from warden_proxy.stream_api import CallStreams, build_stream_router
from warden_proxy.upstream import UpstreamPool

__all__ = ["create_app"]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Asgi:
    """An ASGI endpoint resolved at request time (it is built in the lifespan)."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target()(scope, receive, send)


class _ProxyApp(FastAPI):
    """FastAPI, except that POST /mcp (the agents' hot path) goes straight to the MCP endpoint,
    past the HTTP API's middleware (error pages, body limit, exception handlers) that the
    endpoint does not use: it answers its own errors, and uvicorn logs a crash as a 500."""

    mcp_target: Callable[[], Any] = staticmethod(lambda: None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            inbound_http(scope)  # the caller's traceparent, for the calls this request starts
        if (
            scope["type"] == "http"
            and scope["path"] == "/mcp"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and (endpoint := self.mcp_target()) is not None
        ):
            scope["app"] = self
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(Service.proxy, settings, schema="proxy")
    # a light load's events go in fewer, larger batches: on two cores that measured less proxy
    # and audit CPU per call, and less added latency, at concurrency 1 (bench/README.md, proxy)
    runtime.bus.event_linger_s = settings.event_linger_s
    public = settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}"
    resource_url = public.rstrip("/") + "/mcp"

    async def tools_changed(connector: str) -> None:
        # the registry re-lists (and drift-checks) the connector's tools when it sees this
        runtime.bus.emit(
            runtime.bus.new_event(
                EventType.upstream_tools_changed,
                actor=Actor(kind="system", id="proxy"),
                refs=EventRefs(connector=connector),
            )
        )

    pool = UpstreamPool(
        allow_insecure=settings.allow_insecure_upstreams,
        on_tools_changed=tools_changed,
        max_result_items=settings.max_result_items,
        max_sessions=settings.upstream_sessions,
        idle_s=settings.upstream_idle_s,
    )
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_proxy.migrations")
        jwt = jwt_callers_from(settings, resource_url)  # bearer JWTs from an IdP, when configured
        exits = AsyncExitStack()
        try:
            keys = AgentKeys(Store(runtime.db.pool), runtime.bus, ttl_s=settings.cache_ttl_s, jwt=jwt)
            approvals = Approvals(runtime.db.pool, runtime.bus, settings.approval_timeout_s)
            pipeline = CallPipeline(
                runtime.bus,
                pool,
                approvals,
                cache_ttl_s=settings.cache_ttl_s,
                credential_skew_s=settings.credential_skew_s,
                breakers=Breakers(settings.breaker_threshold, settings.breaker_cooldown_s),
                consent_wait_s=settings.consent_wait_s,
                max_argument_bytes=settings.max_argument_bytes,
            )
            allowed = settings.allowed_hosts
            if not allowed and settings.http.host in ("127.0.0.1", "localhost", "::1"):
                # bound to loopback: refuse other Host headers (DNS rebinding) unless told otherwise
                allowed = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
            endpoint = McpEndpoint(
                pipeline,
                keys,
                resource_url=resource_url,
                allowed_hosts=allowed,
                unlocks=Unlocks(runtime.db.pool),
                retry_ms=settings.sse_retry_ms,
            )
            watch = asyncio.get_running_loop().create_task(endpoint.watch.run(), name="tools-list-watch")
            exits.push_async_callback(_cancel, watch)
            holder["endpoint"] = endpoint
            # Warden's own admin operations as MCP tools (admin token or admin-scoped JWT only)
            a = settings.admin_apis
            apis = AdminApis(
                {"connectors": a.connectors_url, "registry": a.registry_url, "audit": a.audit_url},
                settings.admin_token,
                timeout_s=a.timeout_s,
            )
            exits.push_async_callback(apis.aclose)
            holder["admin"] = AdminMcp(
                auth=AdminAuth(settings.admin_token, jwt, settings.admin_tokens),
                apis=apis,
                approvals=approvals,
                keys=keys,
                allowed_hosts=allowed,
                consent_wait_s=a.consent_wait_s,
            )
            act_for = frozenset(settings.act_for_users)
            await register_handlers(runtime.bus, pipeline, keys, approvals, act_for=act_for)
            durable = DurableCalls(
                runtime.bus, runtime.db.pool, pipeline, ack_wait_s=settings.durable_ack_wait_s, act_for=act_for
            )
            await durable.start()
            async with endpoint.manager.run(), holder["admin"].manager.run():
                settle_heap()
                runtime.ready = True
                yield {"keys": keys, "pipeline": pipeline, "approvals": approvals}
                runtime.ready = False
                await durable.stop()
        finally:
            await exits.aclose()
            await pool.close()
            if jwt is not None:
                await jwt.aclose()
            await runtime.stop()

    app = _ProxyApp(title="Warden proxy", version="0.1.0", lifespan=lifespan, servers=openapi_servers(settings.http))
    app.mcp_target = lambda: holder.get("endpoint")  # type: ignore[method-assign]
    install_error_handlers(
        app, {("post", "/v1/tools/{name}/call"): [413], ("post", "/v1/tools/{name}/call/stream"): [413]}
    )
    app.include_router(ops_router(runtime.checks()))
    app.include_router(
        build_router(
            admin_guard(settings.admin_token, settings.admin_tokens), resource_url, jwt_issuer=settings.jwt_issuer
        )
    )
    app.include_router(build_me_router())
    app.include_router(
        build_stream_router(CallStreams(resume_s=settings.stream_resume_s, retry_ms=settings.sse_retry_ms))
    )

    # exact routes (no /mcp -> /mcp/ redirect); the SSE message path is a mount below /sse
    app.router.routes.append(Route("/mcp", _Asgi(lambda: holder["endpoint"]), methods=["GET", "POST", "DELETE"]))
    app.router.routes.append(Route("/mcp/admin", _Asgi(lambda: holder["admin"]), methods=["GET", "POST", "DELETE"]))
    app.router.routes.append(Route("/sse", _Asgi(lambda: holder["endpoint"].sse_app), methods=["GET"]))
    app.mount("/sse", _Asgi(lambda: holder["endpoint"].sse_app))
    return app

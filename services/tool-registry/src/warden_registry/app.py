"""Wiring of the registry: one lifespan owns the pool, the bus and the background refreshes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.runtime import Runtime
from warden_common.web import admin_guard, install_error_handlers, openapi_servers, ops_router

from warden_registry.api import build_router
from warden_registry.handlers import RemovalConsumer, register_handlers
from warden_registry.refresher import Refresher
from warden_registry.searching import load_engine
from warden_registry.service import Registry
from warden_registry.settings import Settings
from warden_registry.store import Store

__all__ = ["create_app"]


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(Service.registry, settings, schema="registry")
    engine = load_engine(settings.search_engine, **settings.search_options())

    async def search_check() -> str | None:
        return None if engine.mode == "hybrid" else f"degraded: lexical search only ({engine.reason})"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_registry.migrations")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(runtime.stop)  # last out: drain NATS, close the pool
            registry = Registry(
                Store(runtime.db.pool),
                runtime.bus,
                engine,
                hold_on_drift=settings.hold_on_drift,
                description_cap=settings.description_cap,
                discovery_timeout_s=settings.discovery_timeout_s,
                discovery_page_size=settings.discovery_page_size,
            )
            refresher = Refresher(registry, settings.refresh_period_s)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            background = [
                group.create_task(refresher.run_requests(), name="registry-refresh-requests"),
                group.create_task(refresher.run_periodic(), name="registry-refresh-periodic"),
                group.create_task(registry.finder.run(registry.catalog), name="registry-search-indexer"),
                group.create_task(RemovalConsumer(runtime.bus, registry).run(), name="registry-connector-removals"),
            ]

            def stop_background() -> None:  # first out: background work ends, the group joins
                refresher.stop()
                for t in background:
                    t.cancel()

            stack.callback(stop_background)
            await register_handlers(runtime.bus, registry, refresher)
            runtime.ready = True
            try:
                yield {"registry": registry}
            finally:
                runtime.ready = False

    app = FastAPI(
        title="Warden tool registry",
        version="0.1.0",
        description="The tool catalog, behavior profiles and their grants.",
        lifespan=lifespan,
        servers=openapi_servers(settings.http),
    )
    install_error_handlers(app)
    app.include_router(ops_router(runtime.checks() | {"search": search_check}))
    app.include_router(build_router(admin_guard(settings.admin_token, settings.admin_tokens)))
    return app

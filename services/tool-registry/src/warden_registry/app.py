"""Wiring of the registry: one lifespan owns the pool, the bus and the periodic refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.errors import WardenError
from warden_common.runtime import Runtime
from warden_common.web import admin_guard, install_error_handlers, ops_router

from warden_registry.api import build_router
from warden_registry.handlers import register_handlers
from warden_registry.service import Registry
from warden_registry.settings import Settings
from warden_registry.store import Store

__all__ = ["create_app"]

log = logging.getLogger(__name__)


async def _periodic_refresh(reg: Registry, period_s: float) -> None:
    while True:
        await asyncio.sleep(period_s)
        for connector in await reg.store.connectors():
            try:
                await reg.refresh(connector, None)
            except WardenError as e:
                log.warning("periodic refresh of %s failed: %s", connector, e.message)


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(Service.registry, settings, schema="registry")
    searcher_state: dict[str, Registry] = {}

    async def search_check() -> str | None:
        reg = searcher_state.get("reg")
        if reg is None or reg.searcher.mode == "hybrid":
            return None
        return f"degraded: lexical search only ({reg.searcher.reason})"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_registry.migrations")
        background: set[asyncio.Task[None]] = set()
        try:
            reg = Registry(
                Store(runtime.db.pool),
                runtime.bus,
                hold_on_drift=settings.hold_on_drift,
                description_cap=settings.description_cap,
                timeout_s=settings.discovery_timeout_s,
            )
            searcher_state["reg"] = reg
            await register_handlers(runtime.bus, reg, background)
            if settings.refresh_period_s > 0:
                background.add(asyncio.create_task(_periodic_refresh(reg, settings.refresh_period_s)))
            runtime.ready = True
            yield {"registry": reg}
        finally:
            runtime.ready = False
            for t in list(background):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await runtime.stop()

    app = FastAPI(title="Warden tool registry", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(ops_router(runtime.checks() | {"search": search_check}))
    app.include_router(build_router(admin_guard(settings.admin_token)))
    return app

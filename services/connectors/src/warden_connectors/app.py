"""Wiring of the connectors service: one lifespan owns the pool, the bus and the sealer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.crypto import Sealer
from warden_common.runtime import Runtime
from warden_common.web import admin_guard, install_error_handlers, ops_router

from warden_connectors.api import build_router
from warden_connectors.handlers import register_handlers
from warden_connectors.service import ConnectorService
from warden_connectors.settings import Settings
from warden_connectors.store import Store

__all__ = ["create_app"]


def create_app(settings: Settings) -> FastAPI:
    sealer = Sealer(settings.crypto.load())
    runtime = Runtime.build(Service.connectors, settings, schema="connectors")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_connectors.migrations")
        try:
            svc = ConnectorService(
                Store(runtime.db.pool),
                sealer,
                runtime.bus,
                allow_insecure=settings.allow_insecure_urls,
                warning_days=settings.expiry_warning_days,
            )
            await register_handlers(runtime.bus, svc)
            runtime.ready = True
            yield {"connectors": svc}
        finally:
            await runtime.stop()

    app = FastAPI(title="Warden connectors", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(ops_router(runtime.checks()))
    app.include_router(build_router(admin_guard(settings.admin_token)))
    return app

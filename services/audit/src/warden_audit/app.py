"""Wiring of the audit service: one lifespan owns the pool, the bus and the ingest consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.runtime import Runtime
from warden_common.web import admin_guard, install_error_handlers, ops_router

from warden_audit.api import build_router
from warden_audit.handlers import Ingest
from warden_audit.service import Tail
from warden_audit.settings import Settings
from warden_audit.store import Store

__all__ = ["create_app"]


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(Service.audit, settings, schema="audit")
    holder: dict[str, Ingest] = {}

    async def ingest_check() -> str | None:
        ing = holder.get("ingest")
        if ing is None:
            return "starting"
        if not ing.db_ok:
            return "paused: Postgres unavailable, JetStream is holding the events"
        return f"degraded: {ing.lag} events behind" if ing.lag > 10_000 else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_audit.migrations")
        try:
            store = Store(runtime.db.pool)
            tail = Tail()
            ingest = Ingest(
                runtime.bus, store, tail, batch=settings.batch_size, dead_cap=settings.dead_letter_cap_bytes
            )
            await ingest.start()
            holder["ingest"] = ingest
            runtime.ready = True
            yield {"store": store, "tail": tail}
            runtime.ready = False
            await ingest.stop()
        finally:
            await runtime.stop()

    app = FastAPI(title="Warden audit", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(ops_router(runtime.checks() | {"ingest": ingest_check}))
    app.include_router(build_router(admin_guard(settings.admin_token)))
    return app

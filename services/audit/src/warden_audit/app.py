"""Wiring of the audit service: one lifespan owns the pool, the bus, the ingest writer
connection, the consumer and the retention loop, and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.runtime import Runtime, settle_heap
from warden_common.web import admin_guard, install_error_handlers, openapi_servers, ops_router

from warden_audit.api import AuditState, build_router
from warden_audit.checkpoints import Checkpoints
from warden_audit.handlers import Consumer
from warden_audit.maintenance import Maintenance, verify
from warden_audit.query import Tail
from warden_audit.redaction import Redactor
from warden_audit.service import Ingestor
from warden_audit.settings import Settings
from warden_audit.store import Store
from warden_audit.writer import Writer

__all__ = ["create_app"]

log = logging.getLogger(__name__)
SCHEMA = "audit"


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(Service.audit, settings, schema=SCHEMA)
    parts: dict[str, Any] = {}

    async def ingest_check() -> str | None:
        consumer: Consumer | None = parts.get("consumer")
        if consumer is None:
            return "starting"
        if not consumer.running:
            return "stopped"
        if not consumer.db_ok:
            return f"paused: Postgres unavailable ({consumer.db_error}); JetStream holds the events"
        if consumer.lag > settings.lag_degraded:
            return f"degraded: {consumer.lag} events behind"
        return None

    async def retention_loop(maintenance: Maintenance, store: Store, checkpoints: Checkpoints | None) -> None:
        while True:
            try:
                await maintenance.run_once()
                if checkpoints is not None:
                    # a full verify, sealed with a signed checkpoint when it holds
                    rep = await verify(store, None, None, checkpoints)
                    if not rep["ok"]:
                        log.error("audit: the chain does not verify: %s", rep["first_break"])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - top of the retention task: log, try next round
                log.exception("audit: retention round failed")
            await asyncio.sleep(settings.maintenance_interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start("warden_audit.migrations")
        writer: Writer | None = None
        retention: asyncio.Task[None] | None = None
        consumer: Consumer | None = None
        tail: Tail | None = None
        try:
            store = Store(runtime.db.pool)
            chain_key = settings.chain_key_bytes()
            checkpoints = (
                Checkpoints(settings.checkpoint_file, chain_key)
                if chain_key is not None and settings.checkpoint_file is not None
                else None
            )
            writer = Writer(
                settings.postgres.dsn.get_secret_value(),
                SCHEMA,
                timeout_s=settings.postgres.command_timeout_s,
                connections=settings.writers,
                signer=checkpoints,
            )
            tail = Tail(store, settings.tail_buffer)
            maintenance = Maintenance(store, settings.retention_days, settings.retention_batch)
            await maintenance.ensure_partitions()
            key = settings.redaction_hash_key.get_secret_value().encode() if settings.redaction_hash_key else None
            ingestor = Ingestor(
                writer,
                tail,
                Redactor(settings.redaction, key),
                data_cap=settings.event_data_cap_bytes,
                execution_cap=settings.execution_field_cap_bytes,
                dead_cap=settings.dead_letter_cap_bytes,
            )
            consumer = Consumer(
                runtime.bus,
                ingestor,
                batch=settings.batch_size,
                writers=settings.writers,
                linger_s=settings.linger_s,
                fetch_timeout_s=settings.fetch_timeout_s,
                ack_wait_s=settings.ack_wait_s,
                max_ack_pending=settings.max_ack_pending,
            )
            await consumer.start()
            parts["consumer"] = consumer
            retention = asyncio.create_task(retention_loop(maintenance, store, checkpoints), name="audit-retention")
            settle_heap()
            runtime.ready = True
            yield {"audit": AuditState(store=store, tail=tail, checkpoints=checkpoints)}
        finally:
            runtime.ready = False
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            if consumer is not None:
                await consumer.stop()
            if tail is not None:
                await tail.close()
            if writer is not None:
                await writer.close()
            await runtime.stop()

    app = FastAPI(
        title="Warden audit",
        version="0.1.0",
        description="Every event Warden published, stored once, chained by hash; query, export, tail, verify.",
        lifespan=lifespan,
        servers=openapi_servers(settings.http),
    )
    install_error_handlers(app)
    app.include_router(ops_router(runtime.checks() | {"ingest": ingest_check}))
    app.include_router(build_router(admin_guard(settings.admin_token, settings.admin_tokens)))
    return app

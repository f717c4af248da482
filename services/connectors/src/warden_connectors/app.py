"""Wiring of the connectors service: one lifespan owns the pool, the bus, the sealer and the
guarded HTTP client every OAuth request goes through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI
from warden_common.contracts import Service
from warden_common.crypto import Sealer
from warden_common.runtime import Runtime
from warden_common.web import admin_guard, install_error_handlers, openapi_servers, ops_router

from warden_connectors.api import build_router
from warden_connectors.consent import Consent, DbNonceStore
from warden_connectors.handlers import register_handlers
from warden_connectors.oauth import DiscoveryCache, GuardedHttp, StateCodec, UrlPolicy
from warden_connectors.service import ConnectorService
from warden_connectors.settings import Settings
from warden_connectors.store import Store

__all__ = ["create_app"]


def state_key(settings: Settings, keys: list[tuple[str, bytes]]) -> bytes:
    if settings.state_key is not None:
        raw = settings.state_key.get_secret_value().encode()
        if len(raw) < 32:
            raise ValueError("WARDEN_CONNECTORS_STATE_KEY must be at least 32 bytes")
        return raw
    return _derive_state_key(*keys[0])


def state_old_keys(settings: Settings, keys: list[tuple[str, bytes]]) -> list[bytes]:
    """State keys of the older KEKs: after a KEK rotation (new key first, old ones kept),
    consent links handed out before it still open; new ones are sealed with the new key."""
    if settings.state_key is not None:
        return []
    return [_derive_state_key(kid, kek) for kid, kek in keys[1:]]


def _derive_state_key(kid: str, kek: bytes) -> bytes:
    info = b"warden connectors oauth state|" + kid.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(kek)


def create_app(settings: Settings) -> FastAPI:
    keys = settings.crypto.load()
    sealer = Sealer(keys)
    skey = state_key(settings, keys)
    runtime = Runtime.build(Service.connectors, settings, schema="connectors")
    policy = (
        UrlPolicy.development(timeout_s=settings.oauth_timeout_s)
        if settings.allow_insecure_urls
        else UrlPolicy(timeout_s=settings.oauth_timeout_s)
    )

    cimd = settings.client_metadata()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            await runtime.start("warden_connectors.migrations")
            stack.push_async_callback(runtime.stop)  # last out: not ready, drain NATS, close the pool
            http = GuardedHttp(policy)
            stack.push_async_callback(http.aclose)
            store = Store(runtime.db.pool)
            consent = Consent(
                store,
                sealer,
                http,
                StateCodec(
                    skey, DbNonceStore(store), ttl_s=settings.state_ttl_s, old_keys=state_old_keys(settings, keys)
                ),
                redirect_uri=settings.redirect_uri(),
                discovery=DiscoveryCache(ttl_s=300),
                client_name=settings.client_name,
                cimd=cimd,
            )
            svc = ConnectorService(
                store,
                sealer,
                runtime.bus,
                allow_insecure=settings.allow_insecure_urls,
                warning_days=settings.expiry_warning_days,
                consent=consent,
                refresh_skew_s=settings.refresh_skew_s,
            )
            await register_handlers(runtime.bus, svc)
            watch = asyncio.create_task(svc.watch_attention(settings.attention_scan_s), name="attention-watch")
            stack.callback(watch.cancel)
            runtime.ready = True
            yield {"connectors": svc}
            runtime.ready = False

    app = FastAPI(title="Warden connectors", version="0.1.0", lifespan=lifespan, servers=openapi_servers(settings.http))
    # their query and cookies are read by hand; a browser bound elsewhere is a 403
    install_error_handlers(
        app, {("get", "/connect/callback"): [400, 403], ("get", "/connect/start/{nonce}"): [400, 403]}
    )
    app.include_router(ops_router(runtime.checks()))
    app.include_router(build_router(admin_guard(settings.admin_token, settings.admin_tokens)))
    if cimd is not None:
        document = cimd.model_dump(mode="json", exclude_none=True)

        @app.get(urlsplit(cimd.client_id).path, include_in_schema=False)
        async def client_metadata_document() -> dict[str, Any]:
            return document

    return app

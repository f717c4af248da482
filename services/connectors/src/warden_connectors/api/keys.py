"""Admin HTTP API for key-encryption keys: how many sealed records each key holds, and
re-wrapping them under the active key after a rotation (`warden connectors rewrap`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query

from warden_connectors.api.connectors import svc
from warden_connectors.rewrap import Rewrapper
from warden_connectors.service import ConnectorService

__all__ = ["build_keys_router"]


def build_keys_router(admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/v1/keys", tags=["keys"])
    Admin = Depends(admin)  # noqa: N806
    Svc = Depends(svc)  # noqa: N806

    @router.get("")
    async def key_status(_: str = Admin, s: ConnectorService = Svc) -> dict[str, Any]:
        """Sealed records per key id; `old_key_records` still use an older configured key,
        `unconfigured_key_records` a key that is no longer configured (they cannot be opened)."""
        return await Rewrapper(s.store.pool, s.sealer).status()

    @router.post("/rewrap")
    async def rewrap(
        batch: int = Query(default=500, ge=1, le=5000), _: str = Admin, s: ConnectorService = Svc
    ) -> dict[str, Any]:
        """Re-wrap up to `batch` records under the active key; call again until `done`.
        Resumable: each call takes what is still under an old key."""
        return await Rewrapper(s.store.pool, s.sealer).batch(batch)

    return router

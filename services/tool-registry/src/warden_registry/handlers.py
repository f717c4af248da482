"""NATS side of the registry: answer the proxy, follow peers' changes and upstream list changes."""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    VERSION,
    ResolvedTool,
    ResolveRequest,
    SearchRequest,
    SearchResult,
    VisibleRequest,
    VisibleTools,
)
from warden_common.errors import WardenError

from warden_registry.service import Registry

__all__ = ["register_handlers"]

log = logging.getLogger(__name__)


async def register_handlers(bus: Bus, reg: Registry, background: set[asyncio.Task[None]]) -> None:
    async def visible(req: VisibleRequest) -> VisibleTools:
        return await reg.visible(req.profile)

    async def resolve(req: ResolveRequest) -> ResolvedTool:
        return await reg.resolve(req.profile, req.tool)

    async def search(req: SearchRequest) -> SearchResult:
        return await reg.search(req.profile, req.query, req.k)

    await bus.serve(REGISTRY_VISIBLE, visible)
    await bus.serve(REGISTRY_RESOLVE, resolve)
    await bus.serve(REGISTRY_SEARCH, search)

    async def on_registry_event(_: Msg) -> None:
        reg.invalidate()

    async def refresh_later(connector: str) -> None:
        try:
            await reg.refresh(connector, None)
        except WardenError as e:
            log.warning("refresh of %s after list_changed failed: %s", connector, e.message)

    async def on_proxy_event(msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
        except ValueError:
            return
        connector = (doc.get("refs") or {}).get("connector")
        if doc.get("type") == "upstream.tools_changed" and connector:
            t = asyncio.create_task(refresh_later(connector))
            background.add(t)
            t.add_done_callback(background.discard)

    events = f"{bus.root}.{VERSION}.events"
    await bus.listen(f"{events}.registry.>", on_registry_event)
    await bus.listen(f"{events}.proxy.upstream.>", on_proxy_event)

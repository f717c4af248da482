"""NATS side of the registry: answer the proxy (visible, resolve, search), drop the snapshot
on any registry event from any replica, and refresh a connector when the proxy reports that
its upstream's tool list changed."""

from __future__ import annotations

import json
import logging
import time

from nats.aio.msg import Msg
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_CONNECTORS,
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    VERSION,
    EventType,
    ProfileConnectors,
    ProfileConnectorsRequest,
    ResolvedTool,
    ResolveRequest,
    SearchRequest,
    SearchResult,
    Service,
    VisibleRequest,
    VisibleTools,
)
from warden_common.metrics import SEARCH_DURATION

from warden_registry.errors import Unavailable
from warden_registry.refresher import Refresher
from warden_registry.service import Registry

__all__ = ["register_handlers"]

log = logging.getLogger(__name__)


async def register_handlers(bus: Bus, reg: Registry, refresher: Refresher) -> None:
    async def visible(req: VisibleRequest) -> VisibleTools:
        return await reg.visible(req.profile)

    async def resolve(req: ResolveRequest) -> ResolvedTool:
        return await reg.resolve(req.profile, req.tool)

    async def search(req: SearchRequest) -> SearchResult:
        started = time.perf_counter()
        try:
            res = await reg.search(req.profile, req.query, req.k)
        except BaseException:
            SEARCH_DURATION.labels("error").observe(time.perf_counter() - started)
            raise
        SEARCH_DURATION.labels(res.mode if res.tools else "none").observe(time.perf_counter() - started)
        return res

    async def connectors(req: ProfileConnectorsRequest) -> ProfileConnectors:
        return await reg.connectors_of(req.profile)

    await bus.serve(REGISTRY_VISIBLE, visible)
    await bus.serve(REGISTRY_CONNECTORS, connectors)
    await bus.serve(REGISTRY_RESOLVE, resolve)
    await bus.serve(REGISTRY_SEARCH, search)

    events = f"{bus.root}.{VERSION}.events"

    async def on_registry_event(msg: Msg) -> None:
        try:
            event_id = json.loads(msg.data).get("id")
        except (ValueError, AttributeError):
            event_id = None
        reg.on_event(event_id if isinstance(event_id, str) else None)

    async def on_tools_changed(msg: Msg) -> None:
        try:
            connector = (json.loads(msg.data).get("refs") or {}).get("connector")
        except (ValueError, AttributeError):
            log.warning("ignoring a malformed %s event", EventType.upstream_tools_changed)
            return
        if isinstance(connector, str):
            refresher.request(connector)

    # every replica drops its snapshot on every registry change made by another
    await bus.listen(f"{events}.{Service.registry}.>", on_registry_event)
    # one replica (a queue group) refreshes per list_changed report
    if bus.nc is None:
        raise Unavailable("not connected to NATS")
    await bus.nc.subscribe(
        f"{events}.{Service.proxy}.{EventType.upstream_tools_changed}",
        queue=f"warden-{Service.registry}-refresh",
        cb=on_tools_changed,
    )
    await bus.nc.flush(timeout=5)

"""NATS side of the registry: answer the proxy (visible, resolve, search), drop the snapshot
on any registry event from any replica, refresh a connector when the proxy reports that
its upstream's tool list changed, and unregister a removed connector's tools (a durable
JetStream consumer of `connector.removed`: a registry that was down catches up)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from warden_common.bus import Bus
from warden_common.contracts import (
    REGISTRY_CONNECTORS,
    REGISTRY_REMOVALS_CONSUMER,
    REGISTRY_RESOLVE,
    REGISTRY_SEARCH,
    REGISTRY_VISIBLE,
    VERSION,
    Event,
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
from warden_common.contracts.credentials import NAME_PATTERN
from warden_common.metrics import SEARCH_DURATION

from warden_registry.errors import Unavailable
from warden_registry.refresher import Refresher
from warden_registry.service import Registry

__all__ = ["RemovalConsumer", "register_handlers"]

log = logging.getLogger(__name__)
_NAME = re.compile(NAME_PATTERN)


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


class RemovalConsumer:
    """The durable consumer of `connector.removed` events: each removal unregisters that
    connector's tools and revokes the grants on them (`Registry.connector_removed`, which is
    idempotent, so a redelivery is harmless). Acked once stored; nak'd with a delay when the
    database fails; a malformed event is logged and terminated (redelivering cannot fix it).
    Run by the lifespan's task group; re-subscribes after a NATS or JetStream failure."""

    def __init__(self, bus: Bus, reg: Registry, *, retry_s: float = 2.0) -> None:
        self.bus = bus
        self.reg = reg
        self.retry_s = retry_s
        self.subject = f"{bus.root}.{VERSION}.events.{Service.connectors}.{EventType.connector_removed}"

    async def _subscribe(self) -> nats.js.JetStreamContext.PullSubscription:
        if self.bus.nc is None:
            raise Unavailable("not connected to NATS")
        js = self.bus.nc.jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_deliver=-1,
        )
        return await js.pull_subscribe(
            self.subject, durable=REGISTRY_REMOVALS_CONSUMER, stream=self.bus.events_stream, config=config
        )

    async def handle(self, msg: Msg) -> None:
        try:
            event = Event.model_validate_json(msg.data)
        except ValidationError:
            log.warning("ignoring a malformed %s event", EventType.connector_removed)
            await msg.term()
            return
        connector = event.refs.connector
        cid = event.data.get("connector_id") if isinstance(event.data, dict) else None
        if not isinstance(connector, str) or not _NAME.match(connector):
            log.warning("ignoring a %s event without a valid connector name", EventType.connector_removed)
            await msg.term()
            return
        try:
            await self.reg.connector_removed(
                connector,
                cid if isinstance(cid, str) and cid else None,
                event.time,
                removed_by=event.actor.id if event.actor is not None and event.actor.kind == "admin" else None,
            )
        except (asyncpg.PostgresError, OSError) as e:
            log.warning("removal of connector %s not applied yet (%s); retrying", connector, type(e).__name__)
            await msg.nak(delay=self.retry_s)
            return
        await msg.ack()

    async def run(self) -> None:
        while True:
            try:
                sub = await self._subscribe()
                while True:
                    try:
                        msgs = await sub.fetch(20, timeout=5)
                    except TimeoutError:
                        continue
                    for m in msgs:
                        await self.handle(m)
            except asyncio.CancelledError:
                raise
            except (nats.errors.Error, Unavailable) as e:
                log.warning("connector removals consumer: %s; subscribing again", type(e).__name__)
            except Exception:  # noqa: BLE001 - top of a background job: log it and keep consuming
                log.exception("connector removals consumer failed; subscribing again")
            await asyncio.sleep(self.retry_s)

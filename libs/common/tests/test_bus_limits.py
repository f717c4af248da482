"""The bus's size limits against a real NATS server (issue 16 item 0): an oversized event is
stored truncated and holds nothing back; one that cannot be stored is dead-lettered with its
reason; an answer or request over the limit is a typed `TooLarge` at once, not a timeout;
settings over the server's max_payload stop the start; the outbox's depth and age are metrics
and readiness fails while events are stuck."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig
from prometheus_client import REGISTRY
from pydantic import SecretStr
from support.infra import wait_for
from warden_common.bus import Bus
from warden_common.contracts import (
    CREDENTIALS_GET,
    Credential,
    CredentialRequest,
    Event,
    EventRefs,
    EventType,
    Service,
    events_stream_name,
    events_wildcard,
)
from warden_common.db import Database
from warden_common.errors import TooLarge
from warden_common.runtime import Runtime
from warden_common.settings import NatsSettings, PostgresSettings


async def _drop(nats_url: str, root: str) -> None:
    nc = await nats.connect(nats_url)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(events_stream_name(root))
    await nc.close()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    root = "t" + uuid.uuid4().hex[:10]
    b = Bus(NatsSettings(url=nats_url, root=root), Service.proxy, event_linger_s=0)
    await b.connect()
    await b.ensure_events_stream()
    yield b
    await b.close()
    await _drop(nats_url, root)


async def _stored(bus: Bus, n: int) -> list[Event]:
    js = bus._nc.jetstream()
    sub = await js.pull_subscribe(events_wildcard(bus.root), durable=None, stream=bus.events_stream)
    got: list[Event] = []
    async with asyncio.timeout(15):
        while len(got) < n:
            got += [Event.model_validate_json(m.data) for m in await sub.fetch(n - len(got), timeout=10)]
    return got


def _dead(reason: str) -> float:
    return REGISTRY.get_sample_value("warden_events_dead_lettered_total", {"service": "proxy", "reason": reason}) or 0


async def test_an_event_over_the_bus_limit_is_stored_truncated_and_the_next_ones_follow(bus: Bus) -> None:
    big = "x" * (3 * 1024 * 1024)  # three times the test server's max_payload
    refs = EventRefs(tool="nope", call_id="c" * 32)
    bus.emit_event(EventType.call_requested, actor=None, refs=refs, data={"arguments": {"blob": big}})
    for i in range(10):
        bus.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id=f"{i:032}"), data={"n": i})
    got = await _stored(bus, 11)
    blob = got[0].data["arguments"]["blob"]
    assert (blob["truncated"], blob["bytes"]) == (True, len(big))
    assert blob["sha256"] == hashlib.sha256(big.encode()).hexdigest()
    assert got[0].refs == refs
    assert [e.data["n"] for e in got[1:]] == list(range(10))


async def test_an_event_that_cannot_fit_is_dead_lettered_and_the_queue_moves_on(bus: Bus) -> None:
    before = _dead("too_large")
    # the refs alone are over the event limit: no truncation of `data` can save it
    lost = Event(type="call.requested", source=Service.proxy, refs=EventRefs(tool="t" * (2 * 1024 * 1024)))
    bus.emit(lost)
    bus.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id="d" * 32), data={"n": 1})
    dead, after = await _stored(bus, 2)
    assert dead.type == EventType.event_dead_lettered and dead.id == lost.id
    assert dead.data["reason"] == "too_large" and dead.data["event_type"] == "call.requested"
    assert dead.data["bytes"] > 2 * 1024 * 1024 and len(dead.data["sha256"]) == 64
    assert dead.refs.tool == "t" * 200
    assert after.data == {"n": 1}
    assert _dead("too_large") == before + 1


async def test_an_event_the_stream_refuses_as_too_large_is_dead_lettered(nats_url: str) -> None:
    root = "t" + uuid.uuid4().hex[:10]
    settings = NatsSettings(url=nats_url, root=root, event_max_bytes=128 * 1024, event_value_max_bytes=64 * 1024)
    b = Bus(settings, Service.proxy, event_linger_s=0)
    await b.connect()
    try:
        # a stream that takes smaller messages than the bus's event limit: JetStream says no
        cfg = StreamConfig(name=b.events_stream, subjects=[events_wildcard(root)], max_msg_size=16 * 1024)
        await b._nc.jetstream().add_stream(cfg)
        before = _dead("too_large")
        b.emit_event(EventType.call_completed, actor=None, refs=EventRefs(call_id="e" * 32), data={"r": "y" * 40_000})
        b.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id="f" * 32), data={"n": 2})
        got = {e.refs.call_id: e for e in await _stored(b, 2)}
        dead, after = got["e" * 32], got["f" * 32]
        assert dead.type == EventType.event_dead_lettered and dead.data["reason"] == "too_large"
        assert dead.data["event_type"] == "call.completed" and after.data == {"n": 2}
        assert _dead("too_large") == before + 1
    finally:
        await b.close()
        await _drop(nats_url, root)


async def test_an_answer_over_the_bus_limit_reaches_the_requester_as_too_large(bus: Bus, nats_url: str) -> None:
    async def handler(req: CredentialRequest) -> Credential:
        return Credential(connector=req.connector, url="https://x.test/mcp", headers={"X-Big": "h" * (2 << 20)})

    await bus.serve(CREDENTIALS_GET, handler)
    other = Bus(NatsSettings(url=nats_url, root=bus.root, request_timeout_s=30), Service.proxy)
    await other.connect()
    try:
        with pytest.raises(TooLarge) as e:
            await other.request(CREDENTIALS_GET, CredentialRequest(connector="c"))
        assert "over the bus limit" in e.value.message and "max_payload" in e.value.message
        assert e.value.details["size"] > 2 << 20 and e.value.details["limit"] == other.message_limit
        # a request over the limit is refused before it is sent
        with pytest.raises(TooLarge, match="the request on"):
            await other.request(CREDENTIALS_GET, CredentialRequest.model_construct(connector="c" * (2 << 20)))
    finally:
        await other.close()


async def test_a_message_limit_over_the_servers_max_payload_stops_the_start(nats_url: str) -> None:
    b = Bus(NatsSettings(url=nats_url, max_message_bytes=1024 * 1024 * 1024), Service.registry)
    with pytest.raises(ValueError, match=r"WARDEN_REGISTRY_NATS__MAX_MESSAGE_BYTES .* max_payload"):
        await b.connect()
    assert b.nc is None


async def test_outbox_depth_and_age_are_metrics_and_readiness_fails_while_events_are_stuck(nats_url: str) -> None:
    root = "t" + uuid.uuid4().hex[:10]
    # no events stream yet: every publish is answered "no responders", the event stays queued
    b = Bus(NatsSettings(url=nats_url, root=root, event_stall_s=0.2), Service.proxy, event_linger_s=0)
    await b.connect()
    try:
        assert await b.events_check() is None
        b.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id="a" * 32), data={})

        async def stuck() -> str | None:
            return await b.events_check()

        reason = await wait_for(stuck, timeout=10)
        assert "not reaching the stream" in reason and "NATS__EVENT_STALL_S" in reason
        # every service's /readyz runs it (a reason not starting with "degraded" is a 503)
        runtime = Runtime(Service.proxy, Database(PostgresSettings(dsn=SecretStr("postgresql://unused")), "x"), b)
        assert "not reaching the stream" in str(await runtime.checks()["events"]())
        assert REGISTRY.get_sample_value("warden_event_outbox_depth", {"service": "proxy"}) == 1
        assert (REGISTRY.get_sample_value("warden_event_outbox_oldest_age_seconds", {"service": "proxy"}) or 0) > 0.2
        await b.ensure_events_stream()
        async with asyncio.timeout(10):
            await b._outbox.join()
        assert await b.events_check() is None
        assert REGISTRY.get_sample_value("warden_event_outbox_depth", {"service": "proxy"}) == 0
        assert REGISTRY.get_sample_value("warden_event_outbox_oldest_age_seconds", {"service": "proxy"}) == 0
    finally:
        await b.close()
        await _drop(nats_url, root)

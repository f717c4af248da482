"""Events emitted while the NATS server restarts twice are all stored, each exactly once:
the outbox keeps what was not acknowledged and resends it; the stream drops the copies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from support.infra import RestartableNats, unique_root
from warden_common.bus import Bus
from warden_common.contracts import EventRefs, EventType, Service
from warden_common.settings import NatsSettings


async def test_events_survive_nats_restarts_exactly_once(tmp_path: Path) -> None:
    server = RestartableNats(tmp_path / "js")
    await server.start()
    bus = Bus(NatsSettings(url=server.url, root=unique_root()), Service.proxy, event_linger_s=0.005)
    try:
        await bus.connect()
        await bus.ensure_events_stream()
        n = 0

        async def emit_for(seconds: float) -> None:
            nonlocal n
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                for _ in range(20):
                    n += 1
                    bus.emit_event(EventType.call_requested, actor=None, refs=EventRefs(call_id=f"c{n}"))
                await asyncio.sleep(0.01)

        await emit_for(1.0)
        for _ in range(2):
            server.stop()
            await emit_for(0.7)  # emitted while the server is down
            await server.start()
            await emit_for(1.0)
        async with asyncio.timeout(60):
            await bus._outbox.join()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(bus.events_stream)
            assert info.state.messages == n
            sub = await js.pull_subscribe(
                f"{bus.root}.v1.events.>", stream=bus.events_stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
            )
            seen: set[str] = set()
            while len(seen) < n:
                for m in await sub.fetch(500, timeout=5):
                    seen.add(m.headers["Nats-Msg-Id"])
            assert len(seen) == n
        finally:
            await nc.close()
    finally:
        await bus.close()
        server.stop()

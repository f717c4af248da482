"""Live tail: Server-Sent Events of newly stored events matching the filters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from audit_support import Audit, event, wait_for
from warden_common.bus import Bus
from warden_common.contracts import EventRefs


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    async for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


async def test_tail_streams_a_live_event_matching_the_filters(audit: Audit, bus: Bus, tag: str) -> None:
    async with audit.client() as c:
        params = {"tool": f"notion_{tag}__*", "status": "error"}
        async with c.stream("GET", "/v1/tail", params=params) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            async with asyncio.timeout(10):
                while (await anext(lines)) != ": live":
                    pass
            # non-matching ones first: another tool, and the right tool with status ok
            await bus.publish_event_now(event("call.failed", refs=EventRefs(tool=f"github_{tag}__x"), status="error"))
            await bus.publish_event_now(event("call.completed", refs=EventRefs(tool=f"notion_{tag}__a"), status="ok"))
            want = event("call.failed", refs=EventRefs(tool=f"notion_{tag}__search"), status="error")
            await bus.publish_event_now(want)
            async with asyncio.timeout(15):
                got = await anext(_events(lines))
    assert got["id"] == want.id and got["refs"]["tool"] == f"notion_{tag}__search"


async def test_tail_since_catches_up_from_the_store_then_goes_live(audit: Audit, bus: Bus, tag: str) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    old = [event("x.old", refs=EventRefs(tool=f"tail_{tag}"), time=t0 + timedelta(seconds=i)) for i in range(3)]
    for ev in old:
        await bus.publish_event_now(ev)

    async def stored() -> bool:
        return (await audit.sql("SELECT count(*) FROM events WHERE tool = $1", f"tail_{tag}"))[0][0] == 3

    await wait_for(stored, what="old events stored")
    async with audit.client() as c:
        params = {"tool": f"tail_{tag}", "since": (t0 + timedelta(seconds=1)).isoformat()}
        async with c.stream("GET", "/v1/tail", params=params) as r:
            got = []
            stream = _events(r.aiter_lines())
            async with asyncio.timeout(10):
                got.append(await anext(stream))
                got.append(await anext(stream))
            new = event("x.new", refs=EventRefs(tool=f"tail_{tag}"))
            await bus.publish_event_now(new)
            async with asyncio.timeout(15):
                got.append(await anext(stream))
    assert [e["id"] for e in got] == [old[1].id, old[2].id, new.id]

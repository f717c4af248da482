"""The bounds and boundaries of the resumable streams' buffers (pure logic): the /mcp event
store keeps each session's events to itself and within its limits; the HTTP call stream's
buffer replays after an id, hides a call from another key, and cancels a call nobody follows."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
from warden_proxy.agents import Principal
from warden_proxy.resumable import EventBuffer
from warden_proxy.stream_api import CallStreams


def _note(n: int) -> Any:
    return types.JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": n})


async def _replayed(buffer: EventBuffer, session: str, last: str) -> tuple[str | None, list[int]]:
    sent: list[int] = []

    async def send(ev: Any) -> None:
        sent.append(ev.message.params["n"])

    stream = await buffer.session(session).replay_events_after(last, send)
    return stream, sent


async def test_a_session_replays_its_own_stream_only() -> None:
    b = EventBuffer()
    a, other = b.session("A"), b.session("B")
    prime = await a.store_event("_GET_stream", None)
    await a.store_event("_GET_stream", _note(1))
    await a.store_event("7", _note(99))  # another stream of the same session
    await other.store_event("_GET_stream", _note(50))  # the same stream id in another session
    await a.store_event("_GET_stream", _note(2))
    assert await _replayed(b, "A", prime) == ("_GET_stream", [1, 2])
    assert await _replayed(b, "B", prime) == (None, [])  # A's event id means nothing to B
    assert await _replayed(b, "A", "nonsense") == (None, [])
    b.forget("A")
    assert await _replayed(b, "A", prime) == (None, [])
    assert len(b) == 1


async def test_the_buffer_is_bounded_per_session_and_in_total() -> None:
    b = EventBuffer(per_session=3, total=5)
    s = b.session("A")
    ids = [await s.store_event("x", _note(i)) for i in range(5)]
    assert await _replayed(b, "A", ids[0]) == (None, [])  # dropped: nothing to replay
    assert await _replayed(b, "A", ids[2]) == ("x", [3, 4])
    t = b.session("B")
    for i in range(4):
        await t.store_event("y", _note(10 + i))
    assert len(b) == 5  # the oldest (A's) went first
    assert await _replayed(b, "A", ids[2]) == (None, [])


def _p(key: str) -> Principal:
    return Principal(kind="agent", id=key, profile="p")


async def _read(streams: CallStreams, sid: str, call: Any, after: int) -> list[bytes]:
    return [chunk async for chunk in streams.follow(sid, call, after)]


async def test_the_call_buffer_replays_after_an_id_for_the_same_key_only() -> None:
    streams = CallStreams(resume_s=30, retry_ms=1500)
    sid, call = streams.open(_p("k1"))
    call.add("started", {"tool": "t", "stream": sid})
    call.add("progress", {"progress": 1})
    call.add("result", {"ok": True})
    call.done = True
    assert streams.find(sid, _p("k2")) is None
    assert streams.find(sid, _p("k1")) is call
    first = (await _read(streams, sid, call, 0))[0]
    assert first.startswith(b"id: 1\nretry: 1500\nevent: started\n")
    rest = await _read(streams, sid, call, 1)
    assert [c.split(b"\n")[0] for c in rest] == [b"id: 2", b"id: 3"] and b"retry" not in rest[0]


async def test_a_call_nobody_follows_is_cancelled_then_forgotten() -> None:
    streams = CallStreams(resume_s=0.05, retry_ms=1000)
    sid, call = streams.open(_p("k1"))
    call.task = asyncio.create_task(asyncio.sleep(3600))
    streams.unfollowed(sid, call)
    async with asyncio.timeout(10):
        await asyncio.wait([call.task])
    assert call.task.cancelled() and streams.find(sid, _p("k1")) is None

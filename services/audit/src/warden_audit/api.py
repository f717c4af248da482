"""Audit query API (filters, keyset pages, NDJSON export) and the live tail (SSE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from warden_audit.service import Filters, Tail, decode_cursor, encode_cursor, to_event
from warden_audit.store import Store

__all__ = ["build_router"]


def _filters(
    type: str | None = None,
    connector: str | None = None,
    tool: str | None = None,
    profile: str | None = None,
    actor: str | None = None,
    status: str | None = None,
    call_id: str | None = None,
    source: str | None = None,
    q: str | None = Query(default=None, max_length=200),
    since: datetime | None = None,
    until: datetime | None = None,
) -> Filters:
    return Filters(
        type=type,
        connector=connector,
        tool=tool,
        profile=profile,
        actor=actor,
        status=status,
        call_id=call_id,
        source=source,
        q=q,
        since=since,
        until=until,
    )


def build_router(admin: object) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["audit"])
    Admin = Depends(admin)  # noqa: N806

    @router.get("/events")
    async def events(
        request: Request,
        f: Filters = Depends(_filters),
        limit: int = Query(default=100, ge=1, le=1000),
        cursor: str | None = None,
        _: str = Admin,
    ) -> dict[str, Any]:
        """Newest first; pass `next_cursor` back as `cursor` for the next page."""
        store: Store = request.state.store
        where, args = f.sql()
        rows = await store.query(where, args, limit, decode_cursor(cursor) if cursor else None)
        nxt = encode_cursor(rows[-1]["time"], rows[-1]["id"]) if len(rows) == limit else None
        return {"items": [to_event(r) for r in rows], "next_cursor": nxt}

    @router.get("/events/export")
    async def export(request: Request, f: Filters = Depends(_filters), _: str = Admin) -> StreamingResponse:
        """Every matching event as NDJSON, streamed page by page (never all in memory)."""
        store: Store = request.state.store
        where, args = f.sql()

        async def gen() -> AsyncIterator[bytes]:
            before = None
            while True:
                rows = await store.query(where, args, 1000, before)
                for r in rows:
                    yield (json.dumps(to_event(r)) + "\n").encode()
                if len(rows) < 1000:
                    return
                before = (rows[-1]["time"], rows[-1]["id"])

        return StreamingResponse(gen(), media_type="application/x-ndjson")

    @router.get("/executions/{call_id}")
    async def execution(call_id: str, request: Request, _: str = Admin) -> dict[str, Any]:
        """One call's full history."""
        store: Store = request.state.store
        rows = await store.query(["call_id = $1"], [call_id], 1000, None)
        evs = [to_event(r) for r in reversed(rows)]
        final = next((e for e in reversed(evs) if e["type"] in ("call.completed", "call.failed", "call.denied")), None)
        return {
            "call_id": call_id,
            "status": final["status"] if final else "in_progress",
            "latency_ms": final["latency_ms"] if final else None,
            "events": evs,
        }

    @router.get("/tail")
    async def tail(request: Request, f: Filters = Depends(_filters), _: str = Admin) -> StreamingResponse:
        """Server-Sent Events of new events matching the filters (from now, or from `since`)."""
        t: Tail = request.state.tail
        store: Store = request.state.store
        q = t.subscribe()

        async def gen() -> AsyncIterator[bytes]:
            seen: set[str] = set()
            try:
                if "since" in f.f:
                    where, args = f.sql()
                    for r in reversed(await store.query(where, args, 1000, None)):
                        ev = to_event(r)
                        seen.add(ev["id"])
                        yield f"id: {ev['id']}\nevent: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode()
                yield b": tailing\n\n"
                while not await request.is_disconnected():
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout=15)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if ev["id"] in seen or not f.match(ev):
                        continue
                    yield f"id: {ev['id']}\nevent: {ev['type']}\ndata: {json.dumps(ev, default=str)}\n\n".encode()
            finally:
                t.unsubscribe(q)

        return StreamingResponse(gen(), media_type="text/event-stream")

    return router

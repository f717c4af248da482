"""The audit HTTP API under /v1 (admin bearer token): query with filters and keyset pages,
streaming export, executions, a live tail (Server-Sent Events), chain verification."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from warden_audit.checkpoints import Checkpoints
from warden_audit.errors import BadFilter, ExecutionNotFound
from warden_audit.maintenance import verify
from warden_audit.query import (
    ExecutionFilters,
    Filters,
    Tail,
    decode_cursor,
    encode_cursor,
    execution_view,
    record_envelope,
)
from warden_audit.store import Store

__all__ = ["AuditState", "build_router"]


@dataclass
class AuditState:
    """What the lifespan hands the routes (typed, instead of globals)."""

    store: Store
    tail: Tail
    checkpoints: Checkpoints | None = None


# -- response models (for the OpenAPI document) -------------------------------------------
class ActorOut(BaseModel):
    kind: str
    id: str


class RefsOut(BaseModel):
    connector: str | None = None
    tool: str | None = None
    profile: str | None = None
    call_id: str | None = None
    user: str | None = None


class EventOut(BaseModel):
    id: str
    type: str
    source: str
    time: datetime
    trace_id: str | None = None
    actor: ActorOut | None = None
    refs: RefsOut
    status: str | None = None
    latency_ms: float | None = None
    data: dict[str, Any]
    seq: int


class EventsPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = None


class ExecutionOut(BaseModel):
    call_id: str
    tool: str | None = None
    connector: str | None = None
    profile: str | None = None
    user: str | None = None
    actor: ActorOut | None = None
    trace_id: str | None = None
    state: str
    status: str | None = None
    started_at: datetime
    requested_at: datetime | None = None
    decided_at: datetime | None = None
    finished_at: datetime | None = None
    latency_ms: float | None = None
    approver: str | None = None
    arguments: Any = None
    result: Any = None
    error: Any = None
    event_count: int


class ExecutionsPage(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None = None


class ExecutionDetail(ExecutionOut):
    events: list[EventOut]


class ChainBreak(BaseModel):
    lane: int
    seq: int
    id: str | None = None
    reason: str


class LaneHead(BaseModel):
    lane: int
    lane_seq: int
    seq: int
    hash: str
    ingested_at: datetime


class LaneReport(BaseModel):
    lane: int
    checked: int
    first_seq: int | None = None
    last_seq: int | None = None
    head: LaneHead
    first_break: ChainBreak | None = None


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    first_seq: int | None = None
    last_seq: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    lanes: list[LaneReport]
    first_break: ChainBreak | None = None
    # the signed checkpoint checked (`checked`: its time) and the one written (`written`)
    checkpoint: dict[str, Any] | None = None
    # with a chain key: executions rows checked against their signatures (`checked`, `break`)
    executions: dict[str, Any] | None = None
    seconds: float


# -- parameters ------------------------------------------------------------------------------
def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _filters(
    type: str | None = Query(default=None, max_length=100, description="exact, or a glob: `call.*`"),
    connector: str | None = Query(default=None, max_length=100, description="exact, or a glob"),
    tool: str | None = Query(default=None, max_length=200, description="exact, or a glob: `notion__*`"),
    profile: str | None = Query(default=None, max_length=100),
    actor: str | None = Query(default=None, max_length=250, description="`id` or `kind:id`"),
    status: str | None = Query(default=None, max_length=40),
    call_id: str | None = Query(default=None, max_length=100),
    source: str | None = Query(default=None, max_length=40),
    user: str | None = Query(default=None, max_length=200),
    q: str | None = Query(default=None, min_length=1, max_length=200, description="text in the data payload"),
    since: datetime | None = Query(default=None, description="event time, inclusive (ISO 8601)"),
    until: datetime | None = Query(default=None, description="event time, exclusive (ISO 8601)"),
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
        user=user,
        q=q,
        since=_utc(since),
        until=_utc(until),
    )


def _execution_filters(
    tool: str | None = Query(default=None, max_length=200, description="exact, or a glob"),
    connector: str | None = Query(default=None, max_length=100),
    profile: str | None = Query(default=None, max_length=100),
    status: str | None = Query(default=None, max_length=40, description="ok, error, denied, rejected, ..."),
    state: str | None = Query(default=None, max_length=40, description="requested … completed, failed, denied"),
    user: str | None = Query(default=None, max_length=200),
    actor: str | None = Query(default=None, max_length=250),
    since: datetime | None = Query(default=None, description="call start, inclusive"),
    until: datetime | None = Query(default=None, description="call start, exclusive"),
) -> ExecutionFilters:
    s, u = _utc(since), _utc(until)
    if s and u and u <= s:
        raise BadFilter("`until` must be after `since`")
    return ExecutionFilters(
        tool=tool, connector=connector, profile=profile, status=status, state=state, user=user, actor=actor,
        since=s, until=u,
    )  # fmt: skip


def _state(request: Request) -> AuditState:
    return request.state.audit  # type: ignore[no-any-return]


_CSV_COLUMNS = ("id", "type", "time", "source", "actor_kind", "actor_id", "connector", "tool", "profile",
                "call_id", "user", "status", "latency_ms", "trace_id", "seq", "data")  # fmt: skip


def _csv_cell(v: Any) -> Any:
    # a cell a spreadsheet would run as a formula is written as text
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _csv_row(ev: dict[str, Any]) -> list[Any]:
    a = ev["actor"] or {}
    r = ev["refs"]
    values = [ev["id"], ev["type"], ev["time"], ev["source"], a.get("kind"), a.get("id"), r["connector"],
              r["tool"], r["profile"], r["call_id"], r["user"], ev["status"], ev["latency_ms"], ev["trace_id"],
              ev["seq"], json.dumps(ev["data"], ensure_ascii=False, separators=(",", ":"))]  # fmt: skip
    return [_csv_cell(v) for v in values]


def _sse(ev: dict[str, Any]) -> bytes:
    return f"id: {ev['id']}\nevent: {ev['type']}\ndata: {json.dumps(ev, ensure_ascii=False)}\n\n".encode()


def build_router(admin: Callable[[Request], Awaitable[str]], keepalive_s: float = 15.0) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["audit"], dependencies=[Depends(admin)])

    @router.get("/events", response_model=EventsPage)
    async def events(
        f: Filters = Depends(_filters),
        limit: int = Query(default=100, ge=1, le=1000),
        cursor: str | None = Query(default=None, max_length=500, description="`next_cursor` of the previous page"),
        st: AuditState = Depends(_state),
    ) -> dict[str, Any]:
        """Stored events, newest first, one keyset page at a time."""
        where, args = f.sql()
        rows = await st.store.events_page(where, args, limit, decode_cursor(cursor) if cursor else None)
        nxt = encode_cursor(rows[-1]["time"], rows[-1]["id"]) if len(rows) == limit else None
        return {"items": [record_envelope(r) for r in rows], "next_cursor": nxt}

    @router.get("/events/export")
    async def export(
        f: Filters = Depends(_filters),
        format: Literal["ndjson", "csv"] = "ndjson",
        st: AuditState = Depends(_state),
    ) -> StreamingResponse:
        """Every matching event, oldest first, streamed from a server-side cursor."""
        where, args = f.sql()
        rows = st.store.stream_events(where, args)

        async def ndjson() -> AsyncIterator[bytes]:
            buf: list[str] = []
            async for r in rows:
                buf.append(json.dumps(record_envelope(r), ensure_ascii=False, default=str))
                if len(buf) >= 500:
                    yield ("\n".join(buf) + "\n").encode()
                    buf.clear()
            if buf:
                yield ("\n".join(buf) + "\n").encode()

        async def csv_rows() -> AsyncIterator[bytes]:
            out = io.StringIO()
            w = csv.writer(out)
            w.writerow(_CSV_COLUMNS)
            n = 0
            async for r in rows:
                w.writerow(_csv_row(record_envelope(r)))
                n += 1
                if n % 500 == 0:
                    yield out.getvalue().encode()
                    out.seek(0)
                    out.truncate()
            yield out.getvalue().encode()

        if format == "csv":
            return StreamingResponse(
                csv_rows(),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="audit-events.csv"'},
            )
        return StreamingResponse(ndjson(), media_type="application/x-ndjson")

    @router.get("/executions", response_model=ExecutionsPage)
    async def executions(
        f: ExecutionFilters = Depends(_execution_filters),
        limit: int = Query(default=100, ge=1, le=1000),
        cursor: str | None = Query(default=None, max_length=500),
        st: AuditState = Depends(_state),
    ) -> dict[str, Any]:
        """Tool calls, newest first: one row per call, assembled from its call.* events."""
        where, args = f.sql()
        rows = await st.store.executions_page(where, args, limit, decode_cursor(cursor) if cursor else None)
        nxt = encode_cursor(rows[-1]["started_at"], rows[-1]["call_id"]) if len(rows) == limit else None
        return {"items": [execution_view(r) for r in rows], "next_cursor": nxt}

    @router.get("/executions/{call_id}", response_model=ExecutionDetail)
    async def execution(call_id: str, st: AuditState = Depends(_state)) -> dict[str, Any]:
        """One call's full history: the assembled row and each of its events."""
        row = await st.store.execution(call_id)
        if row is None:
            raise ExecutionNotFound(f"no tool call {call_id!r} in the audit log")
        events = await st.store.events_of_call(call_id)
        return execution_view(row) | {"events": [record_envelope(r) for r in events]}

    @router.get("/tail", response_class=StreamingResponse)
    async def tail(request: Request, f: Filters = Depends(_filters), st: AuditState = Depends(_state)) -> Any:
        """Server-Sent Events: new events matching the filters as they are stored. With
        `since`, first the stored events from then on, then live ones (no gap, no repeat)."""
        sub = await st.tail.subscribe()
        live = replace(f, since=None, until=None)
        match = live.matcher()

        async def gen() -> AsyncIterator[bytes]:
            seen: set[str] = set()
            try:
                yield b": connected\n\n"
                if f.since is not None:
                    where, args = replace(f, until=None).sql()
                    after: tuple[datetime, str] | None = None
                    while True:
                        rows = await st.store.events_after(where, args, 500, after)
                        for r in rows:
                            ev = record_envelope(r)
                            seen.add(ev["id"])
                            yield _sse(ev)
                        if len(rows) < 500:
                            break
                        after = (rows[-1]["time"], rows[-1]["id"])
                yield b": live\n\n"
                while True:
                    try:
                        ev = await asyncio.wait_for(sub.queue.get(), timeout=keepalive_s)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"
                        continue
                    if sub.missed:
                        yield f"event: missed\ndata: {json.dumps({'count': sub.missed})}\n\n".encode()
                        sub.missed = 0
                    if ev["id"] in seen or not match(ev):
                        continue
                    yield _sse(ev)
            finally:
                st.tail.unsubscribe(sub)

        return StreamingResponse(
            gen(), media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
        )

    @router.post("/verify", response_model=VerifyReport)
    async def verify_chain(
        since: datetime | None = Query(default=None, description="ingest time, inclusive"),
        until: datetime | None = Query(default=None, description="ingest time, exclusive"),
        st: AuditState = Depends(_state),
    ) -> dict[str, Any]:
        """Recompute every lane's hash chain over rows ingested in [since, until); report
        each lane's first break (`lanes`) and the lowest lane's as `first_break`."""
        s, u = _utc(since), _utc(until)
        if s and u and u <= s:
            raise BadFilter("`until` must be after `since`")
        return await verify(st.store, s, u, st.checkpoints)

    @router.get("/dead-letters")
    async def dead_letters(limit: int = Query(default=50, ge=1, le=500), st: AuditState = Depends(_state)) -> Any:
        """Messages that could not be parsed or stored, newest first (payload size-capped)."""
        rows = await st.store.dead_letters(limit)
        return {
            "items": [
                {
                    "id": r["id"],
                    "subject": r["subject"],
                    "stream_seq": r["stream_seq"],
                    "reason": r["reason"],
                    "payload": bytes(r["payload"]).decode("utf-8", "replace"),
                    "payload_size": r["payload_size"],
                    "received_at": r["received_at"].isoformat(),
                }
                for r in rows
            ]
        }

    return router

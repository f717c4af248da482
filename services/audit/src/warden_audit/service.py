"""Audit logic: write batches of parsed events exactly once, chained by hash, with their
executions. Imports neither FastAPI nor nats. (Verifying the chain and retention are in
`warden_audit.maintenance`.)

Ingest in one transaction per batch:
    store dead letters
    claim ids (event_ids, ON CONFLICT DO NOTHING)  -> only never-seen events go on
    fold call.* events into executions
    lock a free lane's head (SKIP LOCKED)          -> number and hash the rows from it
    binary COPY into the day's partition
    upsert the executions (in call_id order)       -> move the lane's head (same statement) -> commit
From the lock to commit a lane is held; other batches extend the other lanes meanwhile (see
`warden_audit.chain` for the numbering). The executions go last: a batch that shares a call
with another batch still open waits for that one's commit there, and only there. The caller
acks after commit. A batch Postgres rejects for its content (not for being down) is retried
one event at a time; what still fails becomes a dead letter.
Parsing (one pass per message) is in `warden_audit.parse`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter
from warden_common.contracts import scrub
from warden_common.logging import redact

from warden_audit.chain import Layout, canonical_data, clean_text, header
from warden_audit.parse import (
    CALL_ID,
    DATA,
    HASH,
    ID,
    LANE,
    LATENCY,
    PREV,
    STATUS,
    TIME,
    TOOL,
    TYPE,
    Batch,
    DeadLetter,
    Parser,
    Row,
)
from warden_audit.query import Tail
from warden_audit.redaction import Redactor, cap_json
from warden_audit.store import Head
from warden_audit.writer import Writer, execution_rows

__all__ = [
    "Batch",
    "DeadLetter",
    "Ingestor",
    "is_transient",
    "link_rows",
]

log = logging.getLogger(__name__)
PHASE = Counter(
    "warden_audit_ingest_seconds_total",
    "where ingest time goes: fetch, parse, claim (ids), fold (executions), lock (a lane's head),"
    " chain (hashing), copy, executions (upsert, moving the head), commit, ack",
    ["phase"],
)
_PHASES = {
    name: PHASE.labels(name) for name in ("parse", "claim", "fold", "lock", "chain", "copy", "executions", "commit")
}

# Postgres refused this content; retrying the same bytes will not help.
_CONTENT_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.UntranslatableCharacterError,
)


_DB_UNREACHABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def is_transient(e: BaseException) -> bool:
    """A database error worth waiting out (anything not about the content itself)."""
    return not isinstance(e, _CONTENT_ERRORS)


def dead_payload(raw: bytes, cap: int) -> bytes:
    """What a dead letter keeps of a message: size-capped, with secret-looking values
    removed (a message that failed validation never went through the envelope's scrub)."""
    try:
        doc = json.loads(raw[: cap * 4])
    except ValueError:
        return redact(raw[:cap].decode("utf-8", "replace")).encode()[:cap]
    return json.dumps(scrub(doc), ensure_ascii=False).encode()[:cap]


def capped_text(value: Any, cap: int) -> bytes:
    """Canonical JSON of `value`, or of the marker `cap_json` gives when it is too long."""
    text = canonical_data(value)
    if len(text) <= cap:
        return text
    return canonical_data(cap_json(value, cap))


# execution state by event type: (state, rank); a higher rank wins whatever the arrival order
_CALL_STATES: dict[str, tuple[str, int]] = {
    "call.requested": ("requested", 1),
    "call.approval_requested": ("pending_approval", 2),
    "call.approved": ("approved", 3),
    "call.credential": ("running", 4),
    "call.completed": ("completed", 9),
    "call.failed": ("failed", 9),
    "call.denied": ("denied", 10),
    "call.rejected": ("rejected", 10),
}
_TERMINAL = {"call.completed", "call.failed", "call.denied"}


@dataclass(slots=True)
class _Execution:
    call_id: str
    state: str
    rank: int
    started_at: datetime
    tool: str | None = None
    connector: str | None = None
    profile: str | None = None
    user_id: str | None = None
    actor_kind: str | None = None
    actor_id: str | None = None
    trace_id: str | None = None
    status: str | None = None
    requested_at: datetime | None = None
    decided_at: datetime | None = None
    finished_at: datetime | None = None
    latency_ms: float | None = None
    arguments: bytes | None = None
    result: bytes | None = None
    error: bytes | None = None
    approver: str | None = None
    events: int = 0

    def row(self) -> tuple[Any, ...]:
        return (
            self.call_id,
            self.tool,
            self.connector,
            self.profile,
            self.user_id,
            self.actor_kind,
            self.actor_id,
            self.trace_id,
            self.state,
            self.rank,
            self.status,
            self.started_at,
            self.requested_at,
            self.decided_at,
            self.finished_at,
            self.latency_ms,
            self.arguments,
            self.result,
            self.error,
            self.approver,
            self.events,
        )


@dataclass(slots=True)
class Stored:
    """What a write stored: the rows that were new (numbered, hashed) and their data."""

    rows: list[Row] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class Ingestor:
    """Turns stream messages into stored rows. One per process; `write` runs for several
    batches at once, each in its own transaction on one of the writer's connections."""

    def __init__(
        self,
        writer: Writer,
        tail: Tail,
        redactor: Redactor,
        *,
        data_cap: int,
        execution_cap: int,
        dead_cap: int,
    ) -> None:
        self.writer = writer
        self.tail = tail
        self.parser = Parser(redactor, data_cap)
        self.execution_cap = execution_cap
        self.dead_cap = dead_cap

    # -- parse ---------------------------------------------------------------------------
    def parse(self, msgs: Sequence[Any]) -> Batch:
        """`msgs`: objects with `data` and `subject`, kept as the handles to ack."""
        t0 = _time.perf_counter()
        batch = self.parser.parse(msgs)
        _PHASES["parse"].inc(_time.perf_counter() - t0)
        return batch

    async def parse_yielding(self, msgs: Sequence[Any], chunk: int = 200) -> Batch:
        """`parse`, giving the event loop a turn every `chunk` messages: the writers' next
        statements go out while a large batch is parsed, so Postgres works meanwhile."""
        if len(msgs) <= chunk:
            return self.parse(msgs)
        batch = Batch()
        for k in range(0, len(msgs), chunk):
            batch.extend(self.parse(msgs[k : k + chunk]))
            await asyncio.sleep(0)
        return batch

    # -- write ---------------------------------------------------------------------------
    async def write(self, batch: Batch) -> Stored:
        """Store a batch exactly once; returns what was new. Raises only errors worth
        retrying (Postgres unreachable, ...): then nothing was stored, ack nothing."""
        try:
            try:
                out = await self._write(batch)
            except asyncpg.CheckViolationError as e:
                if "partition" not in str(e):
                    raise
                # the day's partition went away (retention, maybe on another replica): make it again
                self.writer.known_days.clear()
                out = await self._write(batch)
        except _CONTENT_ERRORS as e:
            log.warning("audit: Postgres refused a batch (%s); storing its events one by one", type(e).__name__)
            out = await self.write_isolating(batch, unexpected=False)
        self._publish(out)
        return out

    async def write_isolating(self, batch: Batch, *, unexpected: bool = True) -> Stored:
        """One event at a time; an event that still fails becomes a dead letter. The last
        resort after a batch failed (`unexpected`: for a reason other than its content).
        Database outages still raise."""
        out = Stored(dead=list(batch.dead))
        for i in range(len(batch.rows)):
            one = batch.one(i)
            try:
                got = await self._write(one)
            except _CONTENT_ERRORS as e:
                out.dead.append(DeadLetter(one.handles[0].data, one.handles[0].subject, one.handles[0],
                                           f"cannot be stored: {type(e).__name__} ({e.sqlstate})"))  # fmt: skip
                continue
            except _DB_UNREACHABLE:
                raise
            except Exception:
                if not unexpected:
                    raise
                # isolating a bug to one event; logged with its traceback
                log.exception("audit: event %s cannot be stored; keeping it as a dead letter", batch.rows[i][ID])
                out.dead.append(DeadLetter(one.handles[0].data, one.handles[0].subject, one.handles[0],
                                           "internal error while storing (see the audit service log)"))  # fmt: skip
                continue
            out.rows += got.rows
            out.data += got.data
        if out.dead:
            await self._write(Batch(dead=out.dead))
        return out

    def _publish(self, out: Stored) -> None:
        if out.rows:
            self.tail.nudge()

    async def _write(self, batch: Batch) -> Stored:
        out = Stored(dead=batch.dead)
        clock = _Clock()
        async with self.writer.batch() as tx:
            if batch.dead:
                await tx.dead_letters(
                    [
                        (clean_text(d.subject), d.stream_seq, d.reason, dead_payload(d.raw, self.dead_cap), len(d.raw))
                        for d in batch.dead
                    ]
                )
            if batch.rows:
                fresh = await tx.claim_ids([r[ID] for r in batch.rows])
                clock.lap("claim")
                if fresh is None:  # all new (the usual case)
                    out.rows, out.data = batch.rows, batch.data
                else:
                    for row, data in zip(batch.rows, batch.data, strict=True):
                        if row[ID] in fresh:
                            fresh.discard(row[ID])  # the first copy of an id in a batch wins
                            out.rows.append(row)
                            out.data.append(data)
                if out.rows:
                    executions = self._executions(out.rows, out.data)
                    folded = execution_rows(executions) if executions else None
                    clock.lap("fold")
                    head = await tx.lock_lane()  # from here until commit, this lane is ours
                    clock.lap("lock")
                    ingested = max(datetime.now(UTC), head.ingested_at)
                    head = link_rows(out.rows, head, ingested, tx.layout)
                    clock.lap("chain")
                    await tx.copy_events(ingested.date(), out.rows)
                    clock.lap("copy")
                    if folded is not None:
                        # last: a call shared with a batch still open (its other events)
                        # waits for that batch's commit here, after everything else is done
                        await tx.upsert_executions(folded, head)
                    else:
                        await tx.set_head(head)
                    clock.lap("executions")
        clock.lap("commit")
        return out

    def _executions(self, rows: list[Row], datas: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        calls: dict[str, _Execution] = {}
        cap = self.execution_cap
        for e, data in zip(rows, datas, strict=True):
            typ = e[TYPE]
            st = _CALL_STATES.get(typ)
            call_id = e[CALL_ID]
            if st is None or call_id is None:
                continue
            t = e[TIME]
            x = calls.get(call_id)
            if x is None:
                x = calls[call_id] = _Execution(call_id, st[0], st[1], t, status=e[STATUS])
            else:
                if st[1] >= x.rank:
                    x.state, x.rank = st
                    x.status = e[STATUS] or x.status
                if t < x.started_at:
                    x.started_at = t
            x.events += 1
            # tool, connector, profile, user, trace: the first event that has one
            x.tool = x.tool or e[TOOL]
            x.connector = x.connector or e[8]
            x.profile = x.profile or e[10]
            x.user_id = x.user_id or e[12]
            x.trace_id = x.trace_id or e[15]
            if typ == "call.requested":
                x.requested_at = t
                x.actor_kind, x.actor_id = e[6], e[7]
                if "arguments" in data:
                    x.arguments = capped_text(data["arguments"], cap)
            elif typ == "call.approved" or typ == "call.rejected":
                x.decided_at = t
                x.approver = e[7]
            if typ in _TERMINAL or typ == "call.rejected":
                x.finished_at = t
                if e[LATENCY] is not None:
                    x.latency_ms = e[LATENCY]
            if typ == "call.completed":
                if "result" in data:
                    x.result = capped_text(data["result"], cap)
            elif typ in ("call.failed", "call.denied", "call.rejected"):
                err = {k: data[k] for k in ("error_code", "reason") if k in data}
                if err:
                    x.error = capped_text(err, cap)
        return [x.row() for x in calls.values()]


def link_rows(rows: list[Row], head: Head, ingested: datetime, layout: Layout) -> Head:
    """Number (`layout.seq`) and hash `rows` in place from `head`, the end of one lane;
    returns the new head."""
    prev = head.hash
    lane = head.lane
    place = head.lane_seq
    seq = head.seq
    number = layout.seq
    sha = hashlib.sha256
    dumps = orjson.dumps
    for r in rows:
        place += 1
        seq = number(lane, place)
        r[0] = seq
        r[1] = ingested
        r[LANE] = lane
        lat = r[LATENCY]
        # header() with its non-finite check only when it could matter
        hdr = dumps(r[:16]) if lat is None or -1e308 < lat < 1e308 else header(r[:16])
        r[PREV] = prev
        prev = r[HASH] = sha(b"".join((prev, hdr, b"\n", r[DATA]))).digest()
    return Head(lane, place, seq, prev, ingested)


class _Clock:
    def __init__(self) -> None:
        self.t = _time.perf_counter()

    def lap(self, phase: str) -> None:
        now = _time.perf_counter()
        _PHASES[phase].inc(now - self.t)
        self.t = now

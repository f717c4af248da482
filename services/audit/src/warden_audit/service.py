"""Audit logic: parse and redact events, chain them, assemble executions, write batches
exactly once; verify the chain; retention. Imports neither FastAPI nor nats.

Ingest in one transaction per batch, under the chain's advisory lock:
    claim ids (event_ids, ON CONFLICT DO NOTHING)  -> only never-seen events go on
    number and hash them from the chain head       -> binary COPY into the day's partition
    fold call.* events into executions (upsert)    -> dead letters -> move the head -> commit
The caller acks after commit. A batch Postgres rejects for its content (not for being
down) is retried one event at a time; what still fails becomes a dead letter.
"""

from __future__ import annotations

import json
import logging
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter
from pydantic import ValidationError
from warden_common.contracts import Event, scrub
from warden_common.logging import redact

from warden_audit.chain import ZERO, Break, ChainRow, canonical_data, clean_text, normalize, row_hash
from warden_audit.query import Tail, envelope
from warden_audit.redaction import Redactor, cap_json, capped_text
from warden_audit.store import Head, Store, Writer

__all__ = [
    "DeadLetter",
    "Incoming",
    "Ingestor",
    "Maintenance",
    "Parsed",
    "Timings",
    "is_transient",
    "verify",
]

log = logging.getLogger(__name__)
PHASE = Counter(
    "warden_audit_ingest_seconds_total",
    "where ingest time goes: fetch, parse, claim (lock + ids), chain (hashing), copy, executions, commit, ack",
    ["phase"],
)
_PHASES = {name: PHASE.labels(name) for name in ("parse", "claim", "chain", "copy", "executions", "commit")}

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


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message off the stream; `handle` is the broker's (acked by the caller)."""

    raw: bytes
    subject: str
    stream_seq: int | None
    handle: Any = None


@dataclass(slots=True)
class Parsed:
    incoming: Incoming
    id: str
    type: str
    time: datetime
    source: str
    actor_kind: str | None
    actor_id: str | None
    connector: str | None
    tool: str | None
    profile: str | None
    call_id: str | None
    user_id: str | None
    status: str | None
    latency_ms: float | None
    trace_id: str | None
    data: dict[str, Any]
    data_text: str
    seq: int = 0
    ingested_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    incoming: Incoming
    reason: str


@dataclass(slots=True)
class Timings:
    """Where ingest time goes (seconds, cumulative); read by the bench and /metrics."""

    parse: float = 0.0
    write: float = 0.0
    batches: int = 0
    events: int = 0
    stored: int = 0
    dead: int = 0


def dead_payload(raw: bytes, cap: int) -> bytes:
    """What a dead letter keeps of a message: size-capped, with secret-looking values
    removed (a message that failed validation never went through the envelope's scrub)."""
    try:
        doc = json.loads(raw[: cap * 4])
    except ValueError:
        return redact(raw[:cap].decode("utf-8", "replace")).encode()[:cap]
    return json.dumps(scrub(doc), ensure_ascii=False).encode()[:cap]


def _problem(e: ValidationError) -> str:
    """Which fields are wrong, never their values."""
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


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
    arguments: str | None = None
    result: str | None = None
    error: str | None = None
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


class Ingestor:
    """Turns stream messages into stored rows. One per process; `write` is not re-entrant."""

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
        self.redactor = redactor
        self.data_cap = data_cap
        self.execution_cap = execution_cap
        self.dead_cap = dead_cap
        self.timings = Timings()

    # -- parse ---------------------------------------------------------------------------
    def parse(self, incoming: Sequence[Incoming]) -> tuple[list[Parsed], list[DeadLetter]]:
        t0 = _time.perf_counter()
        good: list[Parsed] = []
        dead: list[DeadLetter] = []
        for inc in incoming:
            try:
                ev = Event.model_validate_json(inc.raw)
            except ValidationError as e:
                dead.append(DeadLetter(inc, f"not a valid event: {_problem(e)}"))
                continue
            good.append(self._parsed(inc, ev))
        spent = _time.perf_counter() - t0
        self.timings.parse += spent
        _PHASES["parse"].inc(spent)
        return good, dead

    def _parsed(self, inc: Incoming, ev: Event) -> Parsed:
        refs = ev.refs
        data = normalize(ev.data)
        if refs.tool is not None and self.redactor.rules and ("arguments" in data or "result" in data):
            for key in ("arguments", "result"):
                if key in data:
                    data[key] = self.redactor.apply(refs.tool, data[key])
        text = canonical_data(data)
        if len(text) * 4 > self.data_cap and len(text.encode()) > self.data_cap:
            data = cap_json(data, self.data_cap)
            text = canonical_data(data)
        t = ev.time if ev.time.tzinfo is not None else ev.time.replace(tzinfo=UTC)

        def s(v: str | None) -> str | None:
            return None if v is None else normalize(v)

        return Parsed(
            incoming=inc,
            id=normalize(ev.id),
            type=ev.type,
            time=t,
            source=str(ev.source),
            actor_kind=ev.actor.kind if ev.actor else None,
            actor_id=s(ev.actor.id) if ev.actor else None,
            connector=s(refs.connector),
            tool=s(refs.tool),
            profile=s(refs.profile),
            call_id=s(refs.call_id),
            user_id=s(refs.user),
            status=s(ev.status),
            latency_ms=ev.latency_ms,
            trace_id=s(ev.trace_id),
            data=data,
            data_text=text,
        )

    # -- write ---------------------------------------------------------------------------
    async def write(self, events: list[Parsed], dead: list[DeadLetter]) -> list[Parsed]:
        """Store a batch exactly once; returns the events that were new. Raises only errors
        worth retrying (Postgres unreachable, ...): then nothing was stored, ack nothing."""
        t0 = _time.perf_counter()
        try:
            try:
                try:
                    new = await self._write(events, dead)
                except asyncpg.CheckViolationError as e:
                    if "partition" not in str(e):
                        raise
                    # the day's partition went away (retention, maybe on another replica): make it again
                    self.writer.known_days.clear()
                    new = await self._write(events, dead)
            except _CONTENT_ERRORS as e:
                log.warning("audit: Postgres refused a batch (%s); storing its events one by one", type(e).__name__)
                new, dead = await self._write_one_by_one(events, dead)
        finally:
            self.timings.write += _time.perf_counter() - t0
        self.timings.batches += 1
        self.timings.events += len(events) + len(dead)
        self.timings.stored += len(new)
        self.timings.dead += len(dead)
        if new and self.tail.subscribers:
            self.tail.publish([envelope(p) for p in new])
        return new

    async def write_isolating(
        self, events: list[Parsed], dead: list[DeadLetter]
    ) -> tuple[list[Parsed], list[DeadLetter]]:
        """Last resort after a batch failed unexpectedly more than once: one event at a time,
        and an event that still fails becomes a dead letter. Database outages still raise."""
        new: list[Parsed] = []
        dead = list(dead)
        for ev in events:
            try:
                new += await self._write([ev], [])
            except _CONTENT_ERRORS as e:
                dead.append(DeadLetter(ev.incoming, f"cannot be stored: {type(e).__name__} ({e.sqlstate})"))
            except _DB_UNREACHABLE:
                raise
            except Exception:  # noqa: BLE001 - isolating a bug to one event; logged with its traceback
                log.exception("audit: event %s cannot be stored; keeping it as a dead letter", ev.id)
                dead.append(DeadLetter(ev.incoming, "internal error while storing (see the audit service log)"))
        if dead:
            await self._write([], dead)
        self.timings.stored += len(new)
        self.timings.dead += len(dead)
        return new, dead

    async def _write_one_by_one(
        self, events: list[Parsed], dead: list[DeadLetter]
    ) -> tuple[list[Parsed], list[DeadLetter]]:
        new: list[Parsed] = []
        dead = list(dead)
        for ev in events:
            try:
                new += await self._write([ev], [])
            except _CONTENT_ERRORS as e:
                dead.append(DeadLetter(ev.incoming, f"cannot be stored: {type(e).__name__} ({e.sqlstate})"))
        if dead:
            await self._write([], dead)
        return new, dead

    async def _write(self, events: list[Parsed], dead: list[DeadLetter]) -> list[Parsed]:
        new: list[Parsed] = []
        clock = _Clock()
        async with self.writer.batch() as tx:
            if events:
                head = await tx.lock_head()
                fresh = await tx.claim_ids([e.id for e in events])
                clock.lap("claim")
                for e in events:
                    if e.id in fresh:
                        fresh.discard(e.id)  # the first copy of an id in a batch wins
                        new.append(e)
                if new:
                    ingested = max(datetime.now(UTC), head.ingested_at)
                    rows, head = self._chain(new, head, ingested)
                    clock.lap("chain")
                    await tx.copy_events(ingested.date(), rows)
                    clock.lap("copy")
                    executions = self._executions(new)
                    if executions:
                        await tx.upsert_executions(executions)
                    await tx.set_head(head)
                    clock.lap("executions")
            if dead:
                await tx.dead_letters(
                    [
                        (clean_text(d.incoming.subject), d.incoming.stream_seq, d.reason,
                         dead_payload(d.incoming.raw, self.dead_cap), len(d.incoming.raw))
                        for d in dead
                    ]
                )  # fmt: skip
        clock.lap("commit")
        return new

    @staticmethod
    def _chain(new: list[Parsed], head: Head, ingested: datetime) -> tuple[list[tuple[Any, ...]], Head]:
        rows = []
        prev = head.hash
        seq = head.seq
        for e in new:
            seq += 1
            e.seq = seq
            e.ingested_at = ingested
            cr = ChainRow(
                seq, ingested, e.id, e.type, e.time, e.source, e.actor_kind, e.actor_id, e.connector, e.tool,
                e.profile, e.call_id, e.user_id, e.status, e.latency_ms, e.trace_id, e.data_text,
            )  # fmt: skip
            h = row_hash(prev, cr)
            rows.append(
                (
                    seq, ingested, e.id, e.type, e.time, e.source, e.actor_kind, e.actor_id, e.connector, e.tool,
                    e.profile, e.call_id, e.user_id, e.status, e.latency_ms, e.trace_id, e.data_text, prev, h,
                )
            )  # fmt: skip
            prev = h
        return rows, Head(seq, prev, ingested)

    def _executions(self, new: list[Parsed]) -> list[tuple[Any, ...]]:
        calls: dict[str, _Execution] = {}
        for e in new:
            st = _CALL_STATES.get(e.type)
            if st is None or e.call_id is None:
                continue
            x = calls.get(e.call_id)
            if x is None:
                x = calls[e.call_id] = _Execution(e.call_id, st[0], st[1], e.time)
            elif st[1] >= x.rank:
                x.state, x.rank = st
                x.status = e.status or x.status
            if x.events == 0:
                x.status = e.status
            x.events += 1
            x.started_at = min(x.started_at, e.time)
            x.tool = x.tool or e.tool
            x.connector = x.connector or e.connector
            x.profile = x.profile or e.profile
            x.user_id = x.user_id or e.user_id
            x.trace_id = x.trace_id or e.trace_id
            if e.type == "call.requested":
                x.requested_at = e.time
                x.actor_kind, x.actor_id = e.actor_kind, e.actor_id
                if "arguments" in e.data:
                    x.arguments = capped_text(e.data["arguments"], self.execution_cap)
            elif e.type in ("call.approved", "call.rejected"):
                x.decided_at = e.time
                x.approver = e.actor_id
            if e.type in _TERMINAL or e.type == "call.rejected":
                x.finished_at = e.time
                if e.latency_ms is not None:
                    x.latency_ms = e.latency_ms
            if e.type == "call.completed" and "result" in e.data:
                x.result = capped_text(e.data["result"], self.execution_cap)
            if e.type in ("call.failed", "call.denied", "call.rejected"):
                err = {k: e.data[k] for k in ("error_code", "reason") if k in e.data}
                if err:
                    x.error = capped_text(err, self.execution_cap)
        return [x.row() for x in calls.values()]


# -- verify ------------------------------------------------------------------------------
async def verify(store: Store, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Recompute the chain over rows ingested in [since, until); report the first break."""
    started = _time.perf_counter()
    brk: Break | None = None
    checked = 0
    first_seq: int | None = None
    prev_seq: int | None = None
    prev_hash = ZERO
    async with store.snapshot() as conn:
        head = await store.head(conn)
        anchor = await store.anchor(conn)
        async for r in store.chain_rows(conn, since, until):
            seq = r["seq"]
            if prev_seq is None:
                first_seq = seq
                expect: bytes | None
                if seq == 1:
                    expect = ZERO
                elif (before := await store.row_at(conn, seq - 1)) is not None:
                    expect = bytes(before["hash"])
                elif anchor is not None and anchor[0] == seq - 1:
                    expect = anchor[1]  # what precedes was removed by retention
                else:
                    brk = Break(seq - 1, None, f"row {seq - 1}, just before the range, is missing")
                    break
            elif seq != prev_seq + 1:
                brk = Break(prev_seq + 1, None, f"rows {prev_seq + 1}..{seq - 1} are missing")
                break
            else:
                expect = prev_hash
            if bytes(r["prev_hash"]) != expect:
                brk = Break(seq, r["id"], "prev_hash does not match the hash of the row before it")
                break
            h = row_hash(expect, ChainRow.from_record(r))
            if h != bytes(r["hash"]):
                brk = Break(seq, r["id"], "the row does not match its hash: it was changed after it was stored")
                break
            prev_seq, prev_hash = seq, h
            checked += 1
        if brk is None and until is None:
            # nothing may be missing between the last row and the chain head
            floor = anchor[0] if anchor else 0
            last = prev_seq if prev_seq is not None else None
            if last is not None and last < head.seq:
                brk = Break(last + 1, None, f"rows {last + 1}..{head.seq} (up to the chain head) are missing")
            elif last is not None and last == head.seq and prev_hash != head.hash:
                brk = Break(last, None, "the chain head does not match the last row")
            elif last is None and head.seq > floor and (since is None or head.ingested_at >= since):
                brk = Break(head.seq, None, "rows up to the chain head are missing")
    return {
        "ok": brk is None,
        "checked": checked,
        "first_seq": first_seq,
        "last_seq": prev_seq,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "head": {"seq": head.seq, "hash": head.hash.hex(), "ingested_at": head.ingested_at.isoformat()},
        "first_break": brk.as_dict() if brk else None,
        "seconds": round(_time.perf_counter() - started, 3),
    }


# -- retention ---------------------------------------------------------------------------
@dataclass
class Maintenance:
    store: Store
    retention_days: int
    batch: int
    last: dict[str, Any] = field(default_factory=dict)

    async def ensure_partitions(self, now: datetime | None = None) -> None:
        today = (now or datetime.now(UTC)).date()
        await self.store.ensure_partitions([today + timedelta(days=i) for i in range(3)])

    async def run_once(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.retention_days)
        out: dict[str, Any] = {"ran": False}
        async with self.store.maintenance_lock() as mine:
            if not mine:
                return out
            await self.ensure_partitions(now)
            dropped: list[str] = []
            rows = 0
            for name, day in await self.store.partitions():
                if _day_end(day) <= cutoff:
                    rows += await self.store.drop_partition(name, self.batch)
                    dropped.append(name)
            out = {
                "ran": True,
                "partitions_dropped": dropped,
                "events_removed": rows,
                "executions_removed": await self.store.delete_old_executions(cutoff, self.batch),
                "dead_letters_removed": await self.store.delete_old_dead_letters(cutoff, self.batch),
                "cutoff": cutoff.isoformat(),
            }
        if dropped or out["executions_removed"]:
            log.info("audit retention: %s", out)
        self.last = out
        return out


class _Clock:
    def __init__(self) -> None:
        self.t = _time.perf_counter()

    def lap(self, phase: str) -> None:
        now = _time.perf_counter()
        _PHASES[phase].inc(now - self.t)
        self.t = now


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)

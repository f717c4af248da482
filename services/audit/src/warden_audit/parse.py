"""Stream messages to event rows, in one pass per message (pure logic).

The fast path decodes a message with msgspec into a struct that mirrors the envelope of
`warden_common.contracts.Event` (types, lengths and patterns checked in C; unknown fields
ignored, as the model ignores them, so an event from a newer replica is stored).
It takes only what it can prove it reads exactly as that model would, and stores it exactly
as the slow path would; anything else (a `\\u` escape, a number that would not survive jsonb
unchanged, a missing id or time, a field of an unexpected type or length) goes through the
contract's pydantic model, which also words the dead-letter reason.

Cheap checks on the raw bytes decide whether the per-value walks are needed at all:
- secret-looking keys and depth: `warden_common.contracts.events.needs_scrub` (the check the
  proxy's events use too; a `\\u` escape takes the model path anyway);
- values to normalize: NUL and lone surrogates only come as `\\u` escapes; numbers that jsonb
  would give back differently (`-0.0`, exponents, 16+ digits, which orjson may also read
  inexactly) are found by their tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import ValidationError
from warden_common.bus import validation_message
from warden_common.contracts import Event, scrub
from warden_common.contracts.events import needs_scrub

from warden_audit.chain import canonical_data, normalize
from warden_audit.redaction import Redactor, cap_json

__all__ = ["Batch", "DeadLetter", "Parser", "Row"]

# One events row, in EVENT_COLUMNS order; the write sets seq, ingested_at, prev_hash, hash, lane.
Row = list[Any]
SEQ, INGESTED, ID, TYPE, TIME, SOURCE, ACTOR_KIND, ACTOR_ID = range(8)
CONNECTOR, TOOL, PROFILE, CALL_ID, USER_ID, STATUS, LATENCY, TRACE_ID, DATA, PREV, HASH, LANE = range(8, 20)


class _Actor(msgspec.Struct, forbid_unknown_fields=False):
    kind: Literal["agent", "user", "admin", "service", "system"]
    id: Annotated[str, msgspec.Meta(max_length=200)]


class _Refs(msgspec.Struct, forbid_unknown_fields=False):
    connector: str | None = None
    tool: str | None = None
    profile: str | None = None
    call_id: str | None = None
    user: str | None = None


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """What the fast path accepts: `Event`'s fields and limits, minus what the model would
    supply or convert (no default id or time; no numeric strings; null refs or data refused,
    as the model refuses them). Patterns end in `\\Z`: msgspec searches, and `$` would let a
    trailing newline through."""

    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    type: Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+\Z")]
    source: Literal["connectors", "registry", "proxy", "audit"]
    time: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")]
    trace_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    actor: _Actor | None = None
    refs: _Refs = msgspec.field(default_factory=_Refs)
    status: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    latency_ms: float | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


_DECODE = msgspec.json.Decoder(_Envelope).decode
_NOT_PROVEN = (msgspec.ValidationError, msgspec.DecodeError)
_SORT = orjson.OPT_SORT_KEYS


@dataclass(slots=True)
class DeadLetter:
    raw: bytes
    subject: str
    handle: Any
    reason: str
    stream_seq: int | None = None


@dataclass(slots=True)
class Batch:
    """What a fetch turned into: rows to store (with each row's data and message handle)
    and dead letters. Parallel lists rather than an object per event: this is the hot path."""

    rows: list[Row] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.dead)

    def extend(self, other: Batch) -> None:
        self.rows += other.rows
        self.data += other.data
        self.handles += other.handles
        self.dead += other.dead

    def one(self, i: int) -> Batch:
        return Batch([self.rows[i]], [self.data[i]], [self.handles[i]], [])

    def all_handles(self) -> list[Any]:
        return self.handles + [d.handle for d in self.dead]


def _s(v: str | None) -> str | None:
    return None if v is None else normalize(v)


class Parser:
    def __init__(self, redactor: Redactor, data_cap: int) -> None:
        self.redactor = redactor
        self.data_cap = data_cap
        self.slow = 0  # valid messages that took the model (the tests look)

    def parse(self, msgs: Sequence[Any]) -> Batch:
        """`msgs`: objects with `data` (bytes) and `subject`; each is kept as its row's handle."""
        out = Batch()
        rows, datas, handles = out.rows, out.data, out.handles
        fast = self._fast
        for m in msgs:
            raw = m.data
            got: tuple[Row, dict[str, Any]] | str | None = fast(raw)
            if got is None:
                got = self._slow(raw)
            if isinstance(got, str):
                out.dead.append(DeadLetter(raw, m.subject, m, got))
                continue
            rows.append(got[0])
            datas.append(got[1])
            handles.append(m)
        return out

    # -- fast ----------------------------------------------------------------------------
    def _fast(self, raw: bytes) -> tuple[Row, dict[str, Any]] | None:
        if b"\\u" in raw:
            return None
        try:
            ev = _DECODE(raw)
            t = datetime.fromisoformat(ev.time)
        except (*_NOT_PROVEN, ValueError):
            return None
        if t.utcoffset():
            t = t.astimezone(UTC)
        actor = ev.actor
        refs = ev.refs
        tool = refs.tool
        got = self._data(tool, ev.data)
        if got is None:
            return None
        text, data = got
        kind, aid = (None, None) if actor is None else (actor.kind, actor.id)
        row = [0, None, ev.id, ev.type, t, ev.source, kind, aid, refs.connector, tool, refs.profile,
               refs.call_id, refs.user, ev.status, ev.latency_ms, ev.trace_id, text, None, None, 0]  # fmt: skip
        return row, data

    def _data(self, tool: str | None, data: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
        """A fast-path payload scrubbed, redacted and capped, with its canonical text; None
        when it holds a number jsonb would not give back unchanged (the slow path normalizes)."""
        try:
            text = orjson.dumps(data, option=_SORT)
        except orjson.JSONEncodeError:  # an integer past 64 bits: the slow path normalizes it
            return None
        # orjson writes floats past 1e16 (and integers it read past 64 bits) with "e+"
        if b"e+" in text or b"-0.0" in text:
            return None
        if needs_scrub(text):
            data = scrub(data)
            text = b""
        if self._redacts(tool, data):
            self._redact(tool, data)
            text = b""
        if not text:
            text = canonical_data(data)
        if len(text) > self.data_cap:
            data = cap_json(data, self.data_cap)
            text = canonical_data(data)
        return text, data

    def _redacts(self, tool: str | None, data: dict[str, Any]) -> bool:
        return (
            tool is not None
            and bool(self.redactor.rules)
            and ("arguments" in data or "result" in data)
            and self.redactor.rule_for(tool) is not None
        )

    def _redact(self, tool: str | None, data: dict[str, Any]) -> None:
        for key in ("arguments", "result"):
            if key in data:
                data[key] = self.redactor.apply(tool, data[key])

    # -- slow: the contract's model --------------------------------------------------------
    def _slow(self, raw: bytes) -> tuple[Row, dict[str, Any]] | str:
        try:
            ev = Event.model_validate_json(raw)
        except ValidationError as e:
            return f"not a valid event: {validation_message(e, limit=3)}"
        self.slow += 1
        refs = ev.refs
        tool = _s(refs.tool)
        data = normalize(ev.data)
        if self._redacts(tool, data):
            self._redact(tool, data)
        text = canonical_data(data)
        if len(text) > self.data_cap:
            data = cap_json(data, self.data_cap)
            text = canonical_data(data)
        t = ev.time if ev.time.tzinfo is not None else ev.time.replace(tzinfo=UTC)
        t = t.astimezone(UTC)
        row = [
            0, None, normalize(ev.id), ev.type, t, str(ev.source),
            ev.actor.kind if ev.actor else None, _s(ev.actor.id) if ev.actor else None,
            _s(refs.connector), tool, _s(refs.profile), _s(refs.call_id), _s(refs.user),
            _s(ev.status), ev.latency_ms, _s(ev.trace_id), text, None, None, 0,
        ]  # fmt: skip
        return row, data

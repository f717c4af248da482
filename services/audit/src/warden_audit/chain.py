"""Tamper evidence: each stored event row is chained to the one before it, in ingest order.

    hash = sha256(prev_hash || canonical(row))

`canonical` is the row's columns as compact JSON (data with sorted keys). Values are
normalized before storing (`normalize`) so that what Postgres gives back canonicalizes to
the same bytes: NUL characters and lone surrogates are replaced, non-finite floats become
strings, integral floats past 1e16 become integers (jsonb prints them without exponent).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "HASHED_COLUMNS",
    "ZERO",
    "Break",
    "ChainRow",
    "canonical_data",
    "clean_text",
    "link",
    "normalize",
    "row_hash",
]

ZERO = bytes(32)
HASHED_COLUMNS = (
    "seq",
    "ingested_at",
    "id",
    "type",
    "time",
    "source",
    "actor_kind",
    "actor_id",
    "connector",
    "tool",
    "profile",
    "call_id",
    "user_id",
    "status",
    "latency_ms",
    "trace_id",
)


def clean_text(s: str) -> str:
    """Text Postgres can store and give back unchanged."""
    if "\x00" in s:
        s = s.replace("\x00", "\ufffd")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def normalize(v: Any) -> Any:
    if isinstance(v, str):
        return clean_text(v)
    if isinstance(v, dict):
        return {clean_text(k) if isinstance(k, str) else str(k): normalize(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [normalize(x) for x in v]
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return 0.0
        if abs(v) >= 1e16:
            return int(v)
        return v
    return v


def canonical_data(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """The hashed columns of one events row."""

    seq: int
    ingested_at: datetime
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
    data_text: str  # canonical_data(data)

    def canonical(self) -> bytes:
        header = [getattr(self, k) for k in HASHED_COLUMNS]
        header[1] = _iso(self.ingested_at)
        header[4] = _iso(self.time)
        return json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" + self.data_text.encode()

    @classmethod
    def from_record(cls, r: Any) -> ChainRow:
        """From a stored row (a mapping with the event columns and `data` decoded)."""
        return cls(**{k: r[k] for k in HASHED_COLUMNS}, data_text=canonical_data(r["data"]))


def link(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


def row_hash(prev_hash: bytes, row: ChainRow) -> bytes:
    return link(prev_hash, row.canonical())


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold."""

    seq: int
    id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "reason": self.reason}

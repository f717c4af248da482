"""Tamper evidence: each stored event row is chained to the one before it, in ingest order.

    hash = sha256(prev_hash || header || "\\n" || data)

`header` is the row's hashed columns (`HASHED_COLUMNS`) as a compact JSON array (orjson:
times as RFC 3339 in UTC, non-finite floats as their name); `data` is the canonical JSON of
the data payload (orjson, sorted keys), exactly the text stored in the jsonb column. Values
are normalized before storing (`normalize`) so that what Postgres gives back canonicalizes
to the same bytes: NUL characters and lone surrogates are replaced, non-finite floats become
strings, integral floats past 1e16 become integers (jsonb prints them without exponent).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "HASHED_COLUMNS",
    "ZERO",
    "Break",
    "canonical_data",
    "clean_text",
    "header",
    "link",
    "normalize",
    "record_hash",
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
_LATENCY = HASHED_COLUMNS.index("latency_ms")
_SORT = orjson.OPT_SORT_KEYS


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


def canonical_data(data: Any) -> bytes:
    """Canonical JSON (UTF-8, sorted keys, compact). orjson, or the json module for what
    orjson cannot write (integers past 64 bits): a function of the value either way."""
    try:
        return orjson.dumps(data, option=_SORT)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def header(values: Sequence[Any]) -> bytes:
    """The hashed columns of a row (the first 16 values of an events row, in order)."""
    lat = values[_LATENCY]
    if lat is not None and not math.isfinite(lat):
        values = list(values)
        values[_LATENCY] = str(lat)
    return orjson.dumps(values)


def link(prev_hash: bytes, header_: bytes, data: bytes) -> bytes:
    return hashlib.sha256(b"".join((prev_hash, header_, b"\n", data))).digest()


def record_hash(prev_hash: bytes, r: Mapping[str, Any]) -> bytes:
    """The hash of a stored row (a mapping with the event columns and `data` decoded)."""
    return link(prev_hash, header([r[k] for k in HASHED_COLUMNS]), canonical_data(r["data"]))


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold."""

    seq: int
    id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "reason": self.reason}

"""Tamper evidence: the log is `lanes` (K, fixed by the schema: `chain_layout`, 4) hash chains
("lanes"); each stored row is chained to the row before it in its lane, in ingest order.

    hash = sha256(prev_hash || header || "\\n" || data)

`prev_hash` is the hash of the previous row *of the same lane* (the first row of a lane links
to 32 zero bytes). Lanes are extended in parallel: a batch locks one lane's head, numbers and
hashes its rows from there, and commits; other batches extend other lanes meanwhile.

Numbering (`Layout`): the row at place n (1, 2, ...) of lane L has seq = n * K + L. So seq is
unique across the table and names its lane (seq % K) and its place in it (seq // K): verify
checks each lane for contiguity (a missing row is a missing place), and the hash, which covers
seq, binds each row to its lane and place. Rows stored before lanes (migration 0002; seq <=
`base`) keep their numbering: lane 0, place = seq, one after another; lane 0 goes on from the
last of them (its next row is place base + 1, seq (base + 1) * K) and lanes 1.. start at place
`base` from the zero hash. The bytes hashed per row did not change with lanes; what changed is
which row a row links to (its lane's previous one, no longer the previous one ingested).

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
    "Layout",
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
class Layout:
    """How seq numbers rows: `lanes` chains; rows up to `base` came before lanes (lane 0)."""

    lanes: int
    base: int

    def seq(self, lane: int, place: int) -> int:
        """The seq of the row at `place` in `lane`."""
        return place if lane == 0 and place <= self.base else place * self.lanes + lane

    def lane(self, seq: int) -> int:
        return 0 if seq <= self.base else seq % self.lanes

    def place(self, seq: int) -> int:
        """Where the row with this seq stands in its lane (1, 2, ...)."""
        return seq if seq <= self.base else seq // self.lanes

    def start(self, lane: int) -> int:
        """The place a lane's first row follows (linked to the zero hash): 0 for lane 0, `base` for the others."""
        return 0 if lane == 0 else self.base


@dataclass(frozen=True, slots=True)
class Break:
    """The first place a lane does not hold."""

    lane: int
    seq: int
    id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"lane": self.lane, "seq": self.seq, "id": self.id, "reason": self.reason}

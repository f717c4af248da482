"""The size limits of the bus, as one set (ARCHITECTURE.md, "Limits").

- The NATS payload: what the server accepts per message (its `max_payload`, read after
  connecting), or less when `NATS__MAX_MESSAGE_BYTES` says so. Every request, answer and
  durable result a service puts on the bus fits under it, or is refused with `TooLarge`
  naming the size, the limit and the setting.
- The event size (`NATS__EVENT_MAX_BYTES`, at most the payload limit): no event is larger.
  A value in an event's `data` whose JSON is over `NATS__EVENT_VALUE_MAX_BYTES` is stored
  as a marker, `{"truncated": true, "bytes": N, "sha256": "…", "preview": "…"}`: N and the
  SHA-256 are of the value's UTF-8 text for a string, of its compact JSON otherwise; the
  preview is its first 200 characters. An event still over the size after that has its
  whole `data` replaced by one marker; one that still does not fit (huge refs) is
  dead-lettered (`warden_common.outbox`).
- The upstream body cap is the proxy's (`WARDEN_PROXY_...`); what it lets through reaches an
  agent over HTTP, and over the bus only within the payload limit.

`check_limits` runs when a bus connects: a configured limit over what the server accepts
stops the service's start with a message that says which setting to change.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = [
    "HEADER_ROOM",
    "PREVIEW_CHARS",
    "bound_data",
    "bound_event",
    "check_limits",
    "marker",
]

# room kept under the server's max_payload for headers (traceparent, Nats-Msg-Id, …), which
# the server counts in a message's size and nats-py does not
HEADER_ROOM = 4096
PREVIEW_CHARS = 200
_PARTS_MAX = 256


def marker(value: Any, encoded: bytes | None = None) -> dict[str, Any]:
    """What an event stores in place of a value too large for it."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        preview = value[:PREVIEW_CHARS]
    else:
        raw = encoded if encoded is not None else _dumps(value)
        preview = raw[: PREVIEW_CHARS * 4].decode("utf-8", "ignore")[:PREVIEW_CHARS]
    return {"truncated": True, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "preview": preview}


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer past 64 bits, or a type orjson does not know
        import json

        return json.dumps(value, default=str, separators=(",", ":")).encode()


def _bound(value: Any, limit: int, depth: int) -> tuple[Any, int]:
    """(value with every part over `limit` bytes of JSON replaced by a marker, its JSON size).
    A container's size is its parts' (one walk, no dump per level); a string's is its text's."""
    if isinstance(value, str):
        n = len(value) + 2
        if n <= limit // 4 or len(value.encode("utf-8", "surrogatepass")) + 2 <= limit:
            return value, n
        m = marker(value)
    elif isinstance(value, dict | list) and 0 < len(value) <= _PARTS_MAX and depth < 20:
        # a container is kept, with its large parts truncated, when it has few enough parts
        # for that to be worth it; a long list of small items (400,000 blocks) is one marker
        size = 1 + len(value)  # brackets and separators
        if isinstance(value, dict):
            out_d: dict[Any, Any] = {}
            for k, v in value.items():
                out_d[k], n = _bound(v, limit, depth + 1)
                size += n + len(str(k)) + 3
            out: Any = out_d
        else:
            out_l: list[Any] = []
            for v in value:
                b, n = _bound(v, limit, depth + 1)
                out_l.append(b)
                size += n
            out = out_l
        if size <= limit:
            return out, size
        m = marker(value)
    else:
        encoded = _dumps(value)
        if len(encoded) <= limit:
            return value, len(encoded)
        m = marker(value, encoded)
    return m, len(_dumps(m))


def bound_data(data: dict[str, Any], value_max: int) -> dict[str, Any]:
    """`data` with each value (at any depth) whose JSON is over `value_max` bytes replaced by
    a marker; containers are kept with their small parts when that brings them under it."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out[k], _ = _bound(v, value_max, 1)
    return out


def bound_event(payload: bytes, *, value_max: int, event_max: int) -> bytes | None:
    """An encoded event (the envelope's JSON) within the limits: `payload` itself when it is
    small enough; else re-encoded with its large `data` values truncated (and, if that is not
    enough, its whole `data` as one marker); None when even that is over `event_max` (or the
    payload is not an event's JSON): the caller dead-letters it."""
    if len(payload) <= value_max:
        return payload  # no value in it can be over the limit
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    data = doc.get("data")
    if isinstance(data, dict) and data:
        doc["data"] = bound_data(data, value_max)
        out = orjson.dumps(doc)
        if len(out) <= event_max:
            return out
        doc["data"] = {"truncated_data": marker(data)}
    out = orjson.dumps(doc)
    return out if len(out) <= event_max else None


def check_limits(
    *, server_max_payload: int, max_message_bytes: int | None, event_max_bytes: int, env_prefix: str, url: str
) -> int:
    """The payload limit this bus keeps to (headers' room taken off), after checking the
    settings against the server's `max_payload`; raises ValueError naming the setting."""
    if max_message_bytes is not None and max_message_bytes > server_max_payload:
        raise ValueError(
            f"{env_prefix}NATS__MAX_MESSAGE_BYTES is {max_message_bytes:,} bytes but the NATS server at {url} "
            f"accepts at most {server_max_payload:,} per message (its max_payload): lower the setting "
            "or raise max_payload in the server's configuration"
        )
    limit = (max_message_bytes or server_max_payload) - HEADER_ROOM
    if event_max_bytes > limit:
        raise ValueError(
            f"{env_prefix}NATS__EVENT_MAX_BYTES is {event_max_bytes:,} bytes, over the {limit:,} a message may "
            f"carry on the NATS server at {url} (max_payload {server_max_payload:,}, less {HEADER_ROOM} for "
            "headers): lower it, or raise max_payload in the server's configuration"
        )
    return limit

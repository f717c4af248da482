"""The `event.dead_lettered` event that stands for one the bus cannot take (too large, not
encodable, refused by the stream): small, with the lost event's id, type, refs, actor, trace,
size and SHA-256, and why — never its payload. Used by the outbox (`warden_common.outbox`)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from warden_common.contracts.events import Actor, Event, EventRefs, EventType, Service
from warden_common.journal import Record

__all__ = ["dead_letter_event"]

_ACTOR_KINDS = ("agent", "user", "admin", "service", "system")


def dead_letter_event(
    item: Event | Record, reason: str, *, service: Service, limit: int, eid: str | None = None
) -> tuple[Event, str]:
    """The dead letter for `item` (an event, or one already encoded), and the lost event's id as
    far as it can be read ("" when not): the dead letter takes that id when it is a valid one."""
    doc: dict[str, Any] = {}
    payload = b""
    if isinstance(item, Event):
        doc = {"id": item.id, "type": item.type, "trace_id": item.trace_id, "refs": item.refs.model_dump()}
        doc["actor"] = item.actor.model_dump() if item.actor else None
    else:
        payload = item[1]
        try:
            got = orjson.loads(payload)
            doc = got if isinstance(got, dict) else {}
        except orjson.JSONDecodeError:
            doc = {}
        doc.setdefault("id", eid or item[2].get("Nats-Msg-Id"))
    eid = str(doc.get("id") or eid or "")[:64]
    etype = str(doc.get("type") or "?")[:100]
    got_refs = doc.get("refs")
    refs: dict[str, Any] = got_refs if isinstance(got_refs, dict) else {}
    got_actor = doc.get("actor")
    actor = None
    if isinstance(got_actor, dict) and got_actor.get("kind") in _ACTOR_KINDS:
        actor = Actor(kind=got_actor["kind"], id=_short(got_actor.get("id"), 200) or "?")
    dead = Event(
        type=EventType.event_dead_lettered,
        source=service,
        trace_id=_short(doc.get("trace_id"), 64),
        actor=actor,
        refs=EventRefs(**{k: _short(refs.get(k), 200) for k in EventRefs.model_fields}),
        status="dead_lettered",
        data={
            "event_type": etype,
            "reason": reason,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest() if payload else None,
            "limit": limit,
        },
    )
    if 8 <= len(eid) <= 64:  # the lost event's id: whoever looks it up finds why
        dead = dead.model_copy(update={"id": eid})
    return dead, eid


def _short(value: Any, n: int) -> str | None:
    return None if value is None else str(value)[:n]

"""The event envelope: every step of every service, on `<root>.v1.events.>`."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import Field, field_validator

from warden_common.contracts.base import VERSION, Message

__all__ = [
    "Actor",
    "Event",
    "EventRefs",
    "EventType",
    "Service",
    "REGISTRY_REMOVALS_CONSUMER",
    "events_stream_name",
    "events_subject",
    "event_json",
    "events_wildcard",
    "needs_scrub",
    "scrub",
]


class Service(StrEnum):
    connectors = "connectors"
    registry = "registry"
    proxy = "proxy"
    audit = "audit"


class EventType(StrEnum):
    """Known event types. Audit stores unknown ones too; this list is for producers."""

    connector_created = "connector.created"
    connector_updated = "connector.updated"
    connector_connected = "connector.connected"
    connector_refreshed = "connector.refreshed"
    connector_refresh_failed = "connector.refresh_failed"
    connector_disconnected = "connector.disconnected"
    connector_removed = "connector.removed"
    connector_status_changed = "connector.status_changed"
    connector_step_up_required = "connector.step_up_required"
    connector_consent_failed = "connector.consent_failed"
    credential_issued = "credential.issued"
    credential_refused = "credential.refused"
    tools_discovered = "tools.discovered"
    tool_registered = "tool.registered"
    tool_updated = "tool.updated"
    tool_unregistered = "tool.unregistered"
    tool_drifted = "tool.drifted"
    tool_reapproved = "tool.reapproved"
    profile_created = "profile.created"
    profile_updated = "profile.updated"
    profile_deleted = "profile.deleted"
    grant_added = "grant.added"
    grant_revoked = "grant.revoked"
    # the proxy saw an upstream's notifications/tools/list_changed (refs.connector)
    upstream_tools_changed = "upstream.tools_changed"
    agent_key_created = "agent_key.created"
    agent_key_revoked = "agent_key.revoked"
    call_requested = "call.requested"
    call_denied = "call.denied"
    call_approval_requested = "call.approval_requested"
    call_approved = "call.approved"
    call_rejected = "call.rejected"
    call_credential = "call.credential"
    call_completed = "call.completed"
    call_failed = "call.failed"
    # an agent read a resource or got a prompt through the MCP endpoint (refs.connector)
    resource_read = "resource.read"
    prompt_fetched = "prompt.fetched"
    # an event that could not be published (too large, not encodable) stands as this, with its
    # id, refs, type, size and SHA-256 and the reason (warden_common.outbox)
    event_dead_lettered = "event.dead_lettered"


class Actor(Message):
    kind: Literal["agent", "user", "admin", "service", "system"]
    id: str = Field(max_length=200)


class EventRefs(Message):
    connector: str | None = None
    tool: str | None = None
    profile: str | None = None
    call_id: str | None = None
    user: str | None = None


# Keys whose values are never allowed into an event, at any depth.
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|api[_-]?key|cookie|credential|private[_-]?key|code_verifier|^code$|assertion|jwt)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
# the verdict of _SECRET_KEY per key: event payloads repeat the same few keys (content, type,
# text, arguments, …) on every call; bounded, since keys come from callers
_SECRET_VERDICTS: dict[str, bool] = {}
_LEAVES = (str, int, float, bool, type(None))


def _secret(key: str) -> bool:
    hit = _SECRET_VERDICTS.get(key)
    if hit is None:
        hit = _SECRET_KEY.search(key) is not None
        if len(_SECRET_VERDICTS) < 4096:
            _SECRET_VERDICTS[key] = hit
    return hit


def scrub(value: Any, _depth: int = 0) -> Any:
    """Return `value` with every secret-looking key's value replaced by a marker."""
    if _depth > 20:
        return REDACTED
    if type(value) in _LEAVES:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _secret(k) else scrub(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, _depth + 1) for v in value]
    return value


def _new_id() -> str:
    return uuid.uuid4().hex


class Event(Message):
    id: str = Field(default_factory=_new_id, min_length=8, max_length=64)
    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    source: Service
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    trace_id: str | None = Field(default=None, max_length=64)
    actor: Actor | None = None
    refs: EventRefs = Field(default_factory=EventRefs)
    status: str | None = Field(default=None, max_length=40)
    latency_ms: float | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="after")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        return scrub(v)  # type: ignore[no-any-return]


_EVENT_TYPES = frozenset(EventType)
# Every key `_SECRET_KEY` matches contains one of these parts, lower-cased (one regex pass:
# ~3x faster than ten substring searches); `_SECRETISH` then says where it could match a key
# (only `\\u` escapes or non-ASCII case folding could hide one, and non-ASCII text is never
# cleared).
_SECRET_PARTS = re.compile(rb"token|secret|passw|authorization|key|cookie|credential|code|assertion|jwt")
_SECRETISH = re.compile(
    rb"token|secret|password|passwd|authorization|api[_-]?key|cookie|credential|private[_-]?key|code_verifier"
    rb'|"code"|assertion|jwt'
)


def needs_scrub(text: bytes) -> bool:
    """False when the JSON `text` of a payload is certainly what `scrub` gives back: ASCII,
    no more than 20 brackets (scrub's depth limit) and nowhere a secret-looking key could be."""
    if not text.isascii() or text.count(b"{") + text.count(b"[") > 20:
        return True
    low = text.lower()
    return _SECRET_PARTS.search(low) is not None and _SECRETISH.search(low) is not None


def _data_json(data: dict[str, Any] | None) -> bytes:
    """`scrub(data)` as JSON, without the walk when the text shows nothing to scrub."""
    if not data:
        return b"{}"
    text = orjson.dumps(data)
    return orjson.dumps(scrub(data)) if needs_scrub(text) else text


def event_json(
    type: EventType,
    source: Service,
    *,
    actor: Actor | None,
    refs: EventRefs,
    status: str | None = None,
    latency_ms: float | None = None,
    data: dict[str, Any] | None = None,
    trace_id: str | None = None,
) -> tuple[str, bytes]:
    """(id, JSON) of the `Event` these values make, encoded without building the model: for
    producers on a hot path whose parts are contract models already (the proxy's call
    events). It checks what the model would check of them (the type is one of `EventType`,
    the lengths) and scrubs `data` as the model does; `Event.model_validate_json` of the
    result gives that `Event` back (libs/common/tests/test_event_json.py). Raises ValueError or
    TypeError (orjson's error is one) for anything it cannot prove; the caller then builds
    the model, which words the error."""
    if type not in _EVENT_TYPES or len(status or "") > 40 or len(trace_id or "") > 64:
        raise ValueError("not a fast event")
    if latency_ms is not None and not isinstance(latency_ms, float | int):
        raise TypeError("latency_ms")
    if not isinstance(refs, EventRefs) or not (actor is None or isinstance(actor, Actor)):
        raise TypeError("actor / refs")
    id_ = os.urandom(16).hex()
    doc = {
        "id": id_,
        "type": type,  # orjson writes a str enum as its value
        "source": source,
        "time": datetime.now(UTC),
        "trace_id": trace_id,
        "actor": None if actor is None else {"kind": actor.kind, "id": actor.id},
        "refs": {
            "connector": refs.connector,
            "tool": refs.tool,
            "profile": refs.profile,
            "call_id": refs.call_id,
            "user": refs.user,
        },
        "status": status,
        "latency_ms": latency_ms,
        "data": orjson.Fragment(_data_json(data)),
    }
    return id_, orjson.dumps(doc, option=orjson.OPT_UTC_Z)


def events_wildcard(root: str) -> str:
    return f"{root}.{VERSION}.events.>"


def events_subject(root: str, event: Event) -> str:
    return f"{root}.{VERSION}.events.{event.source}.{event.type}"


# the registry's durable consumer of `connector.removed` on the events stream (the stream's
# name carries the run's root, so this name needs nothing more)
REGISTRY_REMOVALS_CONSUMER = "registry-connector-removed"


def events_stream_name(root: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", root).upper() + "_EVENTS"

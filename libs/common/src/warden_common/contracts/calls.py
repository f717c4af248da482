"""Callers -> proxy: tool calls from internal services, and upstream discovery."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field

from warden_common.contracts.base import VERSION, Message, Subject
from warden_common.contracts.credentials import NAME_PATTERN

__all__ = [
    "UPSTREAM_LIST_TOOLS",
    "DurableCall",
    "DurableResult",
    "DurableStatus",
    "durable_status_subject",
    "durable_calls_stream_name",
    "durable_calls_subject",
    "durable_results_subject",
    "legacy_durable_results_subject",
    "ListUpstreamTools",
    "ToolCall",
    "ToolCallResult",
    "UpstreamTool",
    "UpstreamTools",
    "attested_calls_wildcard",
    "attested_durable_calls_wildcard",
    "call_origin",
    "calls_subject",
    "calls_wildcard",
]


class ToolCall(Message):
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)
    # how long the requester waits for the answer (its request timeout, seconds): a call held
    # for approval past it is `abandoned`, since no one is left to receive the result
    # (optional; without it the approval timeout alone ends the wait)
    wait_s: float | None = Field(default=None, gt=0, le=86_400)


class ToolCallResult(Message):
    """An MCP CallToolResult, passed through: content blocks, structured content, isError."""

    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool = False
    call_id: str | None = None


def calls_subject(root: str, profile: str, caller: str | None = None) -> str:
    """Per-profile subject: NATS permissions decide who may publish for which profile.

    With `caller` (the internal service's NATS user), `<root>.v1.calls.<profile>.<caller>`:
    each internal user may publish only on subjects ending in its own name, so the subject
    attests who called (nats-server cannot add a header saying so). Without it, the older
    `<root>.v1.calls.<profile>`: any service of that profile, recorded as `profile:<profile>`."""
    base = f"{root}.{VERSION}.calls.{profile}"
    return f"{base}.{caller}" if caller else base


def calls_wildcard(root: str) -> str:
    """The older, unattested call subjects (`calls.<profile>`)."""
    return f"{root}.{VERSION}.calls.*"


def attested_calls_wildcard(root: str) -> str:
    """The call subjects that name their caller (`calls.<profile>.<user>`)."""
    return f"{root}.{VERSION}.calls.*.*"


def attested_durable_calls_wildcard(root: str) -> str:
    return f"{root}.{VERSION}.durable.calls.*.*"


def call_origin(root: str, subject: str) -> tuple[str, str | None]:
    """(profile, caller) of a call or durable-call subject: caller is the NATS user the subject
    names (permission-checked by the server), None on the older unattested subjects."""
    for kind in ("calls", "durable.calls"):
        prefix = f"{root}.{VERSION}.{kind}."
        if subject.startswith(prefix):
            parts = subject[len(prefix) :].split(".")
            if len(parts) == 1:
                return parts[0], None
            if len(parts) == 2:
                return parts[0], parts[1]
    raise ValueError(f"{subject!r} is not a call subject")


class ListUpstreamTools(Message):
    """One page of the upstream's tools (NATS messages are size-capped: callers page)."""

    connector: str = Field(pattern=NAME_PATTERN)
    user: str | None = None
    # paging, so a 10,000-tool server fits NATS' max payload: with `page_size` set, answer at
    # most that many tools and a `next_cursor` when more remain; without it, answer them all
    page_size: int | None = Field(default=None, ge=1, le=10_000)
    cursor: str | None = Field(default=None, max_length=1000)
    # jwt_passthrough connectors: a site token (JWE) the admin supplies, so discovery can list
    # the upstream as that site user (a secret; never logged)
    jwe: str | None = Field(default=None, max_length=16384, repr=False)


class UpstreamTool(Message):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] | None = None
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None  # the upstream's `_meta`


class UpstreamTools(Message):
    tools: list[UpstreamTool]
    next_cursor: str | None = None
    # the id of the connector listed (from its credential): the registry registers tools against it
    connector_id: str | None = Field(default=None, max_length=64)


UPSTREAM_LIST_TOOLS = Subject("upstream.list_tools", ListUpstreamTools, UpstreamTools)


class DurableCall(Message):
    """A call submitted through JetStream: redelivered if a proxy dies, never run twice per key."""

    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=200)
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")

    def fingerprint(self) -> str:
        """What the key stands for: the SHA-256 of the call (tool, arguments, user) as canonical
        JSON. The same key with another fingerprint is refused (`conflict`), never answered
        with the first call's result."""
        doc = self.model_dump(mode="json", include={"tool", "arguments", "user"})
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


class DurableResult(Message):
    idempotency_key: str
    result: ToolCallResult | None = None
    error: dict[str, Any] | None = None  # a ReplyError as JSON
    # the fingerprint of the call this answers (`DurableCall.fingerprint`): a client takes only
    # a result for its own call (a conflict refusal for another call with the same key goes to
    # that caller alone); None from proxies before it. "malformed" for a refused message.
    fingerprint: str | None = Field(default=None, max_length=64)


def durable_calls_subject(root: str, profile: str, caller: str | None = None) -> str:
    """Where durable calls are submitted; with `caller`, the attested form (see `calls_subject`)."""
    base = f"{root}.{VERSION}.durable.calls.{profile}"
    return f"{base}.{caller}" if caller else base


def durable_results_subject(root: str, profile: str, key: str) -> str:
    """Where a durable call's outcome is published: one subject per (profile, key), named by
    the key's SHA-256 so two keys never share it (`job.1` and `job_1` once did). The client
    still checks the key in the result it gets."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{root}.{VERSION}.durable.results.{profile}.{digest}"


def legacy_durable_results_subject(root: str, profile: str, key: str) -> str:
    """The subject a proxy before the hashed names published on (dots folded to `_`, so not
    one-to-one): clients also listen there during an upgrade and take only their own key."""
    return f"{root}.{VERSION}.durable.results.{profile}.{key.replace('.', '_')}"


class DurableStatus(Message):
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    # the asker's call (`DurableCall.fingerprint`): a stored call with another one is a conflict
    fingerprint: str | None = Field(default=None, max_length=64)


def durable_status_subject(root: str, profile: str) -> str:
    """Ask for a durable call's stored outcome (e.g. after a de-duplicated resubmission)."""
    return f"{root}.{VERSION}.durable.status.{profile}"


def durable_calls_stream_name(root: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", root).upper() + "_CALLS"

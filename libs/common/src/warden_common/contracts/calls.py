"""Callers -> proxy: tool calls from internal services, and upstream discovery."""

from __future__ import annotations

import hashlib
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
    "calls_subject",
    "calls_wildcard",
]


class ToolCall(Message):
    tool: str = Field(min_length=1, max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)


class ToolCallResult(Message):
    """An MCP CallToolResult, passed through: content blocks, structured content, isError."""

    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool = False
    call_id: str | None = None


def calls_subject(root: str, profile: str) -> str:
    """Per-profile subject: NATS permissions decide who may publish for which profile."""
    return f"{root}.{VERSION}.calls.{profile}"


def calls_wildcard(root: str) -> str:
    return f"{root}.{VERSION}.calls.*"


class ListUpstreamTools(Message):
    """One page of the upstream's tools (NATS messages are size-capped: callers page)."""

    connector: str = Field(pattern=NAME_PATTERN)
    user: str | None = None
    # paging, so a 10,000-tool server fits NATS' max payload: with `page_size` set, answer at
    # most that many tools and a `next_cursor` when more remain; without it, answer them all
    page_size: int | None = Field(default=None, ge=1, le=10_000)
    cursor: str | None = Field(default=None, max_length=1000)


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


class DurableResult(Message):
    idempotency_key: str
    result: ToolCallResult | None = None
    error: dict[str, Any] | None = None  # a ReplyError as JSON


def durable_calls_subject(root: str, profile: str) -> str:
    return f"{root}.{VERSION}.durable.calls.{profile}"


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


def durable_status_subject(root: str, profile: str) -> str:
    """Ask for a durable call's stored outcome (e.g. after a de-duplicated resubmission)."""
    return f"{root}.{VERSION}.durable.status.{profile}"


def durable_calls_stream_name(root: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", root).upper() + "_CALLS"

"""proxy -> tool-registry: what a profile may see, resolve one tool, search."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from warden_common.contracts.base import Message, Subject

__all__ = [
    "Approver",
    "REGISTRY_CONNECTORS",
    "REGISTRY_RESOLVE",
    "REGISTRY_SEARCH",
    "REGISTRY_VISIBLE",
    "Operation",
    "ProfileConnector",
    "ProfileConnectors",
    "ProfileConnectorsRequest",
    "ResolveRequest",
    "ResolvedTool",
    "SearchRequest",
    "SearchResult",
    "ToolNames",
    "ToolView",
    "VisibleRequest",
    "VisibleTools",
]

Operation = Literal["read", "write"]
# who may decide a tool's held call: an admin (through the API); the end user the call acts
# for (asked at the client, and only when the caller is signed in as that user, never for an
# agent key) or an admin; anyone, the calling client included
Approver = Literal["admin", "user", "any"]
# how a profile's agents see names: always `<alias>__<name>`, or the upstream's own name
# when it is unambiguous within the profile (the namespaced name is accepted either way)
ToolNames = Literal["namespaced", "bare"]
PROFILE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ToolView(Message):
    """A tool as an agent sees it: the upstream's declaration (annotations with the registry's
    read/write fact reflected in readOnlyHint/destructiveHint when an admin changed it)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    annotations: dict[str, Any] | None = None
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None  # the upstream's `_meta`


class VisibleRequest(Message):
    profile: str = Field(pattern=PROFILE_PATTERN)


class VisibleTools(Message):
    tools: list[ToolView]
    has_deferred: bool = False


class ResolveRequest(Message):
    profile: str = Field(pattern=PROFILE_PATTERN)
    tool: str = Field(min_length=1, max_length=128)


class ResolvedTool(Message):
    name: str
    connector: str
    # the catalog's `<alias>__<tool>` when `name` is a profile's bare name for it (audit records this)
    registered_name: str | None = None
    upstream_name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    operation: Operation = "write"
    auto_approve: bool = True
    # None: the proxy's default (admin for write tools, user for read tools)
    approver: Approver | None = None
    deferred: bool = False
    schema_valid: bool = True
    # the id of the connector the tool was registered against (None: registered before ids
    # were recorded); the proxy refuses the call when the connector's credential has another
    connector_id: str | None = Field(default=None, max_length=64)
    # the tool as tools/list shows it (metadata included); None from an older registry
    view: ToolView | None = None


class SearchRequest(Message):
    profile: str = Field(pattern=PROFILE_PATTERN)
    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(default=5, ge=1, le=50)


class SearchResult(Message):
    tools: list[ToolView]
    mode: Literal["hybrid", "lexical"] = "hybrid"


class ProfileConnectorsRequest(Message):
    profile: str = Field(pattern=PROFILE_PATTERN)


class ProfileConnector(Message):
    connector: str
    alias: str


class ProfileConnectors(Message):
    """The connectors a profile may use (it has a grant on at least one of their usable tools),
    and how the profile's agents see names. The proxy aggregates resources and prompts from
    these connectors only."""

    connectors: list[ProfileConnector]
    tool_names: ToolNames = "namespaced"


REGISTRY_VISIBLE = Subject("registry.visible", VisibleRequest, VisibleTools)
REGISTRY_RESOLVE = Subject("registry.resolve", ResolveRequest, ResolvedTool)
REGISTRY_SEARCH = Subject("registry.search", SearchRequest, SearchResult)
REGISTRY_CONNECTORS = Subject("registry.connectors", ProfileConnectorsRequest, ProfileConnectors)

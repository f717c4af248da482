"""The registry's HTTP bodies and answers (the NATS contracts live in warden_common)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from warden_common.contracts.credentials import NAME_PATTERN
from warden_common.contracts.registry import PROFILE_PATTERN, ToolNames

__all__ = [
    "ALIAS_PATTERN",
    "CONNECTOR_PATTERN",
    "ConnectorSettingsOut",
    "ConnectorSettingsPatch",
    "DiscoveredTool",
    "GrantCreate",
    "GrantOut",
    "Approver",
    "Operation",
    "ProfileCreate",
    "ProfileOut",
    "ProfilePatch",
    "RefreshOut",
    "RegisterBody",
    "RegisterOut",
    "SearchBody",
    "Skipped",
    "ToolOut",
    "ToolPatch",
    "ToolSelection",
]

Operation = Literal["read", "write"]
# who may decide a held call (see warden_common.contracts.registry.Approver)
Approver = Literal["admin", "user", "any"]
_APPROVER_DOC = (
    "who may decide a held call: admin; user (the end user the call acts for, asked at the client;"
    " only for a caller signed in as that user, never an agent key); any (the client too)."
    " Default: the connector's, else admin for write tools and user for read tools"
)
CONNECTOR_PATTERN = NAME_PATTERN
# an alias has no underscore, so `<alias>__<tool>` splits one way only
ALIAS_PATTERN = NAME_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscoveredTool(BaseModel):
    name: str = Field(description="the upstream tool name")
    title: str | None = None
    description: str = Field(description="cleaned and capped, as an agent would see it")
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    operation: Operation = Field(description="pre-classified fact: annotations first, then the name")
    suggested_name: str = Field(description="the name it would be registered under")
    name_valid: bool = Field(description="whether suggested_name is within MCP's tool-name rules")
    suggested_local_name: str | None = Field(
        default=None, description="when the name is not valid: a local_name to register it under"
    )
    registered: bool
    schema_valid: bool


class ToolSelection(_Strict):
    name: str = Field(min_length=1, max_length=1000, description="the upstream tool name")
    local_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description=(
            "the tool's own name in Warden, for an upstream name MCP does not allow (`PDF&URLTool`):"
            " registered as `<alias>__<local_name>`, and called upstream by its upstream name"
        ),
    )
    operation: Operation | None = Field(default=None, description="override the pre-classified fact")
    auto_approve: bool | None = Field(default=None, description="default: the connector's default (on)")
    approver: Approver | None = Field(default=None, description=_APPROVER_DOC)
    deferred: bool = False
    favorite: bool = False


class RegisterBody(_Strict):
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN, description="default: the connector name")
    tools: list[ToolSelection] | None = Field(default=None, max_length=20_000, description="omit to register all")
    auto_approve_default: bool | None = Field(default=None, description="the connector-level default")
    approver_default: Approver | None = Field(default=None, description="the connector-level approver")
    cache_enabled: bool | None = Field(default=None, description="false: list from the upstream every time")


class Skipped(BaseModel):
    name: str
    reason: str


class RegisterOut(BaseModel):
    registered: list[str]
    skipped: list[Skipped] = Field(default_factory=list, description="register-all only: tools left out, and why")


class RefreshOut(BaseModel):
    drifted: list[str] = Field(description="changed upstream: flagged (and held, if the setting says so)")
    restored: list[str] = Field(description="back to what was approved: flag cleared")
    missing: list[str] = Field(description="no longer listed upstream: hidden until it returns")
    unregistered_upstream: list[str] = Field(description="upstream tools not registered")


class ConnectorSettingsPatch(_Strict):
    auto_approve_default: bool | None = None
    approver_default: Approver | None = Field(default=None, description=_APPROVER_DOC)
    cache_enabled: bool | None = None


class ConnectorSettingsOut(BaseModel):
    connector: str
    alias: str
    auto_approve_default: bool
    approver_default: Approver | None = None
    cache_enabled: bool
    refreshed_at: datetime | None
    tools: int


class ToolPatch(_Strict):
    operation: Operation | None = None
    auto_approve: bool | None = None
    approver: Approver | None = Field(default=None, description=_APPROVER_DOC)
    deferred: bool | None = None
    favorite: bool | None = None
    enabled: bool | None = None


class ToolOut(BaseModel):
    name: str
    connector: str
    alias: str
    upstream_name: str
    local_name: str | None = Field(default=None, description="the admin's name for it (None: the upstream's)")
    title: str | None = None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    operation: Operation
    auto_approve: bool
    approver: Approver | None = Field(default=None, description="this tool's own; None: the connector's default")
    deferred: bool
    favorite: bool
    enabled: bool
    schema_valid: bool
    held: bool = Field(description="changed upstream; hidden from agents until re-approved")
    missing: bool = Field(description="no longer listed by the upstream")
    drift: dict[str, Any] | None = Field(description="the changed listing awaiting re-approval")
    registered_by: str
    created_at: datetime
    updated_at: datetime
    connector_id: str | None = Field(
        default=None, description="the connector it was registered against (none: registered before ids were)"
    )


_TOOL_NAMES_DOC = (
    "namespaced: agents see `<alias>__<tool>` (and `<alias>__<prompt>`); bare: the upstream's own name"
    " while no other connector of the profile offers the same one (the namespaced name always works)"
)


class ProfileCreate(_Strict):
    name: str = Field(pattern=PROFILE_PATTERN)
    description: str = Field(default="", max_length=1000)
    tool_names: ToolNames = Field(default="namespaced", description=_TOOL_NAMES_DOC)


class ProfilePatch(_Strict):
    description: str | None = Field(default=None, max_length=1000)
    tool_names: ToolNames | None = Field(default=None, description=_TOOL_NAMES_DOC)


class GrantCreate(_Strict):
    tool: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.*?\[\]!-]+$",
        description="a tool name, or an fnmatch-style pattern such as notion__*",
    )
    read_only: bool = Field(default=False, description="only tools whose operation is read")
    reason: str = Field(
        max_length=1000, description="why this profile may call it (required); goes into the grant.added event"
    )

    @field_validator("reason")
    @classmethod
    def _reason_given(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("say why this profile may call the tool (the reason goes into the audit log)")
        return v


class GrantOut(BaseModel):
    id: str
    tool: str
    read_only: bool
    reason: str
    granted_by: str
    created_at: datetime
    # only in the answer to a new grant: a pattern that matches no registered tool (yet), or a
    # read-only grant whose tools are all write tools
    warnings: list[str] = Field(default_factory=list)


class ProfileOut(BaseModel):
    name: str
    description: str
    tool_names: ToolNames = "namespaced"
    created_by: str
    created_at: datetime
    grants: list[GrantOut] = Field(default_factory=list)


class SearchBody(_Strict):
    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(default=5, ge=1, le=50)

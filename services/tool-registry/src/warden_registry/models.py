"""API models of the registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from warden_common.contracts.registry import PROFILE_PATTERN

Operation = Literal["read", "write"]
ALIAS_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscoveredTool(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    operation: Operation
    suggested_name: str
    registered: bool
    schema_valid: bool


class ToolSelection(_Strict):
    name: str = Field(min_length=1, max_length=128, description="the upstream tool name")
    operation: Operation | None = None
    auto_approve: bool | None = None
    deferred: bool = False
    favorite: bool = False


class RegisterBody(_Strict):
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)
    tools: list[ToolSelection] | None = Field(default=None, description="omit to register every tool")
    auto_approve_default: bool | None = None
    cache_enabled: bool | None = None


class ToolPatch(_Strict):
    operation: Operation | None = None
    auto_approve: bool | None = None
    deferred: bool | None = None
    favorite: bool | None = None
    enabled: bool | None = None


class ToolOut(BaseModel):
    name: str
    connector: str
    upstream_name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    operation: Operation
    auto_approve: bool
    deferred: bool
    favorite: bool
    enabled: bool
    schema_valid: bool
    held: bool
    drift: dict[str, Any] | None
    registered_by: str
    created_at: datetime
    updated_at: datetime


class ProfileCreate(_Strict):
    name: str = Field(pattern=PROFILE_PATTERN)
    description: str = Field(default="", max_length=1000)


class GrantCreate(_Strict):
    tool: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.*?\[\]-]+$",
        description="a tool name or a pattern such as notion__*",
    )
    read_only: bool = False
    reason: str = Field(default="", max_length=1000)


class GrantOut(BaseModel):
    id: str
    tool: str
    read_only: bool
    reason: str
    granted_by: str
    created_at: datetime


class ProfileOut(BaseModel):
    name: str
    description: str
    created_by: str
    created_at: datetime
    grants: list[GrantOut] = []


class SearchBody(_Strict):
    query: str = Field(min_length=1, max_length=1000)
    k: int = Field(default=5, ge=1, le=50)
